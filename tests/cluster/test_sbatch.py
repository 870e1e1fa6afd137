"""cluster/kdsearch.sbatch: valid bash, flags search.py knows, and its control flow on stub SLURM/Ray tools.

The control-flow tests run the real script with ``srun``, ``scontrol`` and ``hostname`` replaced by
small stubs on ``PATH`` and a fake repo whose ``.venv/bin/{python,ray}`` record how they are called, so
they check what the script does (Ray head then workers, the search command, requeue on the time-limit
signal, each node's Ray stopped at the end) without a cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "kdsearch.sbatch"
JOB_ID = "4242"
NODES = ("node-a", "node-b", "node-c")


def _logical_lines(text: str) -> list[str]:
    """The script's lines with backslash continuations joined and comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if not line.lstrip().startswith("#")]


def _search_command() -> str:
    commands = [line for line in _logical_lines(SCRIPT.read_text()) if re.search(r"\bsearch\.py\b", line)
                and "PYTHON" in line]
    assert len(commands) == 1, commands
    return commands[0]


def _help_flags() -> set[str]:
    result = subprocess.run([sys.executable, "search.py", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=True)
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", result.stdout))


def test_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=30)


@pytest.mark.skipif(shutil.which("shellcheck") is None and not os.environ.get("CI"),
                    reason="shellcheck is not installed (.ci/install-tools installs it; under CI it must be there)")
@pytest.mark.parametrize("script", [SCRIPT, *sorted((REPO / "cluster").glob("*.sh")), REPO / ".ci" / "install-tools"],
                         ids=lambda path: path.name)
def test_script_passes_shellcheck(script: Path) -> None:
    result = subprocess.run(["shellcheck", "-s", "bash", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_embedded_python_compiles() -> None:
    """The wait-for-nodes snippet fed to python on stdin is valid Python using Ray's public API."""
    snippet = re.search(r"<<'EOF'\n(.*?)\nEOF\n", SCRIPT.read_text(), re.S)
    assert snippet is not None
    compile(snippet.group(1), "kdsearch.sbatch:wait-for-nodes", "exec")
    assert 'ray.init(address="auto"' in snippet.group(1) and "ray.nodes()" in snippet.group(1)


def test_sbatch_directives_request_a_requeueable_job() -> None:
    directives = [line.split("#", 2)[1] for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    options = {part.split("=")[0] for line in directives for part in line.split()[1:2]}
    assert {"--nodes", "--cpus-per-task", "--gpus-per-task", "--requeue", "--signal", "--open-mode"} <= options


def test_search_command_passes_run_name_and_address() -> None:
    command = _search_command()
    assert re.search(r"--address auto\b", command)
    assert '--run-name "$RUN_NAME"' in command
    assert '"$@"' in command  # the user's own flags go through
    assert re.search(r'RUN_NAME="\$\{KDSEARCH_RUN_NAME:-slurm-\$SLURM_JOB_ID\}"', SCRIPT.read_text())


def test_every_flag_passed_to_search_py_exists() -> None:
    passed = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", _search_command()))
    assert {"--address", "--run-name", "--storage-path", "--results-dir"} <= passed
    known = _help_flags()
    assert passed <= known, sorted(passed - known)


# --- the script's control flow, on stubs ---------------------------------------------------------------

STUBS = {
    "srun": """#!/bin/bash
echo "srun $*" >> "$FAKE_LOG"
while [[ $# -gt 0 ]]; do case "$1" in -w) shift 2 ;; -*) shift ;; *) break ;; esac; done
exec "$@"
""",
    "scontrol": """#!/bin/bash
echo "scontrol $*" >> "$FAKE_LOG"
if [[ "$1" == show ]]; then printf '%s\\n' $FAKE_NODES; fi
""",
    "hostname": """#!/bin/bash
echo "$FAKE_IPS"
""",
}
VENV_STUBS = {
    "ray": """#!/bin/bash
# A node counts as joined once its stop trap is set (it is logged after), as a real node is once it runs.
if [[ "$1" == start ]]; then trap 'echo "ray start stopped" >> "$FAKE_LOG"; exit 0' TERM; fi
echo "ray $*" >> "$FAKE_LOG"
if [[ "$1" == get-auth-token ]]; then echo "umask $(umask)" >> "$FAKE_LOG"; fi
if [[ "$1" == start ]]; then
    while true; do sleep 0.05; done
fi
""",
    "python": """#!/bin/bash
if [[ "$1" == - ]]; then
    cat > /dev/null
    # Like the real snippet, return once $2 nodes have joined (the stubs' `ray start` lines are in the log).
    for _ in $(seq 600); do
        [[ "$(grep -c '^ray start .*--block' "$FAKE_LOG")" -ge "$2" ]] && break
        sleep 0.05
    done
    echo "python wait-for-nodes $2" >> "$FAKE_LOG"
    exit 0
fi
echo "python $*" >> "$FAKE_LOG"
echo "search env RAY_ADDRESS=$RAY_ADDRESS RAY_AUTH_MODE=$RAY_AUTH_MODE" >> "$FAKE_LOG"
if [[ "$FAKE_SEARCH" == run ]]; then
    trap 'echo "search got USR1" >> "$FAKE_LOG"; exit 0' USR1
    echo "search running" >> "$FAKE_LOG"
    while true; do sleep 0.05; done
fi
exit "$FAKE_SEARCH"
""",
}


def _write_stubs(folder: Path, stubs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in stubs.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)


@pytest.fixture
def fake_cluster(tmp_path: Path) -> dict[str, str]:
    """Environment for running the script against stubs; the stubs append to ``tmp_path/calls.log``."""
    _write_stubs(tmp_path / "bin", STUBS)
    _write_stubs(tmp_path / "repo" / ".venv" / "bin", VENV_STUBS)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "KDSEARCH_", "RAY_"))}
    env.update({
        "PATH": f"{tmp_path / 'bin'}:{env['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_NODES": " ".join(NODES),
        "FAKE_IPS": "127.0.1.1 fe80::1 10.1.2.3",
        "FAKE_SEARCH": "0",
        "SLURM_JOB_ID": JOB_ID,
        "SLURM_JOB_NODELIST": "node-[a-c]",
        "SLURM_JOB_NUM_NODES": str(len(NODES)),
        "SLURM_CPUS_PER_TASK": "8",
        "SLURM_GPUS_PER_TASK": "2",
        "SLURM_SUBMIT_DIR": str(tmp_path / "repo"),
        "KDSEARCH_POLL_S": "0.05",
        "KDSEARCH_STOP_GRACE_S": "5",
    })
    return env


