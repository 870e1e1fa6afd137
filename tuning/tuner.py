"""The Ray Tune search: ``Tuner`` + ``OptunaSearch`` (define-by-run) + ASHA, started or restored."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from spaces import SearchSpace, standard_point, suggest_config
from tuning.disk_full import DiskFullGuard, quiet_ray_disk_full_logs
from tuning.prepare import Prepared
from tuning.records import RunRecorder
from tuning.resume import experiment_path
from tuning.spec import SearchSpec
from tuning.stop_signal import sigterm_stops_the_search
from tuning.trainable import run_trial

METRIC = "val_accuracy"
# Ray Tune settings read from the environment when a search starts, applied for each search whatever the
# user's environment says. A snapshot of the experiment at every controller step is what lets a driver
# killed at any moment resume with exactly the trials it had (Ray's default snapshots every 10 s or more
# and loses what ended since); the others replace Ray's console output with kdsearch's progress lines.
# Configurations measured before a search (``tuning.recipe_phase``), with their validation accuracy.
Told = list[tuple[dict[str, Any], float]]
TOLD_STUDY = "told"
RUN_SETTINGS = {"TUNE_GLOBAL_CHECKPOINT_S": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
                "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
optuna.logging.set_verbosity(optuna.logging.WARNING)  # kdsearch prints its own progress lines


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that Ray can pickle with its searcher: Optuna 5.1's genetic samplers hold a ``threading.Lock``,
    which is left out of the pickle and made anew on unpickling."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def make_sampler(spec: SearchSpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``--sampler``, seeded by ``--seed``."""
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "cmaes":
        # CMA-ES handles the numeric parameters; the categorical ones fall back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=spec.seed, warn_independent_sampling=False)
    if spec.sampler == "nsga2":
        return PicklableNSGAIISampler(seed=spec.seed, population_size=min(50, max(4, spec.budget // 4)))
    with warnings.catch_warnings():  # multivariate/group are marked experimental, and are what conditional spaces need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, group=True,
                                          n_startup_trials=min(10, max(2, spec.budget // 5)))


def make_searcher(spec: SearchSpec, space: SearchSpace, teacher_family: str | None,
                  warm_start: bool = True, told: Told | None = None) -> OptunaSearch:
    """Optuna sampling the define-by-run ``space``; two objectives for ``--objective pareto``.

    With ``warm_start`` the first trial is the standard KD recipe (``spaces.standard_point``), so the
    search starts from what people set by hand and can only improve on it. ``told`` (configurations and
    their validation accuracy, measured elsewhere) start the study informed (``told_study``).
    """
    define_by_run = functools.partial(suggest_config, space=space, teacher_family=teacher_family)
    if spec.objective == "pareto":
        metric, mode = [METRIC, spec.size_measure], ["max", "min"]
    else:
        metric, mode = METRIC, "max"
    points = [standard_point(space)] if warm_start else None
    study = {}
    if told:
        if spec.objective == "pareto":
            raise ValueError("told trials need a single objective (accuracy)")
        study = {"storage": told_study(told, define_by_run), "study_name": TOLD_STUDY}
    return OptunaSearch(space=define_by_run, metric=metric, mode=mode, sampler=make_sampler(spec), seed=spec.seed,
                        points_to_evaluate=points, **study)


def told_study(told: Told, define_by_run: Callable[[Any], Any]) -> optuna.storages.InMemoryStorage:
    """A study holding ``told`` as finished trials, for ``OptunaSearch(storage=..., study_name=TOLD_STUDY)``.

    Ray's ``evaluated_rewards`` refuses a define-by-run space (it needs each parameter's distribution up
    front); Optuna's ask-and-tell gets them instead: each configuration is enqueued, the define-by-run
    function replays it (so a trial records exactly the parameters the space samples, with their
    distributions) and its value is told. The sampler then starts from these trials, not from scratch.
    """
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name=TOLD_STUDY, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for config, value in told:
        study.enqueue_trial(config, skip_if_exists=True)
        trial = study.ask()
        define_by_run(trial)
        study.tell(trial, value)
    return storage


def make_scheduler(spec: SearchSpec) -> tune.schedulers.TrialScheduler:
    """ASHA on the epoch (always on accuracy, also for pareto), or plain FIFO."""
    if spec.scheduler == "none" or spec.epochs < 3:
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", metric=METRIC, mode="max", max_t=spec.epochs,
                         grace_period=max(1, spec.epochs // 5), reduction_factor=4)


def trainable(spec: SearchSpec, prepared: Prepared) -> Any:
    """``run_trial`` with data and teacher put in the object store once, and per-trial resources."""
    recipe = {"epochs": spec.epochs, "seed": spec.seed, "cpus_per_trial": spec.cpus_per_trial,
              "size_measure": spec.size_measure if spec.objective == "pareto" else None,
              "latency_cache_dir": str(spec.latency_cache_dir)}
    with_data = tune.with_parameters(run_trial, data=prepared.data, teacher=prepared.teacher, recipe=recipe)
    return tune.with_resources(with_data, {"cpu": spec.cpus_per_trial, "gpu": prepared.gpus_per_trial})


def run_config(spec: SearchSpec, recorder: RunRecorder, name: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(spec.tune_storage),
        # Transient failures (a lost node, a preempted worker) are retried from the last checkpoint.
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # The guard first: on a full disk it stops the search before the records or Ray's state are touched.
        callbacks=[DiskFullGuard(Path(spec.results_dir).absolute(), spec.tune_storage), recorder,
                   JsonLoggerCallback()],
        verbose=0,
    )


def build_tuner(spec: SearchSpec, prepared: Prepared, recorder: RunRecorder, name: str, num_samples: int,
                continue_from: str | None = None, told: Told | None = None) -> tune.Tuner:
    """A new ``Tuner`` running ``num_samples`` trials as experiment ``name``.

    ``continue_from`` names an earlier experiment of this run whose searcher state (every trial
    Optuna has seen) the new searcher starts from: that is how a raised budget continues a run.
    ``told`` (a first experiment only) are trials measured before, given to Optuna instead of the
    standard point (``make_searcher``).
    """
    # A run continued with a raised budget has evaluated the standard point already.
    first = continue_from is None
    searcher = make_searcher(spec, prepared.space, prepared.teacher_family, warm_start=first and told is None,
                             told=told if first else None)
    if continue_from is not None:
        searcher.restore_from_dir(experiment_path(spec, continue_from))
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=make_scheduler(spec),
        num_samples=num_samples,
        # One trial more than the slots: the next one is sampled and placed while the others run, so a
        # freed slot starts work at once (resources still cap what runs). An explicit cap is exact.
        max_concurrent_trials=spec.max_concurrent or prepared.slots + 1,
        time_budget_s=spec.time_budget,
        reuse_actors=True,
    )
    return tune.Tuner(trainable(spec, prepared), tune_config=tune_config,
                      run_config=run_config(spec, recorder, name))


def restore_tuner(spec: SearchSpec, prepared: Prepared, name: str) -> tune.Tuner:
    """Ray Tune's own restore: finished trials kept, unfinished ones resumed from their checkpoints.

    Ray restores the run's callbacks (the ``RunRecorder``) from its experiment state.
    """
    return tune.Tuner.restore(experiment_path(spec, name), trainable=trainable(spec, prepared),
                              resume_unfinished=True, resume_errored=False, restart_errored=False)


def fit(tuner: tune.Tuner, log: Callable[[str], None]) -> tune.ResultGrid:
    """Run the search to the end of the budget, under ``RUN_SETTINGS``; SIGTERM stops it as SIGUSR1 does, its
    state saved whole (``tuning.stop_signal``)."""
    with run_settings(), sigterm_stops_the_search():
        results = tuner.fit()
    log(f"search: {len(results)} trials, {results.num_errors} failed")
    return results


@contextlib.contextmanager
def run_settings() -> Iterator[None]:
    """``RUN_SETTINGS`` in the environment while a search runs; the user's own values come back after.

    Ray's log lines about a full disk are left out too: the driver reports it in one line (``tuning.disk_full``).
    """
    saved = {name: os.environ.get(name) for name in RUN_SETTINGS}
    os.environ.update(RUN_SETTINGS)
    quiet_ray_disk_full_logs()
    try:
        with warnings.catch_warnings():
            # A trial resumed from its last checkpoint reports the epochs after it again; Optuna keeps the first.
            warnings.filterwarnings("ignore", message="The reported value is ignored because this `step")
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
