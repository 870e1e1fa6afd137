"""Fixtures for the real cluster tests: a tiny teacher, a tiny image folder, and helpers on a run folder."""

from __future__ import annotations

import json
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
