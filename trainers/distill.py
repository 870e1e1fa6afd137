"""The distillation loop: train one student for one configuration, reporting every epoch.

The loss of a step that runs the KD terms (every ``distill_interval``-th optimizer step) is

    (1 - alpha) * CE(student, labels) + alpha * kd_loss(student, teacher, temperature) + beta * feature

and plain CE on the steps in between, so a larger interval trades teacher signal for speed (with an
online teacher, the teacher forward runs on KD steps only). Nothing here knows about Ray or Optuna:
the search layer passes ``on_epoch`` to see progress and to checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spaces import PARAMETERS
from trainers.data import SplitImages, TensorSplits, augment_views, inference_batch_size
from trainers.losses import FeatureLoss, get_feature_loss, kd_loss
from trainers.models import build_student_for, count_parameters, init_from_teacher
from trainers.teacher import Teacher

EVAL_BATCH_SIZE = 1024


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite: this configuration diverged."""


@dataclass(frozen=True)
class DistillConfig:
    """Everything one trial varies, plus the fixed recipe. Defaults are a sound KD run on digits."""

    family: str = "cnn"
    depth: int = 1
    width: int = 16
    alpha: float = 0.5
    temperature: float = 4.0
    feature_loss: str = "none"
    beta: float = 0.0
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_size: int = 64
    distill_interval: int = 1
    init_from_teacher: bool = False
    # Train on augmented views (the dataset's crop/flip); None: the dataset's default for students.
    augment: bool | None = None
    epochs: int = 15
    seed: int = 0
    momentum: float = 0.9

    def __post_init__(self) -> None:
        # The searched parameters' limits are spaces.PARAMETERS', the same the search space checks.
        for parameter in PARAMETERS.values():
            value = getattr(self, parameter.name)
            if not (parameter.name == "augment" and value is None):  # None: the dataset's default
                parameter.check(value)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DistillConfig:
        """Build from a search configuration; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown DistillConfig keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    @property
    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher (a baseline run has none)."""
        return self.alpha > 0 or self.uses_features or self.init_from_teacher

    @property
    def uses_kd_terms(self) -> bool:
        """Whether a training step has any term computed from the teacher's outputs."""
        return self.alpha > 0 or self.uses_features

    @property
    def uses_features(self) -> bool:
        return self.feature_loss != "none" and self.beta > 0

    def without_teacher(self) -> DistillConfig:
        """The same recipe trained from labels alone: the baseline of a distilled student."""
        return replace(self, alpha=0.0, feature_loss="none", beta=0.0, init_from_teacher=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def augments(self, data: TensorSplits) -> bool:
        """Whether this run trains on augmented views of ``data`` (the dataset's default when unset)."""
        wanted = data.info.student_augment if self.augment is None else self.augment
        return wanted and data.info.augmented


@dataclass(frozen=True)
class EpochReport:
    """What ``on_epoch`` receives after each epoch; ``val_accuracy`` and ``val_loss`` are ``None`` on an
    epoch that was not validated (``validate_each_epoch=False``: every epoch but the last)."""

    epoch: int
    val_accuracy: float | None
    val_loss: float | None
    train_loss: float
    params: int
    epoch_seconds: float
    kd_steps: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DistillResult:
    """The trained student and its per-epoch history."""

    model: nn.Module
    history: list[EpochReport] = field(default_factory=list)

    @property
    def best_val_accuracy(self) -> float:
        return max(report.val_accuracy for report in self.history if report.val_accuracy is not None)

    @property
    def last_val_accuracy(self) -> float:
        """The last epoch's validation accuracy (that epoch is always validated)."""
        accuracy = self.history[-1].val_accuracy
        assert accuracy is not None, "distill validates the last epoch"
        return accuracy


EpochCallback = Callable[[EpochReport, Callable[[], dict[str, Any]]], None]
StopRule = Callable[[EpochReport], bool]


def distill(
    config: DistillConfig,
    data: TensorSplits,
    teacher: Teacher | None = None,
    *,
    on_epoch: EpochCallback | None = None,
    resume_state: dict[str, Any] | None = None,
    student: nn.Module | None = None,
    stop_after: StopRule | None = None,
    validate_each_epoch: bool = True,
) -> DistillResult:
    """Train a student per ``config`` on ``data``, distilling from ``teacher`` where it asks to.

    ``on_epoch(report, get_state)`` is called after every epoch; ``get_state()`` returns a
    resumable training state (call it only when checkpointing: it copies the weights and optimizer state).
    ``resume_state`` continues from such a state. ``student`` continues training an existing
    model (finetuning) instead of building one from ``config``. Tensors stay on ``data``'s device.
    ``stop_after(report)`` returning true ends training after that epoch. With ``validate_each_epoch``
    false only the last epoch is validated (a caller that reads no per-epoch accuracy saves the passes).
    Raises ``NonFiniteLossError`` as soon as a loss is NaN or infinite (a training step's, or the
    validation loss at the end of an epoch, before ``on_epoch`` sees it).
    """
    if config.uses_teacher and teacher is None:
        raise ValueError("this configuration distills (alpha > 0, a feature loss or init_from_teacher) "
                         "but no teacher was given")
    device = data.train_x.device
    torch.manual_seed(config.seed)
    if student is None:
        student = _build_student(config, data, teacher)
    student = student.to(device)
    # init_from_teacher alone needs the teacher only to build the student: no KD step may run it.
    kd_teacher = teacher if config.uses_kd_terms else None
    with _channels_last(student, kd_teacher.model if kd_teacher is not None else None) as memory_format:
        loop = _TrainingLoop(config, data, kd_teacher, student, memory_format)
        start_epoch = loop.load_state(resume_state) if resume_state else 0
        for epoch in range(start_epoch + 1, config.epochs + 1):
            report = loop.run_epoch(epoch, validate=validate_each_epoch or epoch == config.epochs)
            if on_epoch is not None:
                on_epoch(report, loop.state)
            if stop_after is not None and stop_after(report):
                break
    return DistillResult(model=student, history=list(loop.history))


@contextlib.contextmanager
def _channels_last(*models: nn.Module | None) -> Iterator[torch.memory_format]:
    """Train in the channels_last memory format, and give the models back in the default one.

    On the CPU, oneDNN's convolutions train 5-45 % faster in channels_last for every model measured but the
    very smallest (BENCHMARKS.md: cnn depth 1 width 2, a 3 ms step, is 14 % slower), 8x8 digits included.
    Back in the default format afterwards, a trained model computes exactly what its exported copy does.
    Yields the format the batches must be given in: a channels_last batch of several channels would take
    oneDNN's channels_last path even through a model kept in the default format.
    """
    present = [model for model in models if model is not None]
    if not all(map(channels_last_is_safe, present)):
        yield torch.contiguous_format
        return
    for model in present:
        model.to(memory_format=torch.channels_last)
    try:
        yield torch.channels_last
    finally:
        for model in present:
            model.to(memory_format=torch.contiguous_format)


# oneDNN's weight gradient of a 1x1 stride-2 convolution with 2 to 6 input channels corrupts the heap in
# channels_last on one thread (torch 2.14.1 on an AVX2-only CPU: "corrupted double-linked list", then the
# process dies). ResNet students of width 2-3 have such shortcuts, so those models train in the default format.
_UNSAFE_CHANNELS_LAST_IN_CHANNELS = range(2, 8)


def channels_last_is_safe(model: nn.Module) -> bool:
    """Whether ``model`` has none of the convolutions oneDNN cannot train in channels_last (see above)."""
    return not any(isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and max(layer.stride) > 1
                   and layer.in_channels in _UNSAFE_CHANNELS_LAST_IN_CHANNELS for layer in model.modules())


def finetune(
    student: nn.Module,
    data: TensorSplits,
    *,
    epochs: int = 5,
    lr: float = 0.005,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    validate_each_epoch: bool = True,
) -> DistillResult:
    """Continue training a (distilled) student on hard labels at a low learning rate."""
    config = DistillConfig(alpha=0.0, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                           epochs=epochs, seed=seed)
    return distill(config, data, None, on_epoch=on_epoch, student=student, validate_each_epoch=validate_each_epoch)


def evaluate(model: nn.Module, images: torch.Tensor | SplitImages, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy (a fraction) and mean cross-entropy of ``model`` on a labelled set."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        size = inference_batch_size(images.shape[1:], EVAL_BATCH_SIZE)
        for start in range(0, len(labels), size):
            logits = model(images[start:start + size])
            batch_labels = labels[start:start + size]
            loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == batch_labels).sum().item()
    model.train(was_training)
    return correct / len(labels), loss_sum / len(labels)


def initial_student(config: DistillConfig, data: TensorSplits, teacher: Teacher | None) -> nn.Module:
    """The untrained student ``distill`` builds for ``config``: the same initial weights for the same seed,
    initialised from ``teacher`` where ``config.init_from_teacher`` asks. Pass it as ``distill(student=...)``
    to train it with another teacher than the one it was initialised from (a repeated round of distillation)."""
    torch.manual_seed(config.seed)
    return _build_student(config, data, teacher)


def _build_student(config: DistillConfig, data: TensorSplits, teacher: Teacher | None) -> nn.Module:
    student = build_student_for(config.family, config.depth, config.width, data.info.input_shape,
                                data.info.num_classes)
    if config.init_from_teacher:
        assert teacher is not None
        init_from_teacher(student, teacher.model)
    return student


class _TrainingLoop:
    """The state of one training run; one method per epoch keeps ``distill`` short."""

    def __init__(self, config: DistillConfig, data: TensorSplits, teacher: Teacher | None,
                 student: nn.Module, memory_format: torch.memory_format = torch.channels_last) -> None:
        self.config, self.data, self.teacher, self.student = config, data, teacher, student
        self.memory_format = memory_format  # the batches' format: the models' (see `_channels_last`)
        self.device = data.train_x.device
        # Held once: each access of a split builds its view and gathers its labels, too much for every step.
        self.train_images, self.train_labels = data.train_x, data.train_y
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.feature_loss = get_feature_loss(config.feature_loss) if config.uses_features else None
        self.regressor = self._regressor(self.feature_loss) if self.feature_loss is not None else None
        parameters = list(student.parameters())
        if self.regressor is not None:
            parameters += list(self.regressor.parameters())
        self.optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, nesterov=True,
                                         weight_decay=config.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.train_labels) / config.batch_size)
        total_steps = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
        self.params = count_parameters(student)
        self.augmented = config.augments(data)
        self.background = data.background if data.mean else None
        self.step = 0
        self.history: list[EpochReport] = []

    def run_epoch(self, epoch: int, validate: bool = True) -> EpochReport:
        started = time.perf_counter()
        self.student.train()
        order = torch.randperm(len(self.train_labels), generator=self.generator).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        kd_steps = 0
        for start in range(0, len(order), self.config.batch_size):
            indices = order[start:start + self.config.batch_size]
            kd_step = self.teacher is not None and self.step % self.config.distill_interval == 0
            loss = self._loss(indices, kd_step)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at epoch {epoch}, step {self.step} (lr={self.config.lr:g}): "
                    "this configuration diverged")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            kd_steps += int(kd_step)
            loss_sum += loss.detach()
        val_accuracy, val_loss = (evaluate(self.student, self.data.val_x, self.data.val_y) if validate
                                  else (None, None))
        train_loss = loss_sum.item() / self.steps_per_epoch
        if not ((val_loss is None or math.isfinite(val_loss)) and math.isfinite(train_loss)):
            # The last step of the epoch can leave non-finite weights behind a finite loss: never report that.
            raise NonFiniteLossError(
                f"validation loss {val_loss}, training loss {train_loss} after epoch {epoch} "
                f"(lr={self.config.lr:g}): this configuration diverged")
        report = EpochReport(epoch=epoch, val_accuracy=val_accuracy, val_loss=val_loss,
                             train_loss=train_loss, params=self.params,
                             epoch_seconds=time.perf_counter() - started, kd_steps=kd_steps)
        self.history.append(report)
        return report

    def _loss(self, indices: torch.Tensor, kd_step: bool) -> torch.Tensor:
        images, labels = self.train_images[indices], self.train_labels[indices]
        views = None
        if self.augmented:
            images, views = augment_views(images, self.data.info, self.augment_generator, self.background)
        images = images.contiguous(memory_format=self.memory_format)
        if not kd_step:
            return F.cross_entropy(self.student(images), labels)
        assert self.teacher is not None
        wants_features = self.config.uses_features
        if wants_features:
            logits, student_features = self.student.forward_features(images)
        else:
            logits, student_features = self.student(images), []
        signal = self.teacher.signal(images, indices, self.config.feature_loss if wants_features else "none",
                                     views=views)
        config = self.config
        loss = (1 - config.alpha) * F.cross_entropy(logits, labels)
        if config.alpha > 0:
            loss = loss + config.alpha * kd_loss(logits, signal.logits, config.temperature)
        if self.feature_loss is not None:
            assert signal.features is not None
            loss = loss + config.beta * self.feature_loss.loss(student_features, signal.features, self.regressor)
        return loss

    def _regressor(self, feature_loss: FeatureLoss) -> nn.Module | None:
        """The loss's trained regressor (FitNets' hint), sized on a two-image probe; ``None`` if it has none."""
        if feature_loss.regressor is None:
            return None
        assert self.teacher is not None
        probe = self.train_images[:2]
        with torch.no_grad():
            _, student_features = self.student.forward_features(probe)
        teacher_signal = self.teacher.probe_signal(probe, feature_loss.name)
        assert teacher_signal is not None
        return feature_loss.regressor(student_features, teacher_signal).to(self.device)

    def state(self) -> dict[str, Any]:
        """A resumable snapshot (weights, optimizer, schedule, RNG, history) as plain tensors and dicts."""
        return {
            "epoch": len(self.history),
            "step": self.step,
            "student": _cpu_copy(self.student.state_dict()),
            "regressor": _cpu_copy(self.regressor.state_dict()) if self.regressor is not None else None,
            # A copy: the optimizer's state_dict holds its live momentum buffers, which later steps change.
            "optimizer": _cpu_copy_nested(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "augment_generator": self.augment_generator.get_state(),
            "history": [report.to_dict() for report in self.history],
        }

    def load_state(self, state: dict[str, Any]) -> int:
        """Restore a snapshot from ``state()``; returns the last finished epoch."""
        self.student.load_state_dict(state["student"])
        if self.regressor is not None and state.get("regressor") is not None:
            self.regressor.load_state_dict(state["regressor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.augment_generator.set_state(state["augment_generator"])
        self.step = state["step"]
        self.history = [EpochReport(**report) for report in state["history"]]
        return int(state["epoch"])


# The keys of a training state (``state()``): the one definition ``load_state`` and a checkpoint check use.
TRAINING_STATE_KEYS = frozenset({"epoch", "step", "student", "regressor", "optimizer", "scheduler", "generator",
                                 "augment_generator", "history"})


def missing_state_keys(state: Any) -> list[str]:
    """The training-state keys ``state`` lacks (all of them when it is not a dict), sorted."""
    return sorted(TRAINING_STATE_KEYS - set(state)) if isinstance(state, dict) else sorted(TRAINING_STATE_KEYS)


def _cpu_copy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state_dict.items()}


def _cpu_copy_nested(value: Any) -> Any:
    """A copy of nested dicts, lists and tuples in which every tensor is a detached CPU copy."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy_nested(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cpu_copy_nested(item) for item in value)
    return value

