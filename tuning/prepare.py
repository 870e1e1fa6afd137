"""Everything a search needs before the first trial: data, Ray, the teacher and its outputs.

Every user error is raised here as ``UserError`` before a run folder exists, so bad input leaves
nothing half-written (DESIGN.md, data flow step 2).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import ray
import torch

from trainers import (
    DatasetError,
    Teacher,
    TeacherCheckpointError,
    TeacherRecipe,
    TeacherResult,
    TensorSplits,
    get_teacher,
    load_dataset,
    load_teacher_checkpoint,
)
from trainers.models import UnknownModelError, build_teacher
from tuning.spec import SearchSpec, UserError

Log = Callable[[str], None]
ADDRESS_TIMEOUT_S = 5.0


@dataclass
class Prepared:
    """Loaded data and a ready teacher, shared by every trial through the object store."""

    data: TensorSplits
    teacher: Teacher
    teacher_result: TeacherResult
    teacher_family: str | None
    gpus_per_trial: float
    slots: int
    teacher_seconds: float


def load_data(spec: SearchSpec) -> TensorSplits:
    """The dataset as tensors, or ``UserError`` naming what is missing."""
    try:
        return load_dataset(spec.dataset, spec.data_dir, download=spec.download, seed=spec.seed,
                            max_train_samples=spec.max_train_samples)
    except DatasetError as error:
        raise UserError(str(error)) from None


def check_teacher_name(spec: SearchSpec, data: TensorSplits) -> None:
    """Fail early on an unknown ``--teacher`` (a checkpoint names its own architecture)."""
    if spec.teacher_checkpoint:
        return
    try:
        build_teacher(spec.teacher, data.info.input_shape[0], data.info.num_classes)
    except UnknownModelError as error:
        raise UserError(f"--teacher: {error}") from None


def start_ray(spec: SearchSpec, log: Log) -> None:
    """Connect to ``--address`` or start a local Ray instance; a bad address is a ``UserError``."""
    if ray.is_initialized():
        return
    if spec.address and spec.address != "auto":
        _check_reachable(spec.address)
    try:
        if spec.address:
            ray.init(address=spec.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot connect to the Ray cluster at --address {spec.address}: {first_line}; "
                        "start it with 'ray start --head' or fix the address (a cluster with token "
                        "authentication also needs RAY_AUTH_MODE=token here: see cluster/README.md)") from None
    resources = ray.cluster_resources()
    log(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs available")


def _check_reachable(address: str) -> None:
    """A quick TCP probe, so an unreachable HOST:PORT fails in seconds rather than after Ray's retries."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address '{address}' is not HOST:PORT or auto; e.g. --address 10.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as error:
        raise UserError(f"cannot reach the Ray cluster at --address {address} ({error.strerror or error}); "
                        "check that 'ray start --head' runs there and the port is open") from None


def resources_per_trial(spec: SearchSpec) -> tuple[float, int]:
    """GPUs per trial (auto: 4 small trials share a GPU) and how many trials can run at once."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    gpus_per_trial = spec.gpus_per_trial if spec.gpus_per_trial is not None else (0.25 if gpus >= 1 else 0.0)
    if gpus_per_trial > gpus:
        raise UserError(f"--gpus-per-trial {gpus_per_trial:g} is more than the {gpus:g} GPUs the Ray cluster "
                        "has; lower it (fractions share a GPU) or add GPU nodes")
    if spec.cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {spec.cpus_per_trial:g} is more than the {cpus:g} CPUs the Ray "
                        "cluster has; lower it")
    slots = int(cpus // spec.cpus_per_trial)
    if gpus_per_trial > 0:
        slots = min(slots, int(gpus // gpus_per_trial))
    if spec.max_concurrent:
        slots = min(slots, spec.max_concurrent)
    return gpus_per_trial, max(1, slots)


def obtain_teacher(spec: SearchSpec, data: TensorSplits, log: Log) -> TeacherResult:
    """Load ``--teacher-checkpoint`` or get the cached / freshly trained ``--teacher``."""
    if spec.teacher_checkpoint:
        try:
            result = load_teacher_checkpoint(spec.teacher_checkpoint, data)
        except TeacherCheckpointError as error:
            raise UserError(str(error)) from None
        log(f"teacher: {result.name} from {result.path} (val accuracy {result.val_accuracy:.4f})")
        return result
    recipe = TeacherRecipe(epochs=spec.teacher_epochs, seed=spec.seed)
    return get_teacher(spec.teacher, data, spec.teacher_cache_dir, recipe, log=log)


def prepare(spec: SearchSpec, log: Log = print) -> Prepared:
    """Load data, start Ray, check resources, then get the teacher and cache its outputs once."""
    data = load_data(spec)
    check_teacher_name(spec, data)
    # The teacher trains on the driver; with a GPU there, use it.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    # A user's checkpoint is checked before Ray starts; a teacher to train waits for the resource checks.
    teacher_result = obtain_teacher(spec, data.to(device), log) if spec.teacher_checkpoint else None
    teacher_seconds = time.perf_counter() - started
    start_ray(spec, log)
    gpus_per_trial, slots = resources_per_trial(spec)
    started = time.perf_counter()
    teacher_result = teacher_result or obtain_teacher(spec, data.to(device), log)
    model = teacher_result.model.to("cpu")
    if data.info.augmented:  # inputs change every step: the teacher runs online
        teacher = Teacher(model, teacher_result.name)
    else:
        teacher = Teacher.with_cached_outputs(model, teacher_result.name, data.train_x)
    teacher_seconds += time.perf_counter() - started
    return Prepared(
        data=data,
        teacher=teacher,
        teacher_result=teacher_result,
        teacher_family=teacher_result.model.arch.get("family"),
        gpus_per_trial=gpus_per_trial,
        slots=slots,
        teacher_seconds=teacher_seconds,
    )

