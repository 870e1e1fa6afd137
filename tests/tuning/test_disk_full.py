"""A full results disk: where it surfaces (unit tests), and a real one under a running ``search.py``.

The end-to-end test mounts a small tmpfs for the results (root, as in CI); the data cache and the teacher
stay outside it, so only what the run writes fills it. A filler file takes every free byte once the first
trial has ended; then the filler is deleted and the same command rerun.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.exceptions import RayTaskError
from ray.tune.error import TuneError

import tuning.disk_full
import tuning.trainable
from trainers.files import safe_torch_load
from tuning.disk_full import (
    MIN_FREE_BYTES,
    DiskFullGuard,
    ResultsDiskFull,
    disk_full_error,
    quiet_ray_disk_full_logs,
    stop_on_full_disk,
)

REPO = Path(__file__).resolve().parents[2]
# Room for the run's own files (a few MB) above the free space the driver stops at.
DISK_BYTES = MIN_FREE_BYTES + 32 * 2**20
BUDGET = 2
FLAGS = ["--budget", str(BUDGET), "--epochs", "2", "--scheduler", "none", "--max-train-samples", "300",
         "--top-k", "0", "--max-concurrent", "1", "--run-name", "filled", "--recipe-budget", "0",
         "--gain-curve", "0", "--rounds", "1"]


def _disk_full(filename: str | None = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)


def _raised_by_ray_around(error: BaseException) -> TuneError:
    """What Ray Tune raises when a callback raised ``error``: a ``TuneError`` made while handling it."""
    try:
        try:
            raise error
        except Exception:
            raise TuneError("Traceback (most recent call last): ...")  # noqa: B904 - as Ray raises it
    except TuneError as wrapped:
        return wrapped


def test_a_full_disk_is_found_wherever_ray_wrapped_it() -> None:
    full = _disk_full()
    assert disk_full_error(full) is full
    assert disk_full_error(_raised_by_ray_around(full)) is full  # a callback's write, e.g. trials.json
    worker = RayTaskError("train", "traceback", full).as_instanceof_cause()  # a trial's write, in its worker
    assert disk_full_error(worker) is full
    stop = ResultsDiskFull("/results")
    assert disk_full_error(_raised_by_ray_around(stop)) is stop
    assert disk_full_error(OSError(errno.EDQUOT, "quota")) is not None
    assert disk_full_error(_raised_by_ray_around(OSError(errno.EACCES, "denied"))) is None
    assert disk_full_error(ValueError("no")) is None


def test_stop_on_full_disk_names_the_results_dir_or_the_file_outside_it(tmp_path: Path) -> None:
    line = f"results disk full at {tmp_path}; free space and rerun the same command"
    with pytest.raises(ResultsDiskFull, match=re.escape(line)):
        with stop_on_full_disk(tmp_path):
            raise _raised_by_ray_around(_disk_full(str(tmp_path / "run" / ".trials.json.x.tmp")))
    with pytest.raises(ResultsDiskFull) as stopped:
        with stop_on_full_disk(tmp_path):
            raise _disk_full("/shared/storage/run/tune/experiment_state.json")  # --storage-path elsewhere
    assert str(stopped.value.path) == "/shared/storage/run/tune/experiment_state.json"
    with pytest.raises(ValueError), stop_on_full_disk(tmp_path):
        raise ValueError("not about the disk")


def test_too_little_free_space_stops_before_ray_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = DiskFullGuard(tmp_path, tmp_path / "run")
    guard.on_step_begin(0, [])  # the test's disk has room
    monkeypatch.setattr(tuning.disk_full, "MIN_FREE_BYTES", 2**62)
    with pytest.raises(ResultsDiskFull, match=str(tmp_path)):
        guard.on_step_begin(0, [])
    with pytest.raises(ResultsDiskFull):
        with stop_on_full_disk(tmp_path / "not-made-yet"):  # checked before the run starts, on the parent's disk
            pass


def test_a_worker_that_found_the_disk_full_stops_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[dict] = []

    def report(metrics: dict, checkpoint: object = None) -> None:
        if checkpoint is not None:
            raise _disk_full()
        reported.append(metrics)

    monkeypatch.setattr(tuning.trainable.tune, "report", report)
    with pytest.raises(tuning.trainable._StopTrial):
        tuning.trainable.report_checkpoint({"epoch": 5, "val_accuracy": 0.5}, str(tmp_path))
    assert reported[0]["epoch"] == 5 and tuning.trainable.DISK_FULL in reported[0]  # not raised: Ray would retry
    with pytest.raises(ResultsDiskFull):
        DiskFullGuard(tmp_path, tmp_path / "run").on_trial_result(0, [], object(), reported[0])


def test_ray_log_lines_about_the_full_disk_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    quiet_ray_disk_full_logs()
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning(f"Trial controller checkpointing failed: {_disk_full()}")
        logger.error("Trial task failed for trial t", exc_info=RayTaskError("train", "tb", _disk_full()))
        logger.error("Trial task failed for trial u", exc_info=ValueError("kept"))
    assert [record.getMessage() for record in caplog.records] == ["Trial task failed for trial u"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK_BYTES`` mounted under ``tmp_path``, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.fail("test_disk_full mounts a tmpfs and needs root (CI runs as root); run it as root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"could not mount a tmpfs at {mount_point} (a container without CAP_SYS_ADMIN?): "
                    f"{mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # Lazily if a process the search left (a Ray worker shutting down) still holds a file there.
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def _command(results: Path, cache: Path, teacher: Path) -> list[str]:
    return [sys.executable, str(REPO / "search.py"), "--results-dir", str(results), "--cache-dir", str(cache),
            "--teacher-checkpoint", str(teacher), *FLAGS]


def _ended(run_dir: Path) -> int:
    try:
        records = json.loads((run_dir / "trials.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(record["state"] != "RUNNING" for record in records)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file: one allocation of it all, then a page at a time."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)  # unbuffered: nothing left to flush
    try:
        stats = os.statvfs(disk)
        with contextlib.suppress(OSError):  # what the run wrote meanwhile: the page-sized writes take the rest
            os.posix_fallocate(descriptor, 0, stats.f_bavail * stats.f_frsize)
        os.lseek(descriptor, 0, os.SEEK_END)
        with contextlib.suppress(OSError):
            while True:
                os.write(descriptor, b"\0" * 4096)
    finally:
        os.close(descriptor)
    return filler


def _fill_after_first_trial(command: list[str], run_dir: Path, disk: Path,
                            timeout_s: float) -> tuple[subprocess.CompletedProcess, Path]:
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    try:
        while _ended(run_dir) < 1:
            assert process.poll() is None, f"search.py ended before its first trial: {process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, f"no trial ended within {timeout_s}s"
            time.sleep(0.05)
        filler = _fill(disk)
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), filler


def _assert_nothing_half_written(run_dir: Path) -> None:
    """No temp files; our JSON files, the journal's lines and every checkpoint read back whole."""
    assert not [path for path in run_dir.rglob("*") if path.name.endswith((".tmp", ".rebuild"))]
    for name in ("spec.json", "experiments.json", "trials.json", "summary.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())
    journal = (run_dir / "optuna.journal").read_bytes()
    assert journal.endswith(b"\n")
    for line in journal.splitlines():
        json.loads(line)
    for state in run_dir.rglob("trial_state.pt"):
        safe_torch_load(state)


@pytest.mark.slow
def test_a_full_results_disk_stops_in_one_line_and_the_rerun_finishes_the_budget(
        tmp_path: Path, small_disk: Path, teacher_checkpoint: str) -> None:
    teacher = shutil.copy(teacher_checkpoint, tmp_path / "teacher.pt")
    results = small_disk / "results"
    run_dir = results / "filled"
    command = _command(results, tmp_path / "cache", Path(teacher))

    stopped, filler = _fill_after_first_trial(command, run_dir, small_disk, timeout_s=240)
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert stopped.stderr.splitlines() == [f"results disk full at {results}; free space and rerun the same command"]
    _assert_nothing_half_written(run_dir)  # summary.json included, if the search got that far
    ended_before = {r["trial_id"]: r for r in json.loads((run_dir / "trials.json").read_text())
                    if r["state"] != "RUNNING"}
    assert ended_before

    filler.unlink()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    records = json.loads((run_dir / "trials.json").read_text())
    assert len(records) == BUDGET and all(record["state"] != "RUNNING" for record in records)
    for record in records:  # the trials that ended before the disk filled are kept as they were, not re-run
        if record["trial_id"] in ended_before:
            assert record["curve"] == ended_before[record["trial_id"]]["curve"]
    assert set(ended_before) <= {record["trial_id"] for record in records}
    assert sum(json.loads((run_dir / "summary.json").read_text())["trials"].values()) == BUDGET
    assert len((run_dir / "trials.csv").read_text().splitlines()) == 1 + BUDGET
    _assert_nothing_half_written(run_dir)
