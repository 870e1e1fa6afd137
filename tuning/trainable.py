"""The Ray Tune function trainable: one trial = one call of ``trainers.distill``, reporting every epoch."""

from __future__ import annotations

import errno
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainers import (
    DistillConfig,
    EpochReport,
    NonFiniteLossError,
    Teacher,
    TensorSplits,
    build_student_for,
    count_parameters,
    distill,
    pick_device,
)
from trainers.distill import missing_state_keys
from trainers.files import CorruptFileError, atomic_torch_save, safe_torch_load
from tuning.bounds import student_measures

STATE_FILE = "trial_state.pt"
# Epochs between a trial's checkpoints: a trial resumed after a lost node or a killed driver repeats at most
# these many epochs, and most trials (stopped early by ASHA) save none; a trial that runs every epoch also
# saves its last one.
CHECKPOINT_EVERY = 5
# The key of the final result of a trial that failed deterministically (its loss became NaN or infinite,
# or its configuration is one the trainer refuses): retrying it would fail again the same way.
DIVERGED = "trial_error"
DETERMINISTIC_ERRORS = (NonFiniteLossError, ValueError)
NODE_ID, NODE_IP = "node_id", "node_ip"  # where the trial ran, reported with every epoch
# The key of a trial's last result when its checkpoint found the disk full: the driver stops the search on
# it (``tuning.disk_full``), and the rerun resumes the trial from its last whole checkpoint.
DISK_FULL = "disk_full"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a full file system, or the user's quota on it


class _StopTrial(Exception):
    """Ends a trial's training quietly: the driver has been told why and stops the search."""


def run_trial(config: dict[str, Any], *, data: TensorSplits, teacher: Teacher, recipe: dict[str, Any]) -> None:
    """Distill one student for ``config`` and report each epoch to Ray Tune (with a checkpoint)."""
    started = time.perf_counter()
    torch.set_num_threads(max(1, int(recipe["cpus_per_trial"])))
    device = pick_device()
    node = {NODE_ID: ray.get_runtime_context().get_node_id(), NODE_IP: ray.util.get_node_ip_address()}
    resume_state = _load_checkpoint_state()
    last_epoch = [resume_state["epoch"] if resume_state else 0]
    size = _size(config, data, recipe)

    def on_epoch(report: EpochReport, get_state: Any) -> None:
        last_epoch[0] = report.epoch
        metrics = {**report.to_dict(), **size, "busy_s": time.perf_counter() - started, **node}
        # Checkpoints: every CHECKPOINT_EVERY epochs for a resume to continue from, and the last epoch's for
        # the final stage, which takes that trained student as its run with seed --seed instead of repeating it.
        if report.epoch % CHECKPOINT_EVERY and report.epoch != distill_config.epochs:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            atomic_torch_save(get_state(), Path(folder) / STATE_FILE)
            report_checkpoint(metrics, folder)

    try:
        distill_config = DistillConfig.from_mapping({**config, "epochs": recipe["epochs"], "seed": recipe["seed"]})
        teacher_on_device = teacher.to(device) if distill_config.uses_teacher else None
        distill(distill_config, data.to(device), teacher_on_device, on_epoch=on_epoch, resume_state=resume_state)
    except _StopTrial:
        return
    except DETERMINISTIC_ERRORS as error:
        # A deterministic failure must not reach Ray's retries (meant for transient failures such as a
        # lost node): the trial ends here with a final result that names the error. The sampler is
        # told the worst accuracy, never NaN; the run's records mark the trial FAILED.
        tune.report({"epoch": last_epoch[0] + 1, "val_accuracy": 0.0, "params": _params(config, data),
                     "busy_s": time.perf_counter() - started, **node,
                     DIVERGED: f"{type(error).__name__}: {error}"})


def report_checkpoint(metrics: dict[str, Any], folder: str) -> None:
    """Report an epoch with the checkpoint in ``folder``, which Ray copies into the trial's storage.

    A copy that fails leaves a partial checkpoint folder Ray never registered: it is removed. On a full disk
    the epoch is reported again without it, marked ``DISK_FULL``, and the trial stops (``_StopTrial``):
    raising would have Ray retry the trial on the same full disk, and log each retry as a failure.
    """
    try:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    except OSError as error:
        _remove_unregistered_checkpoint()
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        tune.report({**metrics, DISK_FULL: str(error)})
        raise _StopTrial from error


def _remove_unregistered_checkpoint() -> None:
    """Delete the checkpoint folder Ray was copying into (best effort: Ray's storage context is internal)."""
    try:
        from ray.train._internal.session import get_session

        storage = get_session().storage
        storage.storage_filesystem.delete_dir(storage.checkpoint_fs_path)
    except Exception:  # nothing copied yet, or Ray's internals moved: a partial folder is only wasted space
        pass


def _load_checkpoint_state() -> dict[str, Any] | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return read_trial_state(Path(folder) / STATE_FILE)


def read_trial_state(path: Path, then: str = "restarting this trial from epoch 0") -> dict[str, Any] | None:
    """A trial's saved training state, or ``None`` (and a message naming the file and ``then``, what
    happens instead) when it is unusable.

    A truncated, foreign or incomplete file restarts the trial from epoch 0 rather than failing it.
    """
    try:
        state = safe_torch_load(path)
    except (CorruptFileError, FileNotFoundError) as error:
        print(f"checkpoint {path} is unusable ({error}); {then}")
        return None
    missing = missing_state_keys(state)
    if missing:
        print(f"checkpoint {path} is incomplete (missing {', '.join(missing)}); {then}")
        return None
    return state


def _size(config: dict[str, Any], data: TensorSplits, recipe: dict[str, Any]) -> dict[str, float]:
    """The student's size by the Pareto objective's measure, when that is FLOPs or latency (parameters come
    with every epoch's report): ``{"flops": ...}``, ``{"latency_ms": ...}`` or ``{}``."""
    measure = recipe.get("size_measure")
    if measure not in ("flops", "latency_ms"):
        return {}
    measures, _ = student_measures(data.info.input_shape, data.info.num_classes, Path(recipe["latency_cache_dir"]))
    try:
        return {measure: measures.of(measure)(config["family"], config["depth"], config["width"])}
    except (KeyError, ValueError):  # an architecture the registry refuses: the trial fails on it anyway
        return {}


def _params(config: dict[str, Any], data: TensorSplits) -> int | None:
    """The student's size, or ``None`` when its architecture is one the registry cannot build."""
    classes = data.info.num_classes
    try:
        return count_parameters(build_student_for(config["family"], config["depth"], config["width"],
                                                  data.info.input_shape, classes))
    except (KeyError, ValueError):
        return None
