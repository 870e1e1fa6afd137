"""cluster/kdsearch.sbatch through a real single-node SLURM (cluster/slurm-setup.sh): submit, requeue, time limit.

The session starts munged, slurmctld and slurmd with cluster/slurm-setup.sh and stops exactly those with
cluster/slurm-teardown.sh. CI installs the packages (.ci/install-tools) and runs as root, so these tests
run there; elsewhere they skip when SLURM is not installed or the user is not root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import REPO, TINY, assert_complete, finished
from tests.ray_state import saved_by_ray

SETUP = REPO / "cluster" / "slurm-setup.sh"
TEARDOWN = REPO / "cluster" / "slurm-teardown.sh"
CONF_LINK = Path("/etc/slurm/slurm.conf")
SCRIPT = REPO / "cluster" / "kdsearch.sbatch"
TOOLS = ("sbatch", "squeue", "scontrol", "slurmctld", "slurmd", "munged")
JOB_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    missing = [tool for tool in TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; .ci/install-tools installs it)"
    if os.geteuid() != 0:
        return "starting SLURM needs root"
    return None


def _require_slurm() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the SLURM tests")
        pytest.skip(reason)


def _env(state: Path) -> dict[str, str]:
    """This process's environment without SLURM's or kdsearch's variables, with the cluster's state folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "KDSEARCH_"))}
    env["KDSEARCH_SLURM_DIR"] = str(state)
    return env


