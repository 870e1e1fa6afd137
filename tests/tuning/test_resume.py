"""Kill ``search.py`` with SIGKILL mid-search, rerun the same command, and check nothing was lost.

Runs ``search.py`` in subprocesses, each with its own local Ray (as a batch job would).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.ray_state import saved_by_ray
from tuning.journal import open_study

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--epochs", "4", "--scheduler", "none", "--max-train-samples", "300", "--top-k", "0",
         "--final-seeds", "1", "--finetune-epochs", "0", "--max-concurrent", "2", "--run-name", "resumed",
         "--baseline-budget", "2", "--gain-curve", "0"]


def _command(results: Path, budget: int, *extra: str) -> list[str]:
    teacher = str(results.parent / "teacher.pt")
    return [sys.executable, str(REPO / "search.py"), "--budget", str(budget), "--results-dir", str(results),
            "--teacher-checkpoint", teacher, *FLAGS, *extra]


def _finished(run_dir: Path) -> dict[str, dict]:
    path = run_dir / "trials.json"
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError:  # never happens with atomic writes; tolerate it anyway while polling
        return {}
    return {r["trial_id"]: r for r in records if r["state"] != "RUNNING"}


def _kill_after(command: list[str], run_dir: Path, trials: int, timeout_s: float) -> None:
    """SIGKILL the search once ``trials`` trials have ended and Ray has saved them (a snapshot a moment later)."""
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while len(set(_finished(run_dir)) & saved_by_ray(run_dir)) < trials:
            assert process.poll() is None, "search.py ended before it could be killed"
            assert time.monotonic() < deadline, f"fewer than {trials} trials after {timeout_s}s"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        process.wait()


def _run(command: list[str], timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.slow
def test_killed_search_resumes_to_exactly_the_budget(tmp_path: Path, teacher_checkpoint: str) -> None:
    shutil.copy(teacher_checkpoint, tmp_path / "teacher.pt")
    tmp_path = tmp_path / "results"
    run_dir = tmp_path / "resumed"
    _kill_after(_command(tmp_path, 8), run_dir, trials=3, timeout_s=240)
    before = {tid: r for tid, r in _finished(run_dir).items() if tid in saved_by_ray(run_dir)}
    assert 3 <= len(before) < 8
    assert not (run_dir / "summary.json").exists() or json.loads((run_dir / "summary.json").read_text())

    rerun = _run(_command(tmp_path, 8))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming run 'resumed'" in rerun.stdout
    assert (run_dir / "teacher_check.json").exists()  # the first start's check, reused rather than retrained

    after = _finished(run_dir)
    records = json.loads((run_dir / "trials.json").read_text())
    assert len(records) == 8 == len(after)
    assert len({r["trial_id"] for r in records}) == 8
    assert sorted(r["number"] for r in records) == list(range(8))
    for trial_id, record in before.items():  # earlier results kept as they were
        assert after[trial_id]["state"] == record["state"]
        assert after[trial_id]["val_accuracy"] == record["val_accuracy"]
        assert after[trial_id]["curve"] == record["curve"]  # kept, not re-run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sum(summary["trials"].values()) == 8
    study = open_study(run_dir / "optuna.journal", "accuracy")
    assert len(study.trials) == 8
    assert len({t.user_attrs["trial_id"] for t in study.trials}) == 8
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert "report.html" in os.listdir(run_dir)

    # A different search under the same name is refused, and nothing changes.
    clash = _run(_command(tmp_path, 8, "--sampler", "random"))
    assert clash.returncode == 2
    assert "different sampler" in clash.stderr and len(clash.stderr.strip().splitlines()) == 1
    lowered = _run(_command(tmp_path, 6))
    assert lowered.returncode == 2 and "can only be raised" in lowered.stderr

    # Raising the budget of the finished run continues it.
    raised = _run(_command(tmp_path, 10))
    assert raised.returncode == 0, raised.stderr[-3000:]
    records = json.loads((run_dir / "trials.json").read_text())
    assert len(records) == 10 and len({r["trial_id"] for r in records}) == 10
    assert len(open_study(run_dir / "optuna.journal", "accuracy").trials) == 10
    assert [entry["trials"] for entry in json.loads((run_dir / "experiments.json").read_text())] == [8, 2]


@pytest.mark.slow
def test_sigterm_stops_the_search_with_its_state_whole(tmp_path: Path, teacher_checkpoint: str) -> None:
    """SIGTERM (preemption, kill, timeout) to the driver mid-search: Ray Tune stops after its step and saves its
    state, the run exits with status 3, and the rerun restores Ray's experiment (never salvages it)."""
    shutil.copy(teacher_checkpoint, tmp_path / "teacher.pt")
    results = tmp_path / "results"
    run_dir = results / "resumed"
    # Trials of a few seconds each, so that the signal lands while the search runs.
    command = _command(results, 6, "--epochs", "30")
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while len(set(_finished(run_dir)) & saved_by_ray(run_dir)) < 2:
            assert process.poll() is None, "search.py ended before the signal"
            assert time.monotonic() < deadline, "fewer than 2 trials after 240 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # the driver alone, as `kill PID` sends it
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 3, stderr[-3000:]
    assert "search interrupted after" in stderr and "rerun the same command" in stderr
    before = {tid: r for tid, r in _finished(run_dir).items() if tid in saved_by_ray(run_dir)}
    assert 2 <= len(before) < 6

    rerun = _run(command)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming run 'resumed'" in rerun.stdout and "damaged" not in rerun.stdout + rerun.stderr
    records = json.loads((run_dir / "trials.json").read_text())
    assert len(records) == 6 == len({r["trial_id"] for r in records})
    after = {r["trial_id"]: r for r in records}
    for trial_id, record in before.items():
        assert {k: after[trial_id][k] for k in ("state", "val_accuracy", "curve")} == \
               {k: record[k] for k in ("state", "val_accuracy", "curve")}
