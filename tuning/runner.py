"""One search from spec to report: prepare, search (new or resumed), final stage, summary, report."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from runfolder import (
    BASELINE_FOLDER,
    FAILED,
    FINAL_FOLDER,
    JOURNAL_FILE,
    SCHEMA_VERSION,
    SPEC_FILE,
    SUMMARY_FILE,
    RunLocked,
    atomic_write_json,
    hold_run_lock,
)
from spaces import baseline_space
from trainers import evaluate
from tuning import final, recipe_phase, resume, rounds, tuner
from tuning.disk_full import disk_full_error, stop_on_full_disk
from tuning.gain_curve import ARCH_KEYS
from tuning.journal import JournalSpec, sync_journal
from tuning.prepare import Prepared, augmentation_summary, prepare
from tuning.records import RunRecorder, count_states, finished, load_records
from tuning.resume import ResumePlan
from tuning.spec import SearchSpec, UserError
from tuning.stop_signal import SearchInterrupted, signals_request_a_stop
from tuning.teacher_check import save_check

Log = Callable[[str], None]


class SearchFailed(Exception):
    """Every trial of the search failed; the run folder is kept and the message says where to look."""


@dataclass
class RunOutcome:
    """Where a finished run left its results, and its summary."""

    run_dir: Path
    summary: dict[str, Any]
    report: Path | None


def run(spec: SearchSpec, log: Log = print) -> RunOutcome:
    """Run (or resume) the search described by ``spec`` and write everything under ``spec.run_dir``.

    One driver per run: the run's lock is held from before the resume decision to the report, so a second
    driver of the same run is refused at once (``UserError``, naming the first) instead of searching twice
    into the same records. The baseline's search is part of this run and takes no lock of its own.
    A full disk, wherever it surfaces, ends the run with ``ResultsDiskFull`` (``tuning.disk_full``).
    """
    with one_driver(spec, log), stop_on_full_disk(Path(spec.results_dir).absolute(), spec.tune_storage):
        return _run_locked(spec, log)


@contextlib.contextmanager
def one_driver(spec: SearchSpec, log: Log) -> Iterator[None]:
    """Hold the run's lock (``runfolder.hold_run_lock``); another driver holding it is bad input (exit 2)."""
    try:
        with hold_run_lock(spec.results_dir, spec.run_name, log):
            yield
    except RunLocked as error:
        raise UserError(str(error)) from None


def _run_locked(spec: SearchSpec, log: Log) -> RunOutcome:
    started = time.perf_counter()
    plan = resume.decide(spec)  # before any work: a rerun that does not match its run folder is refused
    owns_ray = not ray.is_initialized()
    try:
        prepared = prepare(spec, log)
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(spec.run_dir / SPEC_FILE, spec.to_dict())
        if prepared.teacher_check is not None:
            save_check(spec.run_dir, prepared.teacher_check)
        search_started = time.perf_counter()
        records = search(spec, prepared, plan, log)
        search_seconds = time.perf_counter() - search_started
        if spec.time_budget is None:
            check_complete(spec, records)
        check_some_succeeded(spec, records)
        summary = base_summary(spec, prepared, records)
        summary["timings"] = {"teacher_s": prepared.teacher_seconds, "search_s": search_seconds,
                              "trial_busy_s": sum(r["busy_s"] or 0.0 for r in records), "slots": prepared.slots}
        atomic_write_json(spec.run_dir / SUMMARY_FILE, summary)
        final_started = time.perf_counter()
        recipes = recipe_phase.RecipePhase(spec, prepared, records, log)
        with signals_request_a_stop(functools.partial(_final_stage_interrupted, spec)):
            final_result = final.run_final_stage(
                spec, records, prepared.data, prepared.teacher, prepared.gpus_per_trial,
                functools.partial(search_baseline, spec, prepared, log=log), log, prepared.teacher_family,
                search_recipe=recipes if recipes.enabled else None)
        summary["teacher"].update(final_result.pop("teacher", {}))
        summary.update(final_result)
        summary["recipe_search"] = (recipe_phase.winner_summary(recipes.entry, records, recipes.records, final_result)
                                    if recipes.entry else None)
        summary["timings"]["recipe_s"] = recipes.entry["seconds"] if recipes.entry else 0.0
        summary["timings"]["final_s"] = time.perf_counter() - final_started - summary["timings"]["recipe_s"]
        summary["timings"]["total_s"] = time.perf_counter() - started
        atomic_write_json(spec.run_dir / SUMMARY_FILE, summary)
    finally:
        if owns_ray and ray.is_initialized():
            ray.shutdown()
    return RunOutcome(spec.run_dir, summary, build_report(spec.run_dir, log))


