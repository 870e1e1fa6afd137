"""Kill or signal ``search.py`` mid-run, rerun the same command, and check nothing was lost.

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
from collections.abc import Callable
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


def _signal_when(command: list[str], ready: Callable[[], bool], received: signal.Signals, output: Path,
                 timeout_s: float = 240) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command`` with its output (unbuffered) in ``output``, send its driver (alone, as `kill` does)
    ``received`` once ``ready()``; its outcome and the seconds it took to end after the signal."""
    with output.open("w") as stdout:
        process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=stdout, stderr=subprocess.PIPE,
                                   text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout_s
        try:
            while not ready():
                assert process.poll() is None, f"search.py ended before the signal: {process.communicate()[1][-3000:]}"
                assert time.monotonic() < deadline, f"not ready for the signal after {timeout_s} s"
                time.sleep(0.05)
            process.send_signal(received)
            signalled = time.monotonic()
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    seconds = time.monotonic() - signalled
    return subprocess.CompletedProcess(command, process.returncode, output.read_text(), stderr), seconds


@pytest.mark.slow
def test_signals_stop_the_search_and_the_final_stage_where_a_rerun_goes_on(tmp_path: Path,
                                                                          teacher_checkpoint: str) -> None:
    """SIGTERM mid-search (preemption, kill, timeout): Ray Tune stops after its step with its state whole, exit 3,
    and the rerun restores Ray's experiment (never salvages it). SIGUSR1 (a batch system's time-limit warning)
    in the final stage: exit 3 within seconds, and the rerun reads back the trainings it had finished."""
    shutil.copy(teacher_checkpoint, tmp_path / "teacher.pt")
    results = tmp_path / "results"
    run_dir, final = results / "resumed", results / "resumed" / "final"
    # Trials of a few seconds, so that the first signal lands while the search runs.
    command = [*_command(results, 4), "--epochs", "20", "--top-k", "1", "--final-seeds", "2",
               "--baseline-budget", "0", "--recipe-budget", "0", "--rounds", "1"]

    stopped, _ = _signal_when(command, lambda: len(set(_finished(run_dir)) & saved_by_ray(run_dir)) >= 2,
                              signal.SIGTERM, tmp_path / "1.log")
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "search interrupted after" in stopped.stderr and "rerun the same command" in stopped.stderr
    before = {tid: r for tid, r in _finished(run_dir).items() if tid in saved_by_ray(run_dir)}
    assert 2 <= len(before) < 4

    stopped, seconds = _signal_when(command, lambda: bool(list(final.glob("*.pt"))), signal.SIGUSR1,
                                    tmp_path / "2.log")
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "resuming run 'resumed'" in stopped.stdout and "damaged" not in stopped.stdout + stopped.stderr
    assert "final stage interrupted by SIGUSR1" in stopped.stderr and seconds < 20
    assert not (run_dir / "best").exists()
    finished = len(list(final.glob("*.pt")))

    rerun = _run(command)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "trainings were finished by an earlier attempt of this run" in rerun.stdout
    assert json.loads((run_dir / "summary.json").read_text())["final"]["kept"] >= finished
    records = json.loads((run_dir / "trials.json").read_text())
    assert len(records) == 4 == len({r["trial_id"] for r in records})
    after = {r["trial_id"]: r for r in records}
    for trial_id, record in before.items():
        assert {k: after[trial_id][k] for k in ("state", "val_accuracy", "curve")} == \
               {k: record[k] for k in ("state", "val_accuracy", "curve")}


def _printed(line: str, output: Path) -> Callable[[], bool]:
    """Whether ``line`` is in ``output`` yet (a ``ready`` for ``_signal_when``)."""
    return lambda: output.exists() and line in output.read_text()


@pytest.mark.slow
def test_a_signal_stops_a_teacher_training_after_its_epoch_and_the_rerun_goes_on_from_it(tmp_path: Path) -> None:
    """SIGUSR1 (a batch system's time-limit warning) while kdsearch trains its teacher: the epoch ends, the
    training's state is saved, exit 3; the same command goes on from that epoch (``trainers.teacher_training``
    shows the weights are an uninterrupted training's). SIGTERM once the teacher is cached, while it is checked:
    exit 3 after the check's epoch in progress, the teacher cached for the next run to load."""
    results = tmp_path / "results"
    command = [sys.executable, str(REPO / "search.py"), "--budget", "1", "--results-dir", str(results),
               "--teacher", "cnn-large", "--teacher-epochs", "20", *FLAGS, "--baseline-budget", "0",
               "--recipe-budget", "0", "--rounds", "1"]
    output = tmp_path / "1.log"
    stopped, _ = _signal_when(command, _printed("teacher cnn-large: epoch 2/20 ", output), signal.SIGUSR1, output)
    first = stopped.stdout
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "stopped by SIGUSR1 while preparing the teacher; rerun the same command" in stopped.stderr
    assert "SIGUSR1 received: stopping where the run can go on from (a training after its epoch" in first
    stopped_after = int(first.split("training stopped after epoch ")[1].split("/")[0])
    assert 2 <= stopped_after < 20
    teachers = results / "teachers"
    in_progress = list(teachers.glob("*.training.pt"))
    assert len(in_progress) == 1 and not list(teachers.glob("*[0-9a-f].pt"))  # saved, nothing cached
    assert not (results / "resumed").exists()  # the run itself had not started

    output = tmp_path / "2.log"
    stopped, _ = _signal_when(command, _printed("teacher cnn-large: cached at", output), signal.SIGTERM, output)
    second = stopped.stdout
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert f"teacher cnn-large: going on from epoch {stopped_after}/20, saved by an earlier attempt" in second
    assert f"teacher cnn-large: epoch {stopped_after}/20 " not in second
    assert "stopped by SIGTERM while preparing the teacher" in stopped.stderr
    assert "teacher check:" not in second and "search:" not in second  # the check stopped after its epoch
    assert not in_progress[0].exists() and len(list(teachers.glob("*[0-9a-f].pt"))) == 1  # cached: a rerun loads it
