"""search.py --address on a real two-node Ray cluster on 127.0.0.1, with token authentication.

The head and a second node are started with cluster/ray-start.sh (``ray start ... --block``), each with its
own CPU and temp folder, and a token file given as RAY_AUTH_TOKEN_PATH (nobody sets RAY_AUTH_MODE: the
script and search.py turn token mode on by themselves). Everything started here is stopped by its pid.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cluster.conftest import (
    REPO,
    TINY,
    Node,
    assert_complete,
    cmdline,
    finished,
    free_port,
    start_node,
    stop_node,
)

RAY_START = REPO / "cluster" / "ray-start.sh"
START_TIMEOUT_S = 90
SEARCH_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)


def _environ(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/environ").read_bytes()).replace(b"\0", b"\n").decode(errors="replace")
    except OSError:
        return ""


def _start_node(cluster: Cluster, log: Path, *args: str) -> Node:
    node = start_node([str(RAY_START), *args, "--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1",
                       "--disable-usage-stats", "--block"], cluster.env, log)
    cluster.nodes.append(node)
    return node


def _alive_nodes(cluster: Cluster) -> int:
    """Alive Ray nodes, asked through search.py's own way in (tuning.prepare.start_ray) in a subprocess."""
    code = ("import ray, sys\nfrom tuning.prepare import start_ray\n"
            "class Spec: address, allow_insecure_cluster = sys.argv[1], False\n"
            "start_ray(Spec, lambda message: None)\n"
            "print(sum(1 for node in ray.nodes() if node['Alive']))\n")
    result = subprocess.run([sys.executable, "-c", code, cluster.address], cwd=REPO, env=cluster.env,
                            capture_output=True, text=True, timeout=60)
    return int(result.stdout.split()[-1]) if result.returncode == 0 and result.stdout.split() else 0