def _final_stage_interrupted(spec: SearchSpec, received: signal.Signals) -> SearchInterrupted:
    return SearchInterrupted(f"final stage interrupted by {received.name}; rerun the same command (--run-name "
                             f"{spec.run_name.split('/')[0]}) to go on: the trainings it finished are kept in "
                             f"{spec.run_dir / FINAL_FOLDER}")


def check_complete(spec: SearchSpec, records: list[dict[str, Any]]) -> None:
    """Ray Tune returns normally when its driver is interrupted (Ctrl-C, SIGUSR1 from a batch system):
    keep the run resumable instead of going on with a partial search."""
    if len(records) < spec.budget:
        raise SearchInterrupted(f"search interrupted after {len(records)} of {spec.budget} trials; rerun the "
                                f"same command (--run-name {spec.run_name.split('/')[0]}) to resume it")


def check_some_succeeded(spec: SearchSpec, records: list[dict[str, Any]]) -> None:
    """A search whose every trial failed has nothing to report on: say why, in one line."""
    if not records or any(r["state"] != FAILED for r in records):
        return
    errors = collections.Counter(r["error"] or "no error message recorded" for r in records)
    error, count = errors.most_common(1)[0]
    raise SearchFailed(f"all {len(records)} trials failed ({count} with: {error}); the run folder is kept, "
                       f"each trial's error is in {spec.run_dir / 'trials.csv'}")


def search_baseline(spec: SearchSpec, prepared: Prepared, winner_config: dict[str, Any], log: Log) -> dict[str, Any]:
    """The baseline's own search: the winner's architecture without a teacher, its recipe searched.

    It is a run of its own in ``<run>/baseline/`` (same Ray Tune + Optuna machinery and ASHA,
    ``--baseline-budget`` trials), so it resumes like the main search. Returns its best configuration
    (``config``), that trial's ``record``, and what the search did (``budget``, ``trials``, ``states``, ``best_trial``,
    ``best_val_accuracy``).
    """
    if spec.baseline_trials == 0:
        return unsearched_baseline(winner_config, log)
    augment_choices = (False, True) if prepared.data.info.augmented else (False,)
    space = baseline_space(spec.space, winner_config["family"], winner_config["depth"], winner_config["width"],
                           augment_choices)
    sub_spec = dataclasses.replace(spec, run_name=f"{spec.run_name}/{BASELINE_FOLDER}", budget=spec.baseline_trials,
                                   objective="accuracy", space=space, time_budget=None)
    sub_spec.run_dir.mkdir(parents=True, exist_ok=True)
    log(f"baseline search: {sub_spec.budget} trials of {winner_config['family']} depth {winner_config['depth']} "
        f"width {winner_config['width']} without a teacher (lr, weight decay, batch size, augmentation)")
    records = search(sub_spec, dataclasses.replace(prepared, space=space), resume.decide(sub_spec), log)
    check_complete(sub_spec, records)
    best = final.top_configs(records, 1)
    if not best:
        raise SearchInterrupted(f"every trial of the baseline search in {sub_spec.run_dir} failed; see its trials.csv")
    return {"config": best[0]["config"], "record": best[0], "budget": sub_spec.budget, "trials": len(records),
            "states": count_states(records),
            "best_trial": best[0]["trial_id"], "best_val_accuracy": best[0]["val_accuracy"]}


def unsearched_baseline(winner_config: dict[str, Any], log: Log) -> dict[str, Any]:
    """``--baseline-budget 0``: no search; the baseline is the winner's architecture on the winner's own lr,
    weight decay, batch size and augmentation, without the teacher (``search_baseline``'s return, 0 trials)."""
    config = {key: winner_config[key] for key in (*ARCH_KEYS, *final.RECIPE_KEYS) if key in winner_config}
    log("baseline: not searched (--baseline-budget 0): the winner's lr, weight decay, batch size and augmentation "
        "without the teacher; its recipe was tuned for distillation, so kd_gain is not against a tuned baseline")
    return {"config": {**config, "alpha": 0.0}, "record": None, "budget": 0, "trials": 0,
            "states": count_states([]), "best_trial": None, "best_val_accuracy": None}