def _stop_an_earlier_sessions_cluster(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tear down a cluster that an earlier test session started and, killed, never stopped (if it still runs).

    Setup refuses to start beside a live cluster of its own; one whose state folder is in pytest's temporary
    folders can only be a test session's.
    """
    if CONF_LINK.is_symlink():
        state = Path(os.readlink(CONF_LINK)).parent
        if state.is_relative_to(tmp_path_factory.getbasetemp().parent) and (state / "pids").exists():
            subprocess.run([str(TEARDOWN)], env=_env(state), capture_output=True, text=True, timeout=120)


def test_setup_clears_what_a_killed_cluster_left(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A session killed before its teardown leaves /etc/slurm/slurm.conf linked to its dead cluster.

    The next setup clears that link instead of refusing. (This runs before the session's cluster starts:
    it is the first test of the file and the only one without the `slurm` fixture.)
    """
    _require_slurm()
    _stop_an_earlier_sessions_cluster(tmp_path_factory)
    if not CONF_LINK.exists() and not CONF_LINK.is_symlink():  # else a real leftover is there already
        killed = tmp_path / "killed"
        killed.mkdir()
        (killed / "slurm.conf").write_text("# Written by kdsearch's cluster/slurm-setup.sh: a killed session's.\n")
        gone = subprocess.Popen(["true"])
        gone.wait()
        (killed / "pids").write_text(f"slurmctld {gone.pid}\nlink {CONF_LINK}\n")
        CONF_LINK.parent.mkdir(parents=True, exist_ok=True)
        CONF_LINK.symlink_to(killed / "slurm.conf")
    assert CONF_LINK.is_symlink(), f"{CONF_LINK} is this machine's own SLURM configuration"
    left = os.readlink(CONF_LINK)
    env = _env(tmp_path / "state")
    try:
        started = subprocess.run([str(SETUP)], env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "left by a cluster that was not torn down" in started.stdout
        assert os.readlink(CONF_LINK) == str(tmp_path / "state" / "slurm.conf")
    finally:
        stopped = subprocess.run([str(TEARDOWN)], env=env, capture_output=True, text=True, timeout=120)
        if CONF_LINK.is_symlink() and os.readlink(CONF_LINK) == left:
            CONF_LINK.unlink()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not CONF_LINK.exists() and not CONF_LINK.is_symlink()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running single-node SLURM; yields the environment for sbatch."""
    _require_slurm()
    _stop_an_earlier_sessions_cluster(tmp_path_factory)
    # One OpenMP thread, as a shell tuned for training may have: the node must still get every CPU.
    env = {**_env(tmp_path_factory.mktemp("slurm-state")), "OMP_NUM_THREADS": "1"}
    started = subprocess.run([str(SETUP)], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield env
    finally:
        stopped = subprocess.run([str(TEARDOWN)], env=env, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _submit(env: dict[str, str], results: Path, sbatch_options: list[str], search_flags: list[str]) -> str:
    job_env = {**env, "KDSEARCH_RESULTS_DIR": str(results), "KDSEARCH_HEAD_IP": "127.0.0.1",
               "KDSEARCH_POLL_S": "1", "KDSEARCH_STOP_GRACE_S": "30"}
    command = ["sbatch", "--parsable", "--nodes=1", f"--cpus-per-task={os.cpu_count() or 1}", "--gpus-per-task=0",
               f"--output={results}/job-%j.log", *sbatch_options, str(SCRIPT), *TINY, *search_flags]
    submitted = subprocess.run(command, cwd=REPO, env=job_env, capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip().split(";")[0]


def _job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Restarts, ExitCode, ...)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    return dict(re.findall(r"(\w+)=(\S*)", shown.stdout))


def _wait(job_id: str, until, what: str, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = _job(job_id)
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id}: {what} not seen within {timeout_s}s: {job}"
        time.sleep(1)


def _wait_done(job_id: str) -> dict[str, str]:
    return _wait(job_id, lambda job: job.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                            "NODE_FAIL", "OUT_OF_MEMORY"), "the end")


def _log(results: Path, job_id: str) -> str:
    return (results / f"job-{job_id}.log").read_text()


def test_setup_refuses_while_another_of_its_clusters_runs(slurm: dict[str, str], tmp_path: Path) -> None:
    running = os.readlink(CONF_LINK)
    refused = subprocess.run([str(SETUP)], env=_env(tmp_path / "second"), capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1
    assert "another cluster of this script is running" in refused.stderr
    assert f"KDSEARCH_SLURM_DIR={slurm['KDSEARCH_SLURM_DIR']}" in refused.stderr  # how to stop it
    assert os.readlink(CONF_LINK) == running


def test_the_node_has_every_cpu_of_the_machine_whatever_openmp_says(slurm: dict[str, str]) -> None:
    shown = subprocess.run(["scontrol", "-o", "show", "node", "vm"], env=slurm, capture_output=True, text=True,
                           timeout=30)
    assert dict(re.findall(r"(\w+)=(\S*)", shown.stdout))["CPUTot"] == str(len(os.sched_getaffinity(0)))


def test_sbatch_runs_a_search_to_the_end(slurm: dict[str, str], tmp_path: Path, cluster_teacher: str) -> None:
    job_id = _submit(slurm, tmp_path, ["--time=10"],
                     ["--budget", "2", "--epochs", "1", "--teacher-checkpoint", cluster_teacher])
    job = _wait_done(job_id)
    log = _log(tmp_path, job_id)
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", log[-3000:]
    assert job["Restarts"] == "0"
    assert f"run 'slurm-{job_id}'" in log and "(attempt 1)" in log
    assert "Draining for up to" not in log  # Ray stopped at once at the job's end, no drain holding the allocation
    assert_complete(tmp_path / f"slurm-{job_id}", 2)


def test_a_requeued_job_resumes_the_same_run(slurm: dict[str, str], tmp_path: Path, cluster_teacher: str) -> None:
    """`scontrol requeue` (what preemption does) mid-search: the next attempt resumes the run to its budget."""
    budget = 4
    # Trials of a few seconds, so that the requeue always lands before the search could end by itself.
    job_id = _submit(slurm, tmp_path, ["--time=10"],
                     ["--budget", str(budget), "--epochs", "40", "--teacher-checkpoint", cluster_teacher])
    run_dir = tmp_path / f"slurm-{job_id}"
    deadline = time.monotonic() + JOB_TIMEOUT_S
    # What was finished and saved when the requeue was sent: read after it, the dying attempt's last writes
    # (Ray rewrites its snapshot on SIGTERM) could show fewer.
    before: dict[str, dict] = {}
    while len(before) < 2:
        assert _job(job_id).get("JobState") in ("PENDING", "RUNNING"), _log(tmp_path, job_id)[-3000:]
        assert time.monotonic() < deadline, "fewer than 2 trials saved"
        time.sleep(0.5)
        saved = saved_by_ray(run_dir)
        before = {tid: r for tid, r in finished(run_dir).items() if tid in saved}
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    assert 2 <= len(before) < budget

    job = _wait_done(job_id)
    log = _log(tmp_path, job_id)
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", log[-3000:]
    assert job["Restarts"] == "1"  # the second attempt ran with SLURM_RESTART_COUNT=1
    assert "(attempt 1)" in log and "(attempt 2)" in log and "(attempt 3)" not in log  # --open-mode=append
    # SLURM's requeue sends SIGTERM to search.py itself too, at a moment nobody chooses, and stops this job's Ray
    # nodes at the same time. Ray Tune rewrites its experiment state in place at every step. SIGTERM to the
    # driver now stops the search after that write (tuning/stop_signal.py); before, a SIGTERM during it left the
    # file cut short (seen once in CI: an empty experiment_state file). A driver that dies another way during the
    # write (its Ray gone first, SIGKILL) still can, and then the next attempt salvages the experiment instead of
    # restoring it (docs/ARCHITECTURE.md, Resume): the finished trials are kept all the same, as checked below.
    resumed = f"resuming run 'slurm-{job_id}'" in log
    salvaged = "Ray's saved state of experiment 'tune' is damaged" in log
    assert resumed != salvaged, log[-3000:]
    ended = {r["trial_id"]: r for r in assert_complete(run_dir, budget)}
    for trial_id, record in before.items():  # kept as they were, not run again
        assert {k: ended[trial_id][k] for k in ("state", "val_accuracy", "curve", "config")} == \
               {k: record[k] for k in ("state", "val_accuracy", "curve", "config")}


def test_the_time_limit_signal_saves_requeues_and_finishes(slurm: dict[str, str], tmp_path: Path,
                                                           cluster_teacher: str) -> None:
    """The time-limit signal mid-search: the script stops the search, requeues the job, the run finishes.

    At the time limit SLURM sends what ``--signal=B:USR1@300`` asks for: SIGUSR1 to the batch shell.
    ``scancel --batch --signal=USR1`` sends exactly that, at a moment the test chooses: once the search's
    trials run. (SLURM's own timing came 17-50 s into a 1-minute job, and a quiet machine finished this
    search in 48 s, before it.) Once the job has requeued itself its limit is raised, so the second attempt
    ends the run instead of being signalled again.
    """
    budget = 2
    # One small student, 200 epochs (about 8 s a trial on a quiet machine, and the teacher check's student as
    # long), both trials at once: the signal, sent as soon as the search starts them, stops the search within
    # a second or two, long before they end.
    space = tmp_path / "one-student.yaml"
    space.write_text("families: {cnn: {depth: 1, width: 8}}\n")
    # The script's own directive asks for the signal 300 s before the limit: with a 10-minute limit and @10
    # instead, SLURM's signal cannot come during the test, so the one the test sends is the only one.
    job_id = _submit(slurm, tmp_path, ["--time=10", "--signal=B:USR1@10"],
                     ["--budget", str(budget), "--epochs", "200", "--space", str(space),
                      "--teacher-checkpoint", cluster_teacher])
    log_file = tmp_path / f"job-{job_id}.log"
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (log_file.exists() and f"search: {budget} trials, up to" in log_file.read_text()):
        assert time.monotonic() < deadline, f"job {job_id}: the search's trials never started: {_job(job_id)}"
        assert _job(job_id).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), _job(job_id)
        time.sleep(0.5)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
    _wait(job_id, lambda job: job.get("Restarts", "0") != "0", "the job requeueing itself")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=20"], check=True, timeout=30)
    job = _wait_done(job_id)
    log = _log(tmp_path, job_id)
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", log[-3000:]
    assert job["Restarts"] == "1"
    assert log.count("the time limit is near") == 1  # the test's signal, and no other
    assert "the time limit is near" in log
    assert f"requeueing job {job_id}: it will resume run 'slurm-{job_id}'" in log
    assert "(attempt 2)" in log
    assert_complete(tmp_path / f"slurm-{job_id}", budget)
