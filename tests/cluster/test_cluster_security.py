"""A kdsearch cluster is never open: real Ray heads on 127.0.0.1, each user in a fresh HOME with no token.

One head is started the README's way (cluster/ray-start.sh), which must make a private token and turn token
authentication on; the other with a plain `ray start --head`, which in a fresh HOME runs without any, and
which search.py must refuse unless told --allow-insecure-cluster. Both heads start at once (each costs
seconds) and are stopped by pid.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.conftest import REPO, TINY, Node, assert_complete, cmdline, free_port, start_node, stop_node

RAY_START = REPO / "cluster" / "ray-start.sh"
RAY = Path(sys.executable).parent / "ray"
START_TIMEOUT_S = 90
NODE_FLAGS = ["--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
              "--disable-usage-stats", "--block"]
# A plain Ray client: what anyone who reaches the head could run.
RAY_CLIENT = ("import ray, sys\nray.init(address=sys.argv[1], log_to_driver=False)\n"
              "print(ray.get(ray.remote(lambda: 'a task ran').remote()))\n")

pytestmark = pytest.mark.slow


@dataclass
class Head:
    node: Node
    address: str
    home: Path


def _env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with no Ray variable and ``home`` as HOME (nothing of Ray's in it yet)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Head]]:
    folder = tmp_path_factory.mktemp("heads")
    started: dict[str, Head] = {}
    try:
        for name, command in (("ray-start.sh", [str(RAY_START), "--head"]), ("plain", [str(RAY), "start", "--head"])):
            port = free_port()
            home = folder / f"home-{name}"
            node = start_node([*command, f"--port={port}", *NODE_FLAGS], _env(home), folder / f"{name}.log")
            started[name] = Head(node, f"127.0.0.1:{port}", home)
        for head in started.values():
            head.node.wait_started(START_TIMEOUT_S)
        yield started
    finally:
        for head in started.values():
            stop_node(head.node)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stdout[-2000:], result.stderr)
    return lines[0]


def _search(address: str, env: dict[str, str], results: Path, *flags: str,
            timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "search.py", "--address", address, "--results-dir", str(results),
                           "--run-name", "run", *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def test_ray_start_makes_a_private_token_and_its_head_refuses_whoever_lacks_it(
        heads: dict[str, Head], tmp_path: Path) -> None:
    head = heads["ray-start.sh"]
    token = head.home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert f"made a new token in {token}" in head.node.output()  # and says where it is
    assert "--dashboard-host=127.0.0.1" in cmdline(head.node.process.pid)  # `ray start`, exec'd by the script

    # Plain Ray and search.py without the token run while the rest is checked (Ray's client tries a refused head
    # once a second for 20 s; 2 here).
    nobody = _env(tmp_path / "nobody")
    stranger = subprocess.Popen([sys.executable, "-c", RAY_CLIENT, head.address],
                                env={**nobody, "RAY_gcs_server_port_wait_time_s": "2"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    search = subprocess.Popen([sys.executable, "search.py", "--address", head.address, "--smoke", "--results-dir",
                               str(tmp_path / "results"), "--run-name", "run"], cwd=REPO, env=nobody,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker = subprocess.run([str(RAY_START), f"--address={head.address}", *NODE_FLAGS], env=nobody,
                                capture_output=True, text=True, timeout=60)
        assert "no Ray authentication token on this node" in _one_line(worker)
        wrong = _env(tmp_path / "wrong")
        (tmp_path / "wrong" / ".ray").mkdir()
        (tmp_path / "wrong" / ".ray" / "auth_token").write_text(secrets.token_hex(32))
        worker = subprocess.run([str(RAY_START), f"--address={head.address}", *NODE_FLAGS], env=wrong,
                                capture_output=True, text=True, timeout=60)
        line = _one_line(worker)
        assert "refused this node's token" in line and "to ~/.ray/auth_token on this node" in line

        # With a copy of the token, as the script says: a plain Ray client connects and runs a task.
        friend = tmp_path / "friend"
        (friend / ".ray").mkdir(parents=True)
        shutil.copy(token, friend / ".ray" / "auth_token")
        ran = subprocess.run([sys.executable, "-c", RAY_CLIENT, head.address], env=_env(friend, RAY_AUTH_MODE="token"),
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0 and "a task ran" in ran.stdout, ran.stdout[-2000:] + ran.stderr[-3000:]

        output, _ = stranger.communicate(timeout=120)
        stdout, stderr = search.communicate(timeout=120)
    finally:
        for process in (stranger, search):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert stranger.returncode != 0 and "a task ran" not in output
    assert "InvalidAuthToken" in output, output[-3000:]  # refused by the head, not by the client
    refused = _one_line(subprocess.CompletedProcess(search.args, search.returncode, stdout, stderr))
    assert "uses token authentication and no token was found" in refused and "~/.ray/auth_token" in refused
    assert not (tmp_path / "results" / "run").exists()


def test_search_refuses_an_open_cluster_unless_allowed(heads: dict[str, Head], tmp_path: Path,
                                                        cluster_teacher: str) -> None:
    head = heads["plain"]
    assert "Token authentication is disabled" in head.node.output()  # really open: Ray says so itself
    env = _env(tmp_path / "client")
    started = time.monotonic()
    refused = _one_line(_search(head.address, env, tmp_path / "results", "--smoke", timeout_s=60))
    # A hang guard, not a timing: the refusal comes at once, and 30 s leaves room for the imports on a machine
    # busy with the suite's other worker.
    assert time.monotonic() - started < 30
    assert "does not authenticate" in refused and "--allow-insecure-cluster" in refused
    assert "cluster/ray-start.sh" in refused
    assert not (tmp_path / "results" / "run").exists()

    ran = _search(head.address, env, tmp_path / "results", "--allow-insecure-cluster", *TINY, "--budget", "1",
                  "--epochs", "1", "--teacher-checkpoint", cluster_teacher)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "does not authenticate (--allow-insecure-cluster)" in ran.stdout  # said, not silent
    assert_complete(tmp_path / "results" / "run", 1)


def test_ray_start_refuses_to_start_ray_without_authentication(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", RAY_AUTH_MODE="disabled")
    result = subprocess.run([str(RAY_START), "--head", f"--port={free_port()}", *NODE_FLAGS], env=env,
                            capture_output=True, text=True, timeout=60)
    assert "RAY_AUTH_MODE=disabled would start Ray without token authentication" in _one_line(result)
    assert not (tmp_path / "home" / ".ray").exists()
