"""One training run's state and steps: the loss of a step, an epoch, and a resumable snapshot."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainers.data import TensorSplits, augment_views
from trainers.distill._config import DistillConfig, EpochReport, NonFiniteLossError
from trainers.distill._evaluate import evaluate
from trainers.losses import FeatureLoss, get_feature_loss, kd_loss
from trainers.models import count_parameters
from trainers.teacher import Teacher


class TrainingLoop:
    """The state of one training run; one method per epoch keeps ``distill`` short."""

    def __init__(self, config: DistillConfig, data: TensorSplits, teacher: Teacher | None,
                 student: nn.Module, memory_format: torch.memory_format = torch.channels_last) -> None:
        self.config, self.data, self.teacher, self.student = config, data, teacher, student
        self.memory_format = memory_format  # the batches' format: the models' (see `training_memory_format`)
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
        # foreach: each update step is one call over every parameter, not a Python loop over them (torch's
        # default on the CPU): the same arithmetic bit for bit, and 3-9 % faster training of digits' students
        # (BENCHMARKS.md, Trainers: bench/bench_optimizer.py).
        self.optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, nesterov=True,
                                         weight_decay=config.weight_decay, foreach=True)
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
