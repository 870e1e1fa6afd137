"""Everything a search needs before the first trial: data, Ray, the teacher and its outputs.

Every user error is raised here as ``UserError`` before a run folder exists, so bad input leaves
nothing half-written (docs/ARCHITECTURE.md, data flow step 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray

from reports.text import size_bound_text, teacher_view_text
from spaces import ChoiceParam, SearchSpace, bound_space_to
from trainers import (
    DatasetError,
    Teacher,
    TeacherCheckpointError,
    TeacherRecipe,
    TeacherResult,
    TeacherTrainingStopped,
    TensorSplits,
    ViewLogitsStopped,
    count_parameters,
    get_teacher,
    load_dataset,
    load_teacher,
    pick_device,
)
from trainers.data import DecodeStopped, fingerprint, view_count
from trainers.models import UnknownModelError, teacher_parameter_count
from trainers.teacher import MAX_VIEW_FORWARDS, fits_view_cache
from trainers.teacher_views import ViewStore, default_budget_bytes
from tuning import cluster_auth
from tuning.bounds import cpu_model, machine_description, size_bounds, student_measures
from tuning.spec import SearchSpec, UserError
from tuning.stop_signal import SearchInterrupted, check_stop, signals_request_a_stop, stop_requested
from tuning.teacher_check import CHECKS_FOLDER, check_teacher, saved_check

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
    space: SearchSpace  # the spec's space cut to the size bound: what the searcher samples
    size_bound: dict[str, Any]  # summary.json's size_bound: every limit, and where latency was measured
    teacher_params: int
    teacher_check: dict[str, Any] | None = None


def load_data(spec: SearchSpec, log: Log | None = None) -> TensorSplits:
    """The dataset as a uint8 store (decoded once into ``spec.data_cache_dir``), or ``UserError`` naming
    what is wrong. SIGTERM, SIGUSR1 and Ctrl-C during a decode stop it after the chunks in progress, the images
    decoded kept for the rerun (``SearchInterrupted``, exit 3); the same signal again stops at once."""
    try:
        with _signals_stop_where_a_rerun_goes_on(
                spec, log, "loading the data",
                stopping="the data's decode after the images in progress, those decoded kept for the rerun",
                goes_on=f"a decode goes on from the images it kept (under {spec.data_cache_dir / 'data'})"):
            with _a_stop_ends_the_run(log):
                data = load_dataset(spec.dataset, spec.data_dir, download=spec.download, seed=spec.seed,
                                    max_train_samples=spec.max_train_samples, image_size=spec.image_size,
                                    augment=spec.augment, cache_dir=spec.data_cache_dir, log=log,
                                    stop_requested=stop_requested)
        return data
    except DatasetError as error:
        raise UserError(str(error)) from None


@contextlib.contextmanager
def _signals_stop_where_a_rerun_goes_on(spec: SearchSpec, log: Log | None, doing: str, stopping: str,
                                        goes_on: str) -> Iterator[None]:
    """While the block is ``doing`` something, SIGTERM, SIGUSR1 and Ctrl-C request a stop (``stop_requested``),
    announced as ``stopping`` what; at the block's end, or where its work stops on the request, ``SearchInterrupted``
    (exit 3) says what the rerun ``goes_on`` from. The same signal again stops at once (``tuning.stop_signal``)."""
    def announce(received: signal.Signals) -> None:
        if log is not None:
            log(f"{received.name} received: stopping {stopping}; the signal again stops at once")

    def error(received: signal.Signals) -> SearchInterrupted:
        return SearchInterrupted(f"stopped by {received.name} while {doing}; rerun the same command "
                                 f"(--run-name {spec.run_name.split('/')[0]}) to go on: {goes_on}")

    with signals_request_a_stop(error, announce, again_stops_at_once=True):
        yield
        check_stop()


def check_teacher_name(spec: SearchSpec, data: TensorSplits) -> int:
    """Fail early on an unknown ``--teacher``; returns its parameter count (built on the meta device)."""
    try:
        return teacher_parameter_count(spec.teacher, data.info.input_shape[0], data.info.num_classes)
    except UnknownModelError as error:
        raise UserError(f"--teacher: {error}") from None


def bounded_space(spec: SearchSpec, data: TensorSplits, teacher_params: int,
                  log: Log | None = None) -> tuple[SearchSpace, dict[str, Any]]:
    """The spec's space cut to its size bounds (``--max-params``, ``--max-flops``, ``--max-latency-ms``) and
    ``summary.json``'s ``size_bound`` entry; ``UserError`` naming the bound and the smallest student when
    nothing fits."""
    limits = spec.size_limits(teacher_params)
    measures, latency = student_measures(data.info.input_shape, data.info.num_classes, spec.latency_cache_dir)
    started = time.perf_counter()
    try:
        space = bound_space_to(spec.space, size_bounds(limits, measures))
    except ValueError as error:
        raise UserError(f"{_bound_flags(spec, limits, teacher_params)} too small: {error}; raise the bound or "
                        "allow smaller students in --space") from None
    entry: dict[str, Any] = {**limits, "requested": spec.max_params, "pareto_measure": spec.size_measure}
    if limits["max_params"] is not None:
        entry["teacher_fraction"] = limits["max_params"] / teacher_params
    if limits["max_latency_ms"] is not None:
        entry["latency"] = {"batch": 1, "threads": 1, "statistic": "median of 30 runs after 5 warm-up runs",
                            "students_timed": latency.measured, "sizing_s": round(time.perf_counter() - started, 2),
                            **machine_description(latency.runtime)}
        if log is not None:
            log(f"students: latency bound {limits['max_latency_ms']:g} ms, {latency.measured} students timed with "
                f"{latency.runtime} at batch 1 on one thread of this machine ({cpu_model()}) in "
                f"{entry['latency']['sizing_s']:.1f} s; timings cached in {latency.folder}")
    return space, entry


def _bound_flags(spec: SearchSpec, limits: dict[str, float | None], teacher_params: int) -> str:
    """The bound flags as given, for an error message: ``--max-params 4,000 (2% of the teacher's 200,000) is``."""
    parts = []
    if limits["max_params"] is not None:
        share = f" ({spec.max_params} of the teacher's {teacher_params:,})" if spec.max_params.endswith("%") else ""
        parts.append(f"--max-params {limits['max_params']:,}{share}")
    if spec.max_flops is not None:
        parts.append(f"--max-flops {spec.max_flops:,}")
    if spec.max_latency_ms is not None:
        parts.append(f"--max-latency-ms {spec.max_latency_ms:g}")
    return " with ".join(parts) + (" is" if len(parts) == 1 else " are")


def start_ray(spec: SearchSpec, log: Log) -> None:
    """Connect to ``--address`` or start a local Ray instance; a bad address is a ``UserError``.

    A cluster is joined only once ``check_cluster`` has passed it; a local instance gets a token only its
    owner can read (``tuning.cluster_auth``).
    """
    if ray.is_initialized():
        return
    check_cluster(spec, log)
    try:
        if spec.address:
            ray.init(address=spec.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            cluster_auth.prepare_local_token(log)
            # "local": a new instance even when `ray start` runs on this machine (a plain ray.init() would
            # join the cluster recorded in /tmp/ray, e.g. a SLURM job's).
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     _system_config=local_ray_config(os.cpu_count() or 1))
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot connect to the Ray cluster at --address {spec.address}: {first_line}; "
                        "start it with 'ray start --head' or fix the address (see cluster/README.md)") from None
    resources = ray.cluster_resources()
    log(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs available")


def local_ray_config(cpus: int) -> dict[str, int]:
    """Ray settings of a local instance: idle task workers are kept for the whole run.

    Ray stops idle workers beyond one per CPU after a second. The final stage's task workers sit idle while a
    Tuner's trial actors run (the recipe phase, the baseline search), and a new worker imports torch and
    kdsearch again before its first task: about 3 s of a core each time (BENCHMARKS.md, issue 24 target 1).
    Tune's actors, up to one per CPU plus one, and as many task workers fit under this limit.
    """
    return {"num_workers_soft_limit": 2 * cpus + 2}


def check_cluster(spec: SearchSpec, log: Log) -> None:
    """``--address``: reachable, authenticating (or ``--allow-insecure-cluster``) and accepting this machine's
    token, found in about a second; a ``UserError`` otherwise. Nothing to check without ``--address``."""
    if not spec.address or ray.is_initialized():
        return
    if spec.address != "auto":
        _check_reachable(spec.address)
    try:
        cluster_auth.authenticate(spec.address, spec.allow_insecure_cluster, log)
    except cluster_auth.ClusterAuthError as error:
        raise UserError(str(error)) from None


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


def obtain_teacher(spec: SearchSpec, data: TensorSplits, log: Log,
                   stop_requested: Callable[[], bool] | None = None) -> TeacherResult:
    """Load the user's teacher (a checkpoint, a library or factory model) or get the cached / freshly trained
    ``--teacher`` (``stop_requested`` as ``trainers.get_teacher``'s)."""
    if spec.foreign_teacher:
        try:
            result = load_teacher(spec.teacher_source(), data)
        except TeacherCheckpointError as error:
            raise UserError(str(error)) from None
        view = result.details.get("preprocessing")
        seen = f"; it sees {teacher_view_text(view)}" if view else ""
        log(f"teacher: {result.name}{f' from {result.path}' if result.path else ''} (train accuracy "
            f"{result.train_accuracy:.4f}, val accuracy {result.val_accuracy:.4f}){seen}")
        return result
    recipe = TeacherRecipe(epochs=spec.teacher_epochs, seed=spec.seed)
    return get_teacher(spec.teacher, data, spec.teacher_cache_dir, recipe, log=log, stop_requested=stop_requested)


def stoppable_teacher(spec: SearchSpec, data: TensorSplits, log: Log) -> TeacherResult:
    """``obtain_teacher`` inside a ``signals_request_a_stop`` block: a stop request ends a teacher's training
    after the epoch it is in, its state saved for the same command to go on from (``SearchInterrupted``)."""
    with _a_stop_ends_the_run(log):
        return obtain_teacher(spec, data, log, stop_requested)


@contextlib.contextmanager
def _a_stop_ends_the_run(log: Log | None) -> Iterator[None]:
    """Work that ``stop_requested`` ended (a teacher's training, its per-view logits, a decode: each keeps what it
    did) is said in the log, then the signal's ``SearchInterrupted`` is raised."""
    try:
        yield
    except (TeacherTrainingStopped, ViewLogitsStopped, DecodeStopped) as stopped:
        if log is not None:
            log(str(stopped))
        check_stop()  # raises: the work stops only when a signal asked it to
        raise


@contextlib.contextmanager
def signals_stop_the_preparation(spec: SearchSpec, log: Log) -> Iterator[None]:
    """While the teacher is trained or loaded, its outputs cached and it is checked, SIGTERM, SIGUSR1 and Ctrl-C
    stop the run where it can go on from: a teacher's training and the teacher check's after their epoch in progress
    (the first saved for a rerun, the second trained again), the teacher's per-view logits after their view in progress
    (the views done kept for the rerun).
    ``SearchInterrupted`` (exit 3); the same signal again stops at once (``tuning.stop_signal``)."""
    with _signals_stop_where_a_rerun_goes_on(
            spec, log, "preparing the teacher",
            stopping="where the run can go on from (a training after its epoch in progress, a teacher's saved for the "
                     "rerun; the teacher's logits after their view in progress, the views done kept)",
            goes_on=f"a teacher's training goes on from its last saved epoch (under {spec.teacher_cache_dir}), "
                    f"its logits on augmented views from the last view kept "
                    f"(under {spec.data_cache_dir / 'teacher-views'})"):
        yield


def prepare(spec: SearchSpec, log: Log = print) -> Prepared:
    """Load data, bound the space, start Ray, check resources, then get and check the teacher and cache
    its outputs once."""
    check_cluster(spec, log)  # first: a cluster kdsearch may not use is refused before the data and teacher load
    data = load_data(spec, log)
    # The teacher trains on the driver; with a GPU there, use it.
    device = pick_device()
    started = time.perf_counter()
    # A user's teacher is checked before Ray starts; a teacher to train waits for the resource checks.
    teacher_result = obtain_teacher(spec, data.to(device), log) if spec.foreign_teacher else None
    teacher_params = (count_parameters(teacher_result.model) if teacher_result is not None
                      else check_teacher_name(spec, data))
    space, size_bound = bounded_space(spec, data, teacher_params, log)
    space = without_idle_interval(space, data)
    if teacher_result is not None:
        space = without_feature_losses(space, teacher_result, log)
    teacher_seconds = time.perf_counter() - started
    start_ray(spec, log)
    gpus_per_trial, slots = resources_per_trial(spec)
    started = time.perf_counter()
    with signals_stop_the_preparation(spec, log):
        teacher_result = teacher_result or stoppable_teacher(spec, data.to(device), log)
        teacher_result.model.to("cpu")
        teacher = shared_teacher(teacher_result, data, space, spec, log)
        teacher_seconds += time.perf_counter() - started
        bound = size_bound_text({"size_bound": size_bound, "teacher": {"params": teacher_params}})
        log(f"{bound}; augmentation {data.info.augmentation} for the teacher, {_student_augmentation(data, space)} "
            "for students")
        teacher_check = saved_check(spec.run_dir, teacher_result)
        if teacher_check is None:
            teacher_check = check_teacher(teacher_result, space, data, spec.epochs, spec.seed,
                                          cache_dir=spec.teacher_cache_dir / CHECKS_FOLDER)
        log(teacher_check["message"])
    return Prepared(
        data=data,
        teacher=teacher,
        teacher_result=teacher_result,
        teacher_family=teacher_result.model.arch.get("family"),
        gpus_per_trial=gpus_per_trial,
        slots=slots,
        teacher_seconds=teacher_seconds,
        space=space,
        size_bound=size_bound,
        teacher_params=teacher_params,
        teacher_check=teacher_check,
    )


def without_feature_losses(space: SearchSpace, teacher: TeacherResult, log: Log) -> SearchSpace:
    """``feature_loss`` fixed to none for a teacher without feature maps (an opaque program, or no
    ``--teacher-features``), said in one line; a ``--space`` file that asks for a feature loss then is a
    ``UserError`` before any work, never a failure mid-search."""
    if getattr(teacher.model, "provides_features", True):
        return space
    choices = getattr(space.feature_loss, "choices", ("none",))
    if "none" not in choices:
        raise UserError(f"--space asks for feature losses {', '.join(map(str, choices))} but the teacher "
                        f"{teacher.name} gives no feature maps; name its layers with --teacher-features (an "
                        "nn.Module teacher) or allow feature_loss: none")
    if tuple(choices) != ("none",):
        why = ("kdsearch cannot tap its layers" if teacher.details.get("source_kind") in ("torchscript", "torch.export")
               else "no --teacher-features were named")
        log(f"search space: feature losses (attention, hint) left out: teacher {teacher.name} gives no feature maps "
            f"({why})")
    return dataclasses.replace(space, feature_loss=ChoiceParam(("none",)))


def without_idle_interval(space: SearchSpace, data: TensorSplits) -> SearchSpace:
    """``distill_interval`` fixed to 1 when every trial reads cached teacher outputs (unless the user set it).

    The interval exists to skip teacher forwards; with the outputs cached a KD step costs what a plain
    step does, so a larger interval only withholds the teacher's signal and spends trials finding that out.
    """
    if _student_augmentation(data, space) != "none" or "distill_interval" in space.metadata.get("overridden", ()):
        return space
    return dataclasses.replace(space, distill_interval=ChoiceParam((1,)))


def shared_teacher(result: TeacherResult, data: TensorSplits, space: SearchSpace, spec: SearchSpec,
                   log: Log = print) -> Teacher:
    """The teacher for every trial: its outputs on the plain training images cached when some trial
    trains on them, and its logits on every augmented view where they fit (``trainers.teacher``), as an
    fp16 memory map under the data cache within ``--teacher-cache-gb``; otherwise augmented trials run it
    online on the views they see (said in one line)."""
    store = view_store(spec, data)
    views_fit = data.info.augmented and fits_view_cache(data.info, data.train_x, store)
    if data.info.augmented and _student_augmentation(data, space) != "none":
        views, images = view_count(data.info), len(data.train_x)
        if views_fit:
            size = store.logits_bytes(data.info, images)
            log(f"teacher: logits on {views} views x {images:,} training images cached on disk ({size / 2**20:,.1f} MB "
                f"fp16, {store.folder})")
        elif views * images > MAX_VIEW_FORWARDS:
            log(f"teacher: runs online on augmented views (caching {views} views x {images:,} images would cost "
                f"{views * images:,} forwards, over {MAX_VIEW_FORWARDS:,})")
        else:
            log(f"teacher: runs online on augmented views (their logits would take "
                f"{store.logits_bytes(data.info, images) / 2**30:.2f} GB, over --teacher-cache-gb "
                f"{store.budget_bytes / 2**30:.2f}; raise it to cache them)")
    if not views_fit and _student_augmentation(data, space) not in ("none", "searched"):
        return Teacher(result.model, result.name)
    with _a_stop_ends_the_run(log):
        return Teacher.with_cached_outputs(result.model, result.name, data.train_x, views_of=data.info,
                                           background=data.background, view_store=store,
                                           stop_requested=stop_requested, log=log)


def view_store(spec: SearchSpec, data: TensorSplits) -> ViewStore:
    """Where the teacher's per-view logits go (``<cache-dir>/teacher-views``) and their disk budget."""
    folder = spec.data_cache_dir / "teacher-views"
    budget = (int(spec.teacher_cache_gb * 2**30) if spec.teacher_cache_gb is not None
              else default_budget_bytes(folder))
    return ViewStore(folder, budget, fingerprint(data))


def _student_augmentation(data: TensorSplits, space: SearchSpace) -> str:
    """What students train on: "none" (plain images), the dataset's augmentation, or "searched"."""
    if not data.info.augmented:
        return "none"
    if space.augment is not None and len(space.augment.choices) > 1:
        return "searched"
    augments = space.augment.choices[0] if space.augment is not None else data.info.student_augment
    return data.info.augmentation if augments else "none"


def augmentation_summary(data: TensorSplits, space: SearchSpace) -> dict[str, Any]:
    """The ``augmentation`` entry of ``summary.json``."""
    return {"dataset": data.info.augmentation, "crop_padding": data.info.crop_padding,
            "horizontal_flip": data.info.horizontal_flip, "teacher": data.info.augmented,
            "students": _student_augmentation(data, space)}

