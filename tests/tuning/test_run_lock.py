"""One driver per run: a second ``search.py`` of a running run exits 2 at once, naming the first; the lock of
a driver killed with SIGKILL does not block the rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runfolder import check_not_running, lock_path
from tests.runfolder.test_lock import held_by_child
from tests.tuning.conftest import SMALL
from tuning import UserError, build_spec, run

REPO = Path(__file__).resolve().parents[2]


def _holder_pid(results: Path, run_name: str) -> int | None:
    try:
        return json.loads(lock_path(results, run_name).read_text())["pid"]
    except (OSError, ValueError, KeyError):  # not there yet, or being written
        return None


def test_a_second_search_of_a_running_run_exits_2_at_once_naming_the_first(tmp_path: Path) -> None:
    results = tmp_path / "results"
    command = [sys.executable, str(REPO / "search.py"), "--smoke", "--max-train-samples", "300",
               "--run-name", "busy", "--results-dir", str(results)]
    first = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _holder_pid(results, "busy") != first.pid:  # the first driver holds the run's lock
            assert first.poll() is None, "the first search.py ended before it took the lock"
            assert time.monotonic() < deadline, "the first search.py took no lock within 120 s"
            time.sleep(0.1)

        started = time.monotonic()
        second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
        assert second.returncode == 2, second.stderr[-2000:]
        assert elapsed < 5, f"the second search.py took {elapsed:.1f} s to refuse"
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"run 'busy' is already running (pid {first.pid} on host " in lines[0]
        assert "search.py --smoke" in lines[0] and "another --run-name" in lines[0]
        assert second.stdout == ""
        assert first.poll() is None  # the first goes on, untouched
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and any Ray processes it started
        first.wait()
    check_not_running(results, "busy")  # killed with SIGKILL: its lock is gone with it, a rerun may resume


def test_run_refuses_a_run_held_by_another_process_before_any_work(tmp_path: Path) -> None:
    # tuning.run itself holds the lock (search.py's early probe is only a shortcut), and its refusal is bad
    # input: a UserError, and no run folder.
    results = tmp_path / "results"
    spec = build_spec(results_dir=str(results), run_name="held", **SMALL)
    with held_by_child(results, "held") as child:
        with pytest.raises(UserError, match=rf"run 'held' is already running \(pid {child.pid} on host "):
            run(spec, log=lambda message: None)
    assert not (results / "held").exists()
