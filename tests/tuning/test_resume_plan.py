"""The resume decision table of ``tuning.resume``, row by row, on small fake run folders (no Ray run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ray import cloudpickle

from runfolder import COMPLETE, RUNNING, STOPPED
from tuning import UserError, build_spec
from tuning.records import load_records, write_records
from tuning.resume import DONE, EXTEND, NEW, RESTORE, SALVAGE, apply, decide, ray_trial_ids, read_experiments
from tuning.spec import SearchSpec

STAMP = "2026-01-01_00-00-00"


def _spec(tmp_path: Path, budget: int = 4, **flags: Any) -> SearchSpec:
    return build_spec(results_dir=str(tmp_path), run_name="r", budget=budget, **flags)


def _folder(spec: SearchSpec, experiments: list[tuple[str, int]], trials: dict[str, tuple[str, str]]) -> None:
    """A run folder: ``spec.json``, ``experiments.json`` and ``trials.json`` (id -> (experiment, state))."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    (spec.run_dir / "spec.json").write_text(json.dumps(spec.to_dict()))
    (spec.run_dir / "experiments.json").write_text(json.dumps([{"name": n, "trials": t} for n, t in experiments]))
    write_records(spec.run_dir, [
        {"trial_id": trial_id, "number": number, "experiment": experiment, "state": state, "config": {},
         "curve": [], "error": None}
        for number, (trial_id, (experiment, state)) in enumerate(trials.items())])


def _ray_saved(spec: SearchSpec, experiment: str, trial_ids: list[str], searcher: bytes | None = None) -> Path:
    """What Ray leaves in an experiment folder after a snapshot: its state JSON and the searcher's pickle."""
    folder = spec.run_dir / experiment
    folder.mkdir(parents=True, exist_ok=True)
    trial_data = [[json.dumps({"trial_id": trial_id, "status": "RUNNING"}), "{}"] for trial_id in trial_ids]
    (folder / "tuner.pkl").write_bytes(cloudpickle.dumps({"tuner": experiment}))
    (folder / f"experiment_state-{STAMP}.json").write_text(json.dumps({"trial_data": trial_data}))
    (folder / f"searcher-state-{STAMP}.pkl").write_bytes(
        searcher if searcher is not None else cloudpickle.dumps({"counter": len(trial_ids)}))
    return folder


def test_fresh_run_is_one_new_experiment_with_the_whole_budget(tmp_path: Path) -> None:
    plan = decide(_spec(tmp_path))
    assert (plan.action, plan.new_experiment, plan.new_trials, plan.restore, plan.continue_from) == (
        NEW, "tune", 4, None, None)
    assert plan.experiments == ({"name": "tune", "trials": 4},) and plan.forget == ()