def _wait_nodes(cluster: Cluster, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while _alive_nodes(cluster) != count:
        for node in cluster.nodes:
            assert node.process.poll() is None, f"a Ray node exited with {node.process.returncode}"
        assert time.monotonic() < deadline, f"{count} Ray nodes not up within {START_TIMEOUT_S}s"
        time.sleep(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("ray-cluster")
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update({"RAY_AUTH_TOKEN_PATH": str(token), "PYTHONUNBUFFERED": "1",
                # Ray runs its workers at nice 15: on a busy shared machine a new trial actor then takes tens of
                # seconds to start, and Ray Tune gives every trial to the head's warm actor instead.
                "RAY_worker_niceness": "0",
                # A killed node is declared dead after 3 missed health checks 1 s apart (Ray's default: 5, 3 s
                # apart), so that the records name it "node lost" well before the search ends.
                "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"})
    port = free_port()
    cluster = Cluster(f"127.0.0.1:{port}", env)
    try:
        _start_node(cluster, folder / "head.log", "--head", f"--port={port}", "--include-dashboard=false")
        _wait_nodes(cluster, 1)
        _start_node(cluster, folder / "worker.log", f"--address={cluster.address}")
        _wait_nodes(cluster, 2)
        yield cluster
    finally:
        for node in reversed(cluster.nodes):
            stop_node(node)


@dataclass
class Search:
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None or any(text in line for line in self.lines), "\n".join(self.lines)
            assert time.monotonic() < deadline, f"'{text}' not printed within {timeout_s}s"
            time.sleep(0.1)


def _search(cluster: Cluster, results: Path, run_name: str, budget: int, *extra: str) -> Search:
    # Trials of a few epochs, so that the search outlasts the start of a trial actor on the second node.
    command = [sys.executable, "search.py", "--address", cluster.address, "--budget", str(budget),
               "--results-dir", str(results), "--run-name", run_name, *TINY, "--epochs", "40", *extra]
    process = subprocess.Popen(command, cwd=REPO, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    search = Search(process)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            search.lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return search


def _end(search: Search) -> int:
    try:
        return search.process.wait(timeout=SEARCH_TIMEOUT_S)
    finally:
        if search.process.poll() is None:
            os.killpg(search.process.pid, signal.SIGKILL)
            search.process.wait()


def _node_ids(cluster: Cluster) -> dict[str, Node]:
    """Ray node id -> Node, from each node's raylet command line."""
    ids = {}
    for node in cluster.nodes:
        for pid in node.processes():
            line = cmdline(pid)
            if "raylet/raylet" in line and "--node_id=" in line:
                ids[line.split("--node_id=")[1].split()[0]] = node
    return ids


def _raylet(node: Node) -> int:
    raylets = [pid for pid in node.processes() if "raylet/raylet" in cmdline(pid)]
    assert len(raylets) == 1, raylets
    return raylets[0]


def _running_on(node: Node, title: str) -> bool:
    """Whether a worker of ``node``'s raylet runs ``title`` (Ray names a busy worker ``ray::<task or actor>``)."""
    raylet = _raylet(node)
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else 0
        except (OSError, IndexError, ValueError):
            continue
        if parent == raylet and cmdline(int(entry.name)).startswith(title):
            return True
    return False


def _reported_on(run_dir: Path, node_ids: set[str], before_epoch: int) -> bool:
    """Whether a trial that has not ended last reported an epoch below ``before_epoch`` from one of ``node_ids``
    (Ray Tune's own per-trial result.json, which every epoch's report reaches)."""
    ended = finished(run_dir)
    for results in (run_dir / "tune").glob("*/result.json"):
        lines = results.read_text().strip().splitlines()
        last = json.loads(lines[-1]) if lines else {}
        if last.get("node_id") in node_ids and last["trial_id"] not in ended and last["epoch"] < before_epoch:
            return True
    return False


def test_a_search_uses_both_nodes_never_reads_the_data_there_and_survives_losing_one_twice(
        cluster: Cluster, tmp_path: Path, cluster_teacher: str, digits_folder: Path) -> None:
    """One run shows it all (each search on this cluster costs minutes on a 2-core machine): the second node
    is killed while a trial runs on it, a new node joins, and that one is killed while it runs a final-stage task."""
    data = tmp_path / "images"
    shutil.copytree(digits_folder, data)
    budget, seeds = 8, [0, 1, 2]
    run_dir = tmp_path / "results" / "two-nodes"
    # Three final seeds: the re-check's two trainings run at once, one of them on the second node.
    search = _search(cluster, tmp_path / "results", "two-nodes", budget, "--dataset", "imagefolder",
                     "--data-dir", str(data), "--teacher-checkpoint", cluster_teacher, "--max-failures", "3",
                     "--top-k", "1", "--final-seeds", str(len(seeds)), "--recipe-budget", "0", "--rounds", "1")
    # The driver has read the images and the teacher once it starts the search; from then on nobody may.
    search.wait_for(f"search: {budget} trials", SEARCH_TIMEOUT_S)
    data.rename(tmp_path / "images-moved")
    worker = cluster.nodes[1]
    worker_ids = {node_id for node_id, node in _node_ids(cluster).items() if node is worker}
    head_ids = {node_id for node_id, node in _node_ids(cluster).items() if node is cluster.nodes[0]}
    seen_workers = False
    deadline = time.monotonic() + SEARCH_TIMEOUT_S
    # Until the node has done real work (a trial ended there) and a trial runs there, well before its last epoch.
    while not (any(r["node_id"] in worker_ids for r in finished(run_dir).values())
               and _reported_on(run_dir, worker_ids, before_epoch=30)):
        assert search.process.poll() is None, "\n".join(search.lines)[-4000:]
        assert time.monotonic() < deadline, "no trial ended and another ran on the second node"
        worker_pids = worker.processes()
        for pid in worker_pids:
            assert str(data) not in cmdline(pid) and str(data) not in _environ(pid), cmdline(pid)
        seen_workers = seen_workers or any("default_worker.py" in cmdline(pid) for pid in worker_pids)
        time.sleep(0.2)
    assert seen_workers  # the second node ran Ray workers, and none of them was given the data folder
    os.kill(_raylet(worker), signal.SIGKILL)  # lose the second node mid-search
    again = _start_node(cluster, tmp_path / "worker-again.log", f"--address={cluster.address}")
    search.wait_for("final stage: re-training", SEARCH_TIMEOUT_S)
    deadline = time.monotonic() + SEARCH_TIMEOUT_S
    while not _running_on(again, "ray::train_seed"):
        assert search.process.poll() is None, "no final-stage task ran on the new node:\n" + "\n".join(search.lines)
        assert time.monotonic() < deadline, "no final-stage task ran on the new node"
        time.sleep(0.1)
    again_ids = {node_id for node_id, node in _node_ids(cluster).items() if node is again}
    os.kill(_raylet(again), signal.SIGKILL)  # and lose the new one during the final stage
    status = _end(search)
    output = "\n".join(search.lines)
    assert status == 0, output[-4000:]
    ended = assert_complete(run_dir, budget)
    assert len({r["trial_id"] for r in ended}) == budget  # Ray's retries + our records: nothing twice
    # None failed: the lost node's trial was retried, and no trial looked for the images.
    assert all(r["state"] != "FAILED" for r in ended), [r["error"] for r in ended]
    assert worker_ids <= {r["node_id"] for r in ended} and head_ids <= {r["node_id"] for r in ended}, output[-3000:]
    # The trial that ran on the lost node: its attempt there ended "node lost", and it ran again on another node.
    retried = [r for r in ended if len(r["attempts"]) > 1]
    assert retried and all(r["attempts"][0]["node_id"] in worker_ids for r in retried), [r["attempts"] for r in ended]
    assert all(r["attempts"][0]["error"] == "node lost" and r["attempts"][-1]["node_id"] not in worker_ids
               and r["attempts"][-1]["error"] is None for r in retried), [r["attempts"] for r in retried]
    with (run_dir / "trials.csv").open() as handle:
        rows = {row["trial_id"]: row for row in csv.DictReader(handle)}
    assert {row["node_id"] for row in rows.values()} == {r["node_id"] for r in ended}
    assert all(row["node_ip"] and row["attempts"] for row in rows.values())
    assert all(rows[r["trial_id"]]["attempts"].count(";") == len(r["attempts"]) - 1
               and "(node lost); " in rows[r["trial_id"]]["attempts"] for r in retried)
    # The final stage's training on the lost node ran again elsewhere: every seed has one result, from a live node.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["student"]["seeds"] == seeds and summary["baseline"]["seeds"] == seeds, summary["student"]
    assert len(summary["final"]["candidates"]) == 1 and summary["final"]["candidates"][0]["seeds"] == seeds
    final_nodes = {node["node_id"] for entry in ("student", "baseline") for node in summary[entry]["nodes"]}
    assert final_nodes <= head_ids | worker_ids | again_ids, summary["student"]["nodes"]
    assert worker.process.wait(timeout=30) != 0 and again.process.wait(timeout=30) != 0  # both saw their raylet die


def test_a_refused_token_is_one_line_and_writes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    wrong = {**cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # RAY_AUTH_TOKEN comes before the file
    started = time.monotonic()
    result = subprocess.run([sys.executable, "search.py", "--address", cluster.address, "--smoke",
                             "--results-dir", str(tmp_path / "results"), "--run-name", "refused"],
                            cwd=REPO, env=wrong, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the authentication token from RAY_AUTH_TOKEN" in lines[0], lines
    assert "~/.ray/auth_token" in lines[0]  # and it says how to fix it
    assert not (tmp_path / "results" / "refused").exists()
    assert time.monotonic() - started < 60  # not Ray's 20 s of retries after the imports
