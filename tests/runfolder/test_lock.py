"""One driver per run (``runfolder._lock``): held by another process, it refuses at once and names it; a lock
left by a process killed with SIGKILL, or the file of an earlier run, never blocks; storage without locks
warns and goes on."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import runfolder._lock
from runfolder import RunLocked, check_not_running, hold_run_lock, lock_path

REPO = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from runfolder import hold_run_lock
with hold_run_lock(sys.argv[1], sys.argv[2], print):
    print("held", flush=True)
    time.sleep(120)
"""


@contextmanager
def held_by_child(results_dir: Path, run_name: str) -> Iterator[subprocess.Popen]:
    """A real other process holding the run's lock (killed with SIGKILL on exit, if still alive)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(results_dir), run_name], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_run_held_by_another_process_is_refused_at_once_naming_it(tmp_path: Path) -> None:
    with held_by_child(tmp_path, "run") as child:
        holder = json.loads(lock_path(tmp_path, "run").read_text())
        assert holder["pid"] == child.pid and holder["host"] == socket.gethostname()
        for attempt in (lambda: check_not_running(tmp_path, "run"), lambda: hold_run_lock(tmp_path, "run",
                                                                                          print).__enter__()):
            started = time.monotonic()
            with pytest.raises(RunLocked) as refused:
                attempt()
            assert time.monotonic() - started < 1.0  # no waiting
            message = str(refused.value)
            assert "\n" not in message
            assert f"run 'run' is already running (pid {child.pid} on host {socket.gethostname()} since " in message
            assert "wait for it or use another --run-name" in message
        with hold_run_lock(tmp_path, "other", print):  # another run beside it is not affected
            pass


def test_a_lock_left_by_a_process_killed_with_sigkill_never_blocks(tmp_path: Path) -> None:
    with held_by_child(tmp_path, "run") as child:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert lock_path(tmp_path, "run").read_text()  # the dead holder's record is still there
        started = time.monotonic()
        check_not_running(tmp_path, "run")
        with hold_run_lock(tmp_path, "run", print):
            assert time.monotonic() - started < 1.0
            assert json.loads(lock_path(tmp_path, "run").read_text())["pid"] == os.getpid()
    assert lock_path(tmp_path, "run").read_text() == ""  # released: who held it is cleared, the file stays


def test_the_lock_file_of_an_earlier_run_does_not_block(tmp_path: Path) -> None:
    lock_path(tmp_path, "run").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "yesterday"}))
    with hold_run_lock(tmp_path, "run", print):
        pass
    with hold_run_lock(tmp_path, "run", print):  # and its own leftover does not block the next either
        pass


def test_a_second_hold_in_the_same_process_is_refused(tmp_path: Path) -> None:
    # POSIX locks never conflict within a process, and opening the file again would drop the first hold.
    with hold_run_lock(tmp_path, "run", print):
        with pytest.raises(RunLocked, match="already running in this process"):
            check_not_running(tmp_path, "run")
        with pytest.raises(RunLocked, match="already running in this process"), hold_run_lock(tmp_path, "run", print):
            pass
    with hold_run_lock(tmp_path, "run", print):  # released on exit
        pass


def test_the_probe_creates_nothing(tmp_path: Path) -> None:
    check_not_running(tmp_path / "results", "run")
    assert not (tmp_path / "results").exists()


def test_storage_without_locks_warns_once_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(runfolder._lock.fcntl, "lockf", no_locks)
    warnings: list[str] = []
    ran = False
    with hold_run_lock(tmp_path, "run", warnings.append):
        ran = True
    assert ran and len(warnings) == 1
    assert "does not support file locks" in warnings[0] and "unlocked" in warnings[0]