def _calls(env: dict[str, str]) -> list[str]:
    path = Path(env["FAKE_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def test_starts_ray_runs_the_search_and_stops_ray(fake_cluster: dict[str, str]) -> None:
    result = _run(fake_cluster, "--budget", "7", "--dataset", "my data")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(fake_cluster)
    port = 6379 + int(JOB_ID) % 1000
    head = [c for c in calls if c.startswith("ray start --head")]
    ray_tmp = f"/tmp/kdsearch-ray-{JOB_ID}"  # the job's own Ray folder: a plain ray.init() does not find it
    assert head == [f"ray start --head --node-ip-address=10.1.2.3 --port={port} --temp-dir={ray_tmp} "
                    "--dashboard-host=127.0.0.1 --num-cpus=8 --num-gpus=2 --block"]  # the dashboard for this node only
    workers = [c for c in calls if c.startswith("ray start --address")]
    assert workers == [f"ray start --address=10.1.2.3:{port} --temp-dir={ray_tmp} --num-cpus=8 --num-gpus=2 "
                       "--block"] * 2
    steps = [c.split(" -w ")[1].split()[0] for c in calls if c.startswith("srun")]
    # The steps run in the background, so their log lines may come in any order: check each step's node.
    head_steps = [c.split(" -w ")[1].split()[0] for c in calls if c.startswith("srun") and "--head" in c]
    assert head_steps == [NODES[0]] and sorted(steps) == sorted(NODES)
    assert calls.index(f"ray status --address=10.1.2.3:{port}") < calls.index(workers[0])  # head up first
    repo = Path(fake_cluster["SLURM_SUBMIT_DIR"])
    search = [c for c in calls if c.startswith("python -u search.py")]
    assert search == [f"python -u search.py --address auto --run-name slurm-{JOB_ID} --results-dir {repo}/results "
                      f"--storage-path {repo}/results --budget 7 --dataset my data"]
    assert calls.index("python wait-for-nodes 3") < calls.index(search[0])
    assert f"search env RAY_ADDRESS=10.1.2.3:{port} RAY_AUTH_MODE=token" in calls
    assert calls.index("ray get-auth-token --generate") < calls.index(head[0])
    assert calls[calls.index("ray get-auth-token --generate") + 1] == "umask 0077"  # a new token: for this user only
    assert "ray start stopped" in calls[calls.index(search[0]):]
    assert "ray stop" not in calls  # it would stop other jobs' Ray on a shared node too
    assert calls.count("ray start stopped") == 3  # every Ray node's srun step ended
    assert not any(c.startswith("scontrol requeue") for c in calls)


def test_the_run_name_and_storage_can_be_set(fake_cluster: dict[str, str], tmp_path: Path) -> None:
    fake_cluster.update({"KDSEARCH_RUN_NAME": "cifar-big", "KDSEARCH_RESULTS_DIR": str(tmp_path / "shared"),
                         "KDSEARCH_STORAGE_PATH": str(tmp_path / "ray")})
    assert _run(fake_cluster).returncode == 0
    search = [c for c in _calls(fake_cluster) if c.startswith("python -u search.py")]
    assert search == [f"python -u search.py --address auto --run-name cifar-big --results-dir {tmp_path}/shared "
                      f"--storage-path {tmp_path}/ray"]


def test_a_failed_search_is_not_requeued_and_keeps_its_status(fake_cluster: dict[str, str]) -> None:
    fake_cluster["FAKE_SEARCH"] = "2"  # search.py's status for bad input
    result = _run(fake_cluster, "--budget", "0")
    assert result.returncode == 2
    calls = _calls(fake_cluster)
    assert calls.count("ray start stopped") == 3
    assert not any(c.startswith("scontrol requeue") for c in calls)


def test_no_usable_head_address_is_one_clear_error(fake_cluster: dict[str, str]) -> None:
    fake_cluster["FAKE_IPS"] = "127.0.0.1"
    result = _run(fake_cluster)
    assert result.returncode == 1
    assert "KDSEARCH_HEAD_IP" in result.stdout
    assert not any(c.startswith(("srun", "python")) for c in _calls(fake_cluster))


def test_the_head_address_can_be_set(fake_cluster: dict[str, str]) -> None:
    fake_cluster.update({"FAKE_IPS": "127.0.0.1", "KDSEARCH_HEAD_IP": "10.9.9.9", "RAY_AUTH_MODE": "disabled"})
    assert _run(fake_cluster).returncode == 0
    calls = _calls(fake_cluster)
    port = 6379 + int(JOB_ID) % 1000
    assert f"search env RAY_ADDRESS=10.9.9.9:{port} RAY_AUTH_MODE=disabled" in calls
    assert not any("get-auth-token" in c for c in calls)


def test_a_missing_venv_is_one_clear_error(fake_cluster: dict[str, str], tmp_path: Path) -> None:
    fake_cluster["KDSEARCH_VENV"] = str(tmp_path / "nowhere")
    result = _run(fake_cluster)
    assert result.returncode == 2
    assert "not found" in result.stdout and "KDSEARCH_VENV" in result.stdout
    assert _calls(fake_cluster) == []


def _start_and_signal(env: dict[str, str], sig: signal.Signals) -> tuple[int, list[str]]:
    env["FAKE_SEARCH"] = "run"
    process = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        deadline = time.monotonic() + 30
        while "search running" not in _calls(env):
            assert time.monotonic() < deadline and process.poll() is None, process.stdout
            time.sleep(0.05)
        process.send_signal(sig)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, _calls(env)


def test_time_limit_signal_saves_the_search_and_requeues(fake_cluster: dict[str, str]) -> None:
    status, calls = _start_and_signal(fake_cluster, signal.SIGUSR1)
    assert "search got USR1" in calls  # Ray Tune saves its experiment state on SIGUSR1
    assert f"scontrol requeue {JOB_ID}" in calls
    assert calls.index("search got USR1") < calls.index(f"scontrol requeue {JOB_ID}") < calls.index("ray start stopped")
    assert status == 0


def test_requeues_stop_at_the_limit(fake_cluster: dict[str, str]) -> None:
    fake_cluster.update({"SLURM_RESTART_COUNT": "3", "KDSEARCH_MAX_REQUEUES": "3"})
    _, calls = _start_and_signal(fake_cluster, signal.SIGUSR1)
    assert "search got USR1" in calls
    assert not any(c.startswith("scontrol requeue") for c in calls)


def test_preemption_stops_the_search_without_a_second_requeue(fake_cluster: dict[str, str]) -> None:
    status, calls = _start_and_signal(fake_cluster, signal.SIGTERM)
    assert "search got USR1" in calls
    assert not any(c.startswith("scontrol requeue") for c in calls)  # SLURM requeues a preempted job itself
    assert calls.count("ray start stopped") == 3
    assert status == 143
