"""Where the built-in file datasets' files may lie: torchvision's folder, the data folder itself, or a
test-only copy (the test files alone, split three ways like a folder of images)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainers.test_data import balanced_labels, idx_bytes, write_idx_dataset
from trainers import DatasetError, load_dataset

PER_CLASS = 10


def _write_test_only_mnist(folder: Path) -> np.ndarray:
    """The two t10k files as MNIST ships them (gzip), directly in ``folder``; returns the labels."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = balanced_labels(10, PER_CLASS)
    images = np.random.default_rng(0).integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    for name, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
    return labels


def test_a_test_only_copy_is_split_three_ways(tmp_path: Path) -> None:
    _write_test_only_mnist(tmp_path / "mnist-10k")
    messages: list[str] = []
    splits = load_dataset("mnist", str(tmp_path / "mnist-10k"), cache_dir=tmp_path / "cache", log=messages.append)
    assert splits.sizes() == {"train": 60, "val": 20, "test": 20}  # 20 % validation and 20 % test of the whole
    assert splits.class_counts()["test"] == [2] * 10
    assert splits.source["layout"] == "test files only"
    assert any("only the test files found (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)" in m
               for m in messages)
    again = load_dataset("mnist", str(tmp_path / "mnist-10k"), cache_dir=tmp_path / "cache")
    assert again.source["cache"] == "opened" and torch.equal(again.test_rows, splits.test_rows)


def test_a_test_only_copy_reads_the_same_without_a_cache(tmp_path: Path) -> None:
    _write_test_only_mnist(tmp_path)
    cached = load_dataset("mnist", str(tmp_path), cache_dir=tmp_path / "cache")
    in_memory = load_dataset("mnist", str(tmp_path))
    assert in_memory.source["layout"] == "test files only"
    assert torch.equal(in_memory.test_x[:], cached.test_x[:]) and torch.equal(in_memory.train_y, cached.train_y)


def test_files_directly_in_the_data_folder_keep_the_official_split(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, compressed=True)
    splits = load_dataset("mnist", str(tmp_path))
    assert splits.sizes() == {"train": 48, "val": 12, "test": 20}
    assert splits.source["layout"] == "official files"


def test_train_files_without_test_files_are_still_missing_files(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).unlink()
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", str(tmp_path))