def test_killed_before_ray_saved_forgets_that_experiment_and_starts_again(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _folder(spec, [("tune", 4)], {"a": ("tune", RUNNING)})  # no experiment_state: Ray never saved
    plan = decide(spec)
    assert (plan.action, plan.new_experiment, plan.new_trials, plan.forget) == (NEW, "tune", 4, ("a",))
    apply(spec, plan)
    assert load_records(spec.run_dir) == {} and read_experiments(spec.run_dir) == [{"name": "tune", "trials": 4}]


def test_killed_before_ray_saved_an_extension_continues_from_the_finished_experiment(tmp_path: Path) -> None:
    spec = _spec(tmp_path, budget=6)
    _folder(spec, [("tune", 4), ("tune-2", 2)], {
        **{t: ("tune", COMPLETE) for t in "abcd"}, "e": ("tune-2", RUNNING)})
    _ray_saved(spec, "tune", list("abcd"))
    plan = decide(spec)
    assert (plan.action, plan.new_experiment, plan.new_trials, plan.continue_from, plan.forget) == (
        EXTEND, "tune-2", 2, "tune", ("e",))


def test_killed_mid_experiment_restores_it_and_drops_the_trials_ray_did_not_save(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _folder(spec, [("tune", 4)], {"a": ("tune", COMPLETE), "b": ("tune", STOPPED), "c": ("tune", RUNNING),
                                  "d": ("tune", COMPLETE)})  # d ended after Ray's last snapshot
    _ray_saved(spec, "tune", ["a", "b", "c"])
    plan = decide(spec)
    assert (plan.action, plan.restore, plan.new_experiment, plan.forget) == (RESTORE, "tune", None, ("d",))
    apply(spec, plan)
    records = load_records(spec.run_dir)
    assert sorted(records) == ["a", "b", "c"] and sorted(r["number"] for r in records.values()) == [0, 1, 2]


def test_killed_mid_experiment_with_a_raised_budget_restores_then_extends(tmp_path: Path) -> None:
    spec = _spec(tmp_path, budget=6)
    _folder(spec, [("tune", 4)], {"a": ("tune", COMPLETE), "b": ("tune", RUNNING)})
    _ray_saved(spec, "tune", ["a", "b"])
    plan = decide(spec)
    assert (plan.action, plan.restore, plan.new_experiment, plan.new_trials, plan.continue_from) == (
        RESTORE, "tune", "tune-2", 2, "tune")


@pytest.mark.parametrize("damage", [b"", b"\x80\x05\x95"])  # opened and not written; cut mid-write
def test_damaged_searcher_state_keeps_the_finished_trials_and_runs_the_rest_afresh(tmp_path: Path,
                                                                                  damage: bytes) -> None:
    spec = _spec(tmp_path)
    _folder(spec, [("tune", 4)], {"a": ("tune", COMPLETE), "b": ("tune", STOPPED), "c": ("tune", RUNNING)})
    folder = _ray_saved(spec, "tune", ["a", "b", "c"], searcher=damage)
    assert ray_trial_ids(folder) is None
    plan = decide(spec)
    assert (plan.action, plan.restore, plan.new_experiment, plan.new_trials, plan.continue_from, plan.forget) == (
        SALVAGE, None, "tune-2", 2, None, ("c",))
    assert plan.experiments == ({"name": "tune", "trials": 2}, {"name": "tune-2", "trials": 2})
    assert "damaged" in plan.message


def test_finished_run_with_a_larger_budget_extends_from_its_searcher(tmp_path: Path) -> None:
    spec = _spec(tmp_path, budget=4)
    _folder(spec, [("tune", 4)], {t: ("tune", COMPLETE) for t in "abcd"})
    _ray_saved(spec, "tune", list("abcd"))
    plan = decide(_spec(tmp_path, budget=7))
    assert (plan.action, plan.restore, plan.new_experiment, plan.new_trials, plan.continue_from) == (
        EXTEND, None, "tune-2", 3, "tune")
    assert plan.planned_trials == 7


def test_finished_run_with_the_same_budget_has_nothing_to_search(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _folder(spec, [("tune", 4)], {t: ("tune", COMPLETE) for t in "abcd"})
    _ray_saved(spec, "tune", list("abcd"))
    plan = decide(spec)
    assert (plan.action, plan.restore, plan.new_experiment, plan.forget) == (DONE, None, None, ())


@pytest.mark.parametrize(("flags", "message"), [
    ({"epochs": 9}, "exists with a different epochs"),
    ({"budget": 3}, "a budget can only be raised"),
])
def test_a_mismatched_spec_is_refused_in_one_line(tmp_path: Path, flags: dict[str, Any], message: str) -> None:
    spec = _spec(tmp_path)
    _folder(spec, [("tune", 4)], {"a": ("tune", COMPLETE)})
    with pytest.raises(UserError, match=message) as raised:
        decide(_spec(tmp_path, **{"budget": 4, **flags}))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("allowed_then", [True, False])
def test_allowing_an_insecure_cluster_or_not_is_no_other_search(tmp_path: Path, allowed_then: bool) -> None:
    """Like --trust-checkpoint, --allow-insecure-cluster says how to connect, not what is searched."""
    spec = _spec(tmp_path, address="10.0.0.1:6379", allow_insecure_cluster=allowed_then)
    _folder(spec, [("tune", 4)], {t: ("tune", COMPLETE) for t in "abcd"})
    _ray_saved(spec, "tune", list("abcd"))
    assert decide(_spec(tmp_path, address="10.0.0.1:6379", allow_insecure_cluster=not allowed_then)).action == DONE


def test_a_corrupt_spec_json_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _folder(spec, [("tune", 4)], {})
    (spec.run_dir / "spec.json").write_text("{")
    with pytest.raises(UserError, match="spec.json is corrupt"):
        decide(spec)
