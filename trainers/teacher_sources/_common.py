"""What every teacher source shares: its error, the check of a loaded model, the result."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from trainers.data import TensorSplits
from trainers.distill import evaluate
from trainers.teacher_training import TeacherCheckpointError, TeacherResult

__all__ = ["TeacherCheckpointError", "check_and_measure", "first_line"]


def first_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def check_and_measure(model: nn.Module, data: TensorSplits, where: str, name: str, source: str,
                      started: float, path: Path | None = None) -> TeacherResult:
    """One forward pass on real training images (shape and finiteness checked), then train and validation
    accuracy; any failure is a ``TeacherCheckpointError`` naming ``where`` (the file or the flag)."""
    model = model.to(data.train_x.device).eval()
    batch = data.train_x[:8]
    try:
        with torch.no_grad():
            logits = model(batch)
    except Exception as error:  # noqa: BLE001 - a user's model can raise anything; say what and where
        raise TeacherCheckpointError(
            f"teacher {where} fails on {data.info.name} inputs of shape {tuple(data.info.input_shape)} "
            f"({first_line(error)}); see --teacher-input-size, --teacher-mean/--teacher-std") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(batch), data.info.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TeacherCheckpointError(
            f"teacher {where} outputs shape {shape}, expected ({len(batch)}, {data.info.num_classes}): "
            f"{data.info.num_classes} classes for {data.info.name}")
    if not bool(torch.isfinite(logits).all()):
        raise TeacherCheckpointError(f"teacher {where} outputs NaN or infinite logits on {data.info.name} images")
    val_accuracy, _ = evaluate(model, data.val_x, data.val_y)
    train_accuracy, _ = evaluate(model, data.train_x, data.train_y)
    return TeacherResult(model, name, source, path, val_accuracy, time.perf_counter() - started, train_accuracy)
