"""Fixtures for the real cluster tests: a tiny teacher, a tiny image folder, helpers on a run folder, and Ray
nodes started (and stopped, by pid) by the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# The smallest search that still runs every stage it needs: 1 epoch on 200 images, no final stage.
TINY = ["--max-train-samples", "200", "--max-params", "50000", "--scheduler", "none", "--top-k", "0",
        "--final-seeds", "1", "--finetune-epochs", "0", "--baseline-budget", "1", "--gain-curve", "0",
        "--cpus-per-trial", "1"]


@pytest.fixture(scope="session")
def cluster_teacher(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small digits teacher (1x8x8 images, 10 classes) as a --teacher-checkpoint file."""
    import torch

    from trainers import DistillConfig, build_student, distill, load_dataset

    data = load_dataset("digits", max_train_samples=200)
    model = build_student("cnn", 1, 32, data.info.input_shape[0], data.info.num_classes)
    distill(DistillConfig(alpha=0.0, epochs=2), data, student=model)
    path = tmp_path_factory.mktemp("cluster-teacher") / "teacher.pt"
    torch.save({"arch": model.arch, "state_dict": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sklearn's digits as an image folder (30 greyscale 8x8 PNGs per class): a dataset read from files."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("digits-folder") / "images"
    for label in range(10):
        folder = root / str(label)
        folder.mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(digits.target == label)[:30]):
            pixels = (digits.images[index] * 255 / 16).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    return root


def records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "trials.json"
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:  # written atomically; tolerate it anyway while polling
        return []


def finished(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["trial_id"]: r for r in records(run_dir) if r["state"] != "RUNNING"}


def assert_complete(run_dir: Path, budget: int) -> list[dict[str, Any]]:
    """Exactly ``budget`` ended trials, none duplicated, numbered 0..budget-1, a summary and a report."""
    ended = records(run_dir)
    assert len(ended) == budget, [(r["trial_id"], r["state"]) for r in ended]
    assert len({r["trial_id"] for r in ended}) == budget
    assert sorted(r["number"] for r in ended) == list(range(budget))
    assert all(r["state"] != "RUNNING" for r in ended)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sum(summary["trials"].values()) == budget
    assert (run_dir / "report.html").stat().st_size > 0
    return ended


@dataclass
class Node:
    """A `ray start ... --block` process and the temp folder that names all of its Ray processes."""

    process: subprocess.Popen
    temp_dir: Path
    log: Path

    def processes(self) -> list[int]:
        """Pids of this node's Ray processes (their command lines name the node's temp folder)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and str(self.temp_dir) in cmdline(int(entry.name)):
                pids.append(int(entry.name))
        return pids

    def wait_started(self, timeout_s: float) -> None:
        """Until `ray start` says the node runs; fails at once if it exits."""
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, f"ray start exited with {self.process.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"Ray node not up within {timeout_s}s:\n{self.output()}"
            time.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes()).replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(command: list[str], env: dict[str, str], log: Path) -> Node:
    """Run ``command`` (a `ray start ... --block`) with a temp folder of its own, output to ``log``."""
    # A short temp folder: Ray's socket paths under it must stay within 107 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="kdray-", dir="/tmp"))
    with log.open("w") as out:
        process = subprocess.Popen([*command, f"--temp-dir={temp_dir}"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Node(process, temp_dir, log)


def stop_node(node: Node) -> None:
    """SIGTERM to `ray start --block` stops the processes it started; anything left is killed by pid."""
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
        try:
            node.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
    deadline = time.monotonic() + 10
    while node.processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in node.processes():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(node.temp_dir, ignore_errors=True)
