"""Resume, owned here: what a rerun of a run name does, decided from the run folder alone.

A run is a list of Ray Tune experiments (``experiments.json``: ``tune`` with the budget, then
``tune-2``, ... for each raise of ``--budget``) and one record per trial (``trials.json``). Our records
are the run's source of truth; Ray's saved experiment state is used only for what Ray alone has (the
live trials' checkpoints and the searcher's state); the Optuna journal is rebuilt from our records.

``decide`` reads the folder and returns a ``ResumePlan``; ``apply`` brings our records in line with it;
``tuning.runner`` carries it out. The decision table (each row is unit-tested on small fake run folders):

==============================================  ===================================================
the run folder                                   the plan
==============================================  ===================================================
nothing yet                                      new: one experiment with the whole budget
last experiment never saved by Ray               forget it (and its records), then decide again
  (killed before its first snapshot)
last experiment saved, unfinished                restore it (Ray's own resume); drop our records
                                                 of trials its snapshot does not know
last experiment's saved state is damaged         keep its finished trials, forget the rest, run
  (killed or disk full while Ray wrote it)      what is left in a new experiment, fresh searcher
every experiment finished, budget raised         extend: a new experiment for the extra trials,
                                                 its searcher continuing from the last one's
every experiment finished, same budget           nothing to search
spec differs from spec.json, or budget lowered   refused: one line, exit 2
==============================================  ===================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ray import cloudpickle, tune

from runfolder import EXPERIMENTS_FILE, RUNNING, SPEC_FILE, atomic_write_json, read_json
from tuning.records import load_records, write_records
from tuning.spec import IDENTITY_FIELDS, SearchSpec, UserError

NEW, RESTORE, SALVAGE, EXTEND, DONE = "new", "restore", "salvage", "extend", "done"

# Ray's files in an experiment folder that a restore loads, and how each is read.
_RAY_STATE_FILES = (("experiment_state-*.json", json.loads), ("search_gen_state-*.json", cloudpickle.loads),
                    ("searcher-state-*.pkl", cloudpickle.loads), ("callback-states-*.pkl", cloudpickle.loads))


@dataclass(frozen=True)
class ResumePlan:
    """What to run, and the records to change first.

    ``experiments`` is the run's experiment list once the plan is carried out. ``restore`` names the
    experiment Ray restores, if any; ``new_experiment`` (``new_trials`` trials) is started after it,
    its searcher continuing from ``continue_from`` (``None``: a fresh searcher). ``forget`` lists the
    trial ids whose records are dropped: trials Ray will not know about after the restore.
    """

    action: str
    experiments: tuple[dict[str, Any], ...]
    restore: str | None = None
    new_experiment: str | None = None
    new_trials: int = 0
    continue_from: str | None = None
    forget: tuple[str, ...] = ()
    message: str | None = None

    @property
    def planned_trials(self) -> int:
        return planned_trials(self.experiments)


def decide(spec: SearchSpec) -> ResumePlan:
    """The plan for ``spec.run_dir``; raises ``UserError`` when the folder holds a different search."""
    saved = load_saved_spec(spec.run_dir)
    experiments = read_experiments(spec.run_dir)
    if saved is not None:
        check_resumable(spec, saved, planned_trials(experiments))
    records = load_records(spec.run_dir)
    forget: list[str] = []
    message = None
    while experiments and not ray_saved(Path(experiment_path(spec, experiments[-1]["name"]))):
        # Killed before Ray's first snapshot: that experiment never ran a trial Ray could resume.
        unsaved = experiments.pop()["name"]
        forget += [trial_id for trial_id, r in records.items() if r.get("experiment") == unsaved]
    if not experiments:
        return _new_experiment(NEW, spec, [], None, forget, message)
    last = experiments[-1]["name"]
    folder = Path(experiment_path(spec, last))
    ours = {trial_id: r for trial_id, r in records.items() if r.get("experiment") == last}
    known = ray_trial_ids(folder)
    if known is None:  # a state file is truncated: Ray's restore would hang; keep what our records finished
        unfinished = [trial_id for trial_id, r in ours.items() if r["state"] == RUNNING]
        kept = len(ours) - len(unfinished)
        experiments[-1] = {**experiments[-1], "trials": kept}
        message = (f"Ray's saved state of experiment '{last}' is damaged (killed, or out of disk space, while "
                   f"writing it); keeping its {kept} finished trials and running the rest in a new experiment")
        return _new_experiment(SALVAGE, spec, experiments, None, forget + unfinished, message)
    finished_here = sum(r["state"] != RUNNING for r in ours.values())
    if finished_here < experiments[-1]["trials"]:
        unknown = [trial_id for trial_id in ours if trial_id not in known]
        plan = _new_experiment(RESTORE, spec, experiments, last, forget + unknown, None)
        return replace(plan, restore=last)
    if spec.budget > planned_trials(experiments):
        return _new_experiment(EXTEND, spec, experiments, last, forget, None)
    return ResumePlan(DONE, tuple(experiments), forget=tuple(forget))


def _new_experiment(action: str, spec: SearchSpec, experiments: list[dict[str, Any]], continue_from: str | None,
                    forget: list[str], message: str | None) -> ResumePlan:
    """``experiments`` plus, when the budget asks for more trials, a new experiment for them."""
    remaining = spec.budget - planned_trials(experiments)
    if remaining <= 0:
        return ResumePlan(action, tuple(experiments), forget=tuple(forget), message=message)
    name = "tune" if not experiments else f"tune-{len(experiments) + 1}"
    return ResumePlan(action, (*experiments, {"name": name, "trials": remaining}), new_experiment=name,
                      new_trials=remaining, continue_from=continue_from, forget=tuple(forget), message=message)


def apply(spec: SearchSpec, plan: ResumePlan) -> None:
    """Write the plan's experiment list and drop the records it forgets (renumbering the rest)."""
    records = load_records(spec.run_dir)
    if plan.forget:
        kept = sorted((r for trial_id, r in records.items() if trial_id not in plan.forget), key=lambda r: r["number"])
        for number, record in enumerate(kept):
            record["number"] = number
        write_records(spec.run_dir, kept)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec.run_dir / EXPERIMENTS_FILE, list(plan.experiments))