def search(spec: SearchSpec, prepared: Prepared, plan: ResumePlan, log: Log,
           told: tuner.Told | None = None) -> list[dict[str, Any]]:
    """Carry out the resume ``plan`` (``tuning.resume``) with Ray Tune; return the finished records.

    ``told``: trials measured before, that a new search's Optuna starts from (``tuner.build_tuner``)."""
    journal = JournalSpec(spec.run_dir / JOURNAL_FILE, spec.objective, prepared.space, prepared.teacher_family,
                          spec.size_measure)
    resume.apply(spec, plan)
    if plan.message:
        log(plan.message)
    if plan.restore:
        done = len(finished(load_records(spec.run_dir)))
        log(f"resuming run '{spec.run_name}': {done} of {plan.planned_trials} trials done")
        tuner.fit(tuner.restore_tuner(spec, prepared, plan.restore), log)
    if plan.new_experiment:
        log(f"search: {plan.new_trials} trials, up to {prepared.slots} at a time, results in {spec.run_dir}")
        recorder = RunRecorder(spec.run_dir, plan.new_experiment, spec.epochs, spec.budget, journal, log)
        tuner.fit(tuner.build_tuner(spec, prepared, recorder, plan.new_experiment, plan.new_trials,
                                    continue_from=plan.continue_from, told=told), log)
    records = finished(load_records(spec.run_dir))
    sync_journal(journal, records)
    return records


def init_from_teacher_note(prepared: Prepared) -> str:
    """Whether the search offers parameter distillation (``init_from_teacher``) and why, in one sentence."""
    family = prepared.teacher_family
    if family is None:
        return (f"not offered: the teacher {prepared.teacher.name} is not a member of a kdsearch student family, so "
                "its weights cannot be sliced into a student")
    if family not in prepared.space.families:
        return f"not offered: the teacher is of the {family} family, which the search space leaves out"
    return f"offered to {family} students: the teacher is a large member of the {family} family"


def base_summary(spec: SearchSpec, prepared: Prepared, records: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.json`` as the search alone can fill it (the final stage adds student and baseline)."""
    data = prepared.data
    best = final.top_configs(records, 1)
    teacher_params = prepared.teacher_params
    return {
        "schema_version": SCHEMA_VERSION,
        "run": spec.run_name,
        "budget": spec.budget,
        "objective": spec.objective,
        "trials": count_states(records),
        "dataset": {"name": data.info.name, **data.sizes(), "classes": data.info.num_classes,
                    "input_shape": list(data.info.input_shape), "class_counts": data.class_counts(),
                    "source": data.source,
                    "skipped": [{"path": path, "reason": reason} for path, reason in data.skipped]},
        "teacher": {"arch": prepared.teacher.name, "source": prepared.teacher_result.source,
                    "params": teacher_params,
                    "train_accuracy": prepared.teacher_result.train_accuracy,
                    "val_accuracy": prepared.teacher_result.val_accuracy,
                    "test_accuracy": evaluate(prepared.teacher.model, data.test_x, data.test_y)[0],
                    "init_from_teacher": init_from_teacher_note(prepared),
                    **prepared.teacher_result.details},
        "teacher_check": prepared.teacher_check,
        "size_bound": prepared.size_bound,
        "augmentation": augmentation_summary(data, prepared.space),
        "best_config": best[0]["config"] if best else None,
        "best_trial": {key: best[0][key] for key in ("trial_id", "val_accuracy", "params", "epochs")}
        if best else None,
        **final.EMPTY_RESULT,
        **rounds.EMPTY_ROUNDS,
        "recipe_search": None,
        "pareto": final.pareto_summary(records, spec.size_measure),
    }


def build_report(run_dir: Path, log: Log) -> Path | None:
    """Draw ``report.html`` and ``summary.md``; a report failure never loses the run's results."""
    try:
        import reports

        path = reports.build(run_dir)
    except Exception as error:  # the results are on disk; the report can be rebuilt with python -m reports
        if disk_full_error(error) is not None:
            raise  # a full disk is the run's to report (tuning.disk_full), and the rerun builds the report
        log(f"report: could not be built ({type(error).__name__}: {error}); "
            f"rebuild it with: python -m reports {run_dir}")
        return None
    return path
