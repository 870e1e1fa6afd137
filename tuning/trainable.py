"""The Ray Tune function trainable: one trial = one call of ``trainers.distill``, reporting every epoch."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ray import tune

from trainers import (
    DistillConfig,
    EpochReport,
    NonFiniteLossError,
    Teacher,
    TensorSplits,
    build_student,
    count_parameters,
    distill,
)
from trainers.files import CorruptFileError, atomic_torch_save, safe_torch_load

STATE_FILE = "trial_state.pt"
STATE_KEYS = frozenset({"epoch", "step", "student", "optimizer", "scheduler", "generator", "history"})
DIVERGED = "diverged"  # the key of the final result of a trial whose loss became NaN or infinite
# Fault injection for tests and drills: comma-separated "KIND:PARAM=VALUE" rules; every trial whose
# config has PARAM == VALUE fails with KIND (raise, nan or oom) in its first epoch.
FAULT_ENV = "KDSEARCH_INJECT_FAULT"


class InjectedFault(RuntimeError):
    """A failure requested through ``KDSEARCH_INJECT_FAULT``."""


def run_trial(config: dict[str, Any], *, data: TensorSplits, teacher: Teacher, recipe: dict[str, Any]) -> None:
    """Distill one student for ``config`` and report each epoch to Ray Tune (with a checkpoint)."""
    started = time.perf_counter()
    torch.set_num_threads(max(1, int(recipe["cpus_per_trial"])))
    device = _trial_device()
    distill_config = DistillConfig.from_mapping({**config, "epochs": recipe["epochs"], "seed": recipe["seed"]})
    resume_state = _load_checkpoint_state()
    checkpoint_every = recipe["checkpoint_every"]

    last_epoch = [resume_state["epoch"] if resume_state else 0]

    def on_epoch(report: EpochReport, get_state: Any) -> None:
        _maybe_inject_fault(config, report.epoch)
        last_epoch[0] = report.epoch
        metrics = {**report.to_dict(), "busy_s": time.perf_counter() - started}
        # A finished trial needs no checkpoint: only epochs a resume could continue from get one.
        if report.epoch % checkpoint_every or report.epoch == distill_config.epochs:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            atomic_torch_save(get_state(), Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    teacher_on_device = teacher.to(device) if distill_config.uses_teacher else None
    try:
        distill(distill_config, data.to(device), teacher_on_device, on_epoch=on_epoch, resume_state=resume_state)
    except NonFiniteLossError as error:
        # Divergence is deterministic, so it must not reach Ray's retries (meant for transient
        # failures): the trial ends here with a final result that names the error. The sampler is
        # told the worst accuracy, never NaN; the run's records mark the trial FAILED.
        tune.report({"epoch": last_epoch[0] + 1, "val_accuracy": 0.0, "params": _params(distill_config, data),
                     "busy_s": time.perf_counter() - started, DIVERGED: f"NonFiniteLossError: {error}"})


def _trial_device() -> torch.device:
    # Ray sets CUDA_VISIBLE_DEVICES to the GPUs this trial was given; none -> CPU.
    if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") != "":
        return torch.device("cuda")
    return torch.device("cpu")


def _load_checkpoint_state() -> dict[str, Any] | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return read_trial_state(Path(folder) / STATE_FILE)


def read_trial_state(path: Path) -> dict[str, Any] | None:
    """A trial's saved training state, or ``None`` (and a message naming the file) when it is unusable.

    A truncated, foreign or incomplete file restarts the trial from epoch 0 rather than failing it.
    """
    try:
        state = safe_torch_load(path)
    except (CorruptFileError, FileNotFoundError) as error:
        print(f"checkpoint {path} is unusable ({error}); restarting this trial from epoch 0")
        return None
    missing = sorted(STATE_KEYS - set(state)) if isinstance(state, dict) else sorted(STATE_KEYS)
    if missing:
        print(f"checkpoint {path} is incomplete (missing {', '.join(missing)}); restarting this trial from epoch 0")
        return None
    return state


def _params(config: DistillConfig, data: TensorSplits) -> int:
    channels, classes = data.info.input_shape[0], data.info.num_classes
    return count_parameters(build_student(config.family, config.depth, config.width, channels, classes))


def _maybe_inject_fault(config: dict[str, Any], epoch: int) -> None:
    rules = os.environ.get(FAULT_ENV, "")
    if not rules or epoch != 1:
        return
    for rule in rules.split(","):
        kind, _, condition = rule.strip().partition(":")
        name, _, value = condition.partition("=")
        if str(config.get(name)) != value:
            continue
        if kind == "nan":
            raise NonFiniteLossError(f"injected: loss became nan ({name}={value})")
        if kind == "oom":
            raise torch.OutOfMemoryError(f"injected: CUDA out of memory ({name}={value})")
        raise InjectedFault(f"injected failure ({name}={value})")