def ray_saved(folder: Path) -> bool:
    """Whether Ray Tune snapshotted the experiment in ``folder``: its tuner and at least one state."""
    return tune.Tuner.can_restore(str(folder)) and any(folder.glob("experiment_state-*.json"))


def ray_trial_ids(folder: Path) -> set[str] | None:
    """The trial ids in Ray's newest saved state of an experiment; ``None`` when a state file is damaged.

    Ray writes these files in place, so a kill in the middle of a write leaves a truncated file, and
    Ray's own restore then logs "Failed to restore the run state" and waits forever for trials.
    """
    newest = {}
    for pattern, load in _RAY_STATE_FILES:
        path = max(folder.glob(pattern), default=None, key=lambda p: p.name)
        if path is None:
            continue
        try:
            newest[pattern] = load(path.read_bytes())
        except Exception:  # truncated or garbled: any decoding error means unusable
            return None
    state = newest.get(_RAY_STATE_FILES[0][0]) or {}
    try:
        return {json.loads(trial[0])["trial_id"] for trial in state.get("trial_data", [])}
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def experiment_path(spec: SearchSpec, name: str) -> str:
    """Where Ray Tune keeps experiment ``name`` of this run."""
    return str(spec.tune_storage / name)


def read_experiments(run_dir: Path) -> list[dict[str, Any]]:
    """``[{"name": "tune", "trials": 50}, ...]`` in order; empty for a new run."""
    return read_json(run_dir / EXPERIMENTS_FILE) or []


def planned_trials(experiments: Any) -> int:
    """The run's budget as its experiments add up."""
    return sum(entry["trials"] for entry in experiments)


def load_saved_spec(run_dir: Path) -> dict[str, Any] | None:
    """The ``spec.json`` of an existing run, or ``None`` when the folder holds no run yet."""
    try:
        return read_json(run_dir / SPEC_FILE)
    except json.JSONDecodeError:
        raise UserError(f"{run_dir / SPEC_FILE} is corrupt; move the run folder away or choose another "
                        "--run-name") from None


def check_resumable(spec: SearchSpec, saved: dict[str, Any], planned: int) -> None:
    """Refuse to mix two different searches under one run name, or to lower a run's budget."""
    saved_identity = {name: saved.get(name) for name in IDENTITY_FIELDS}
    current = json.loads(json.dumps(spec.identity()))
    differing = [name for name in IDENTITY_FIELDS if saved_identity[name] != current[name]]
    if differing:
        name = differing[0]
        raise UserError(
            f"run '{spec.run_name}' exists with a different {name} ({saved_identity[name]!r} there, "
            f"{current[name]!r} now); rerun with the original flags to resume, or pick a new --run-name")
    if spec.budget < planned:
        raise UserError(f"run '{spec.run_name}' was started with --budget {planned}, and a budget can only be "
                        f"raised; pass --budget {planned} or more to continue it")
