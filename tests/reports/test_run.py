"""Reading run folders: complete, partial, broken, and not run folders at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.run import RunFolderError, Trial, load_run
from tests.reports.conftest import RunFactory


def test_load_full_run(run_factory: RunFactory) -> None:
    run = load_run(run_factory(name="r1"))
    assert run.name == "r1" and run.problems == []
    assert len(run.trials) == 12 and [t.number for t in run.trials] == list(range(12))
    assert {t.state for t in run.trials} == {"COMPLETE", "STOPPED", "FAILED"}
    assert run.study is not None and len(run.study.trials) == 12
    assert run.summary is not None and run.spec["sampler"] == "tpe"
    failed = next(t for t in run.trials if t.state == "FAILED")
    assert failed.best_val_accuracy is None and failed.error


def test_loading_never_writes_to_the_journal(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    journal = run_dir / "optuna.journal"
    before = journal.read_bytes(), journal.stat().st_mtime_ns, sorted(p.name for p in run_dir.iterdir())
    load_run(run_dir)
    assert (journal.read_bytes(), journal.stat().st_mtime_ns, sorted(p.name for p in run_dir.iterdir())) == before


def test_trials_rebuilt_from_journal_when_trials_json_is_missing(run_factory: RunFactory) -> None:
    run = load_run(run_factory(with_trials=False, summary="missing"))
    assert len(run.trials) == 12
    assert any("no trials.json" in p for p in run.problems)
    by_id = {t.trial_id: t for t in run.trials}
    assert by_id["t_0002"].state == "STOPPED" and by_id["t_0003"].state == "FAILED"
    assert by_id["t_0000"].curve and by_id["t_0000"].best_val_accuracy is not None
    # Journal mirror writes carry no real run times.
    assert all(t.start_time is None for t in run.trials)


def test_pareto_run_trials_from_journal_have_sizes(run_factory: RunFactory) -> None:
    run = load_run(run_factory(objective="pareto", with_trials=False))
    assert all(t.params for t in run.trials if t.state != "FAILED")


def test_journal_missing_or_corrupt_is_a_problem_not_a_failure(run_factory: RunFactory) -> None:
    run = load_run(run_factory(with_journal=False))
    assert run.study is None and any("no optuna.journal" in p for p in run.problems)
    run_dir = run_factory()
    (run_dir / "optuna.journal").write_text('{"op_code": 999, "worker_id": "x"}\n')
    (run_dir / "summary.json").write_text("{not json")
    run = load_run(run_dir)
    assert run.study is None and run.summary is None
    assert any("optuna.journal" in p for p in run.problems) and any("summary.json" in p for p in run.problems)
    assert len(run.trials) == 12


def test_trial_from_record_fills_gaps_from_curve() -> None:
    t = Trial.from_record(
        {
            "trial_id": "x",
            "number": "3",
            "state": "stopped",
            "config": None,
            "curve": [{"epoch": 1, "val_accuracy": 0.4, "params": 77}, {"epoch": 2, "val_accuracy": float("nan")}],
            "best_val_accuracy": None,
            "params": None,
        }
    )
    assert (t.number, t.state, t.config, t.best_val_accuracy, t.params) == (3, "STOPPED", {}, 0.4, 77)
    assert t.family == "unknown" and t.label == "#3 x"


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_not_a_run_folder(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "r"
    if kind == "file":
        target.write_text("x")
    elif kind == "empty":
        target.mkdir()
        (target / "spec.json").write_text(json.dumps({"run_name": "r"}))
    with pytest.raises(RunFolderError, match="results/<run>"):
        load_run(target)
