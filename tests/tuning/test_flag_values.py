"""Every value ``--help`` and the README name for --sampler, --scheduler and --dataset runs a real search."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.trainers.test_data import (
    write_cifar10,
    write_cifar100,
    write_idx_dataset,
    write_image_folder,
    write_manifest,
    write_svhn,
)
from tests.tuning.conftest import small_search
from trainers import DATASETS
from tuning.spec import SAMPLERS, SCHEDULERS

pytestmark = pytest.mark.usefixtures("ray_cluster")

# Each dataset's real on-disk format, written small into a folder; a writer that returns a path names the
# --data-dir (a manifest file), else the folder is it.
WRITERS: dict[str, Callable[[Path], Path | None]] = {
    "mnist": lambda root: write_idx_dataset(root / "MNIST" / "raw"),
    "fashion-mnist": lambda root: write_idx_dataset(root / "FashionMNIST" / "raw"),
    "kmnist": lambda root: write_idx_dataset(root / "KMNIST" / "raw"),
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "svhn": write_svhn,
    "imagefolder": lambda root: write_image_folder(root, per_class=10, shape=(16, 16)),
    "csv": lambda root: write_manifest(root, per_class=10, shape=(16, 16)),
}


def test_every_dataset_has_a_writer() -> None:
    assert set(WRITERS) | {"digits"} == set(DATASETS)  # digits: every other search test runs it
    assert set(DEFAULT_TEACHERS) == set(WRITERS)


# CIFAR's crop+flip makes 162 views per image for the teacher's per-view outputs; crop alone (81 views,
# with cnn-large) keeps these tests quick. Crop+flip itself is tested in tests/trainers and tests/tuning/test_prepare.
QUICKER = {name: {"augment": "crop", "teacher": "cnn-large"} for name in ("cifar10", "cifar100")}
# cnn-large for greyscale data and image folders (CPU-sized), resnet-large for colour datasets.
DEFAULT_TEACHERS = {"mnist": "cnn-large", "fashion-mnist": "cnn-large", "kmnist": "cnn-large",
                    "imagefolder": "cnn-large", "csv": "cnn-large", "cifar10": "resnet-large",
                    "cifar100": "resnet-large",
                    "svhn": "resnet-large"}


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_every_dataset_runs_a_search(dataset: str, tmp_path: Path, teacher_cache: Path) -> None:
    """Files in the real format, a teacher trained for one epoch, two one-epoch trials, the final stage skipped."""
    data_dir = WRITERS[dataset](tmp_path / "data") or tmp_path / "data"
    flags = QUICKER.get(dataset, {})
    outcome = small_search(teacher_cache, f"dataset-{dataset}", dataset=dataset, data_dir=str(data_dir),
                           budget=2, epochs=1, top_k=0, teacher_epochs=1, max_train_samples=100, **flags)
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["dataset"]["name"] == dataset
    assert sum(summary["trials"].values()) == 2 and summary["trials"]["failed"] == 0
    assert summary["teacher"]["arch"] == flags.get("teacher", DEFAULT_TEACHERS[dataset])
    assert summary["augmentation"]["teacher"] is True


@pytest.mark.parametrize("sampler, scheduler", [("tpe", "asha"), ("cmaes", "asha"), ("nsga2", "asha"),
                                                ("random", "none")])
def test_every_sampler_and_scheduler_runs_a_search(sampler: str, scheduler: str, teacher_cache: Path,
                                                   teacher_checkpoint: str) -> None:
    outcome = small_search(teacher_cache, f"{sampler}-{scheduler}", sampler=sampler, scheduler=scheduler, budget=5,
                           epochs=3, top_k=0, teacher_checkpoint=teacher_checkpoint)
    records = json.loads((outcome.run_dir / "trials.json").read_text())
    assert len(records) == 5 and all(r["state"] in ("COMPLETE", "STOPPED") for r in records)
    spec = json.loads((outcome.run_dir / "spec.json").read_text())
    assert (spec["sampler"], spec["scheduler"]) == (sampler, scheduler)


def test_the_lists_above_cover_every_sampler_and_scheduler() -> None:
    covered = {("tpe", "asha"), ("cmaes", "asha"), ("nsga2", "asha"), ("random", "none")}
    assert {s for s, _ in covered} == set(SAMPLERS) and {s for _, s in covered} == set(SCHEDULERS)
