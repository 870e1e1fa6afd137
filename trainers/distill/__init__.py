"""The distillation loop: train one student for one configuration, reporting every epoch.

The loss of a step that runs the KD terms (every ``distill_interval``-th optimizer step) is

    (1 - alpha) * CE(student, labels) + alpha * kd_loss(student, teacher, temperature) + beta * feature

and plain CE on the steps in between, so a larger interval trades teacher signal for speed (with an
online teacher, the teacher forward runs on KD steps only). Nothing here knows about Ray or Optuna:
the search layer passes ``on_epoch`` to see progress and to checkpoint.

Here: ``distill``, ``finetune`` and ``initial_student``. Behind them: ``_config`` (what a run is, what it
reports and returns), ``_loop`` (one run's steps, epochs and resumable state), ``_evaluate`` (accuracy and
loss on a split) and ``_memory_format`` (channels_last where it is fast and safe).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainers.data import TensorSplits
from trainers.distill._config import (
    TRAINING_STATE_KEYS,
    DistillConfig,
    DistillResult,
    EpochCallback,
    EpochReport,
    NonFiniteLossError,
    StopRule,
    missing_state_keys,
)
from trainers.distill._evaluate import EVAL_BATCH_SIZE, evaluate
from trainers.distill._loop import TrainingLoop
from trainers.distill._memory_format import channels_last_is_safe, training_memory_format
from trainers.models import build_student_for, init_from_teacher
from trainers.teacher import Teacher

__all__ = [
    "EVAL_BATCH_SIZE",
    "TRAINING_STATE_KEYS",
    "DistillConfig",
    "DistillResult",
    "EpochCallback",
    "EpochReport",
    "NonFiniteLossError",
    "StopRule",
    "channels_last_is_safe",
    "distill",
    "evaluate",
    "finetune",
    "initial_student",
    "missing_state_keys",
]


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
    with training_memory_format(student, kd_teacher.model if kd_teacher is not None else None) as memory_format:
        loop = TrainingLoop(config, data, kd_teacher, student, memory_format)
        start_epoch = loop.load_state(resume_state) if resume_state else 0
        for epoch in range(start_epoch + 1, config.epochs + 1):
            report = loop.run_epoch(epoch, validate=validate_each_epoch or epoch == config.epochs)
            if on_epoch is not None:
                on_epoch(report, loop.state)
            if stop_after is not None and stop_after(report):
                break
    return DistillResult(model=student, history=list(loop.history))


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
