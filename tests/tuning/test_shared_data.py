"""Trials read the one memory-mapped store (issue 23): a `TensorSplits` loaded through the cache travels to a
Ray worker as its file's path, and the worker maps that very file instead of receiving a copy of the pixels.

A real local Ray (the session's ``ray_cluster``, 2 CPUs). The dataset is big enough (about 38 MB) that a copy
in the worker would show plainly in its private memory, next to a control that does copy.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pytest
import ray
import torch
from PIL import Image

from trainers.data import TensorSplits, load_dataset

pytestmark = pytest.mark.usefixtures("ray_cluster")

# 2 classes x 250 colour images of 160 x 160: 38.4 MB of uint8 pixels. BMP files are written and decoded in
# a few milliseconds each (no compression), and 500 files stay on the one-process decoding path.
PER_CLASS, SIDE = 250, 160


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> TensorSplits:
    """A large image folder loaded once through a cache folder: its store is a map of ``images.npy``."""
    root = tmp_path_factory.mktemp("big") / "images"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(PER_CLASS):
            pixels = rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.bmp")
    splits = load_dataset("imagefolder", str(root), cache_dir=root.parent / "cache")
    assert splits.images_path is not None and splits.images.shape == (2 * PER_CLASS, 3, SIDE, SIDE)
    return splits


def _memory_kb() -> dict[str, int]:
    """This process's resident memory by kind (kB): VmRSS, RssAnon (private: a copy lands here), RssFile."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0])
    return values


def _mapping_of(address: int) -> tuple[str, int] | None:
    """(file path, inode) of the mapping of this process that holds ``address``, from /proc/self/maps."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(value, 16) for value in fields[0].split("-"))
            if start <= address < end:
                return (fields[5].strip() if len(fields) > 5 else "", int(fields[4]))
    return None


@ray.remote(num_cpus=1)
def _inspect(boxed: list[ray.ObjectRef]) -> dict[str, Any]:
    """In a worker: fetch the splits (memory measured before and after), find the mapping their images lie in,
    read every pixel, and measure again."""
    import trainers.data  # noqa: F401 - imported before measuring, so the import is not counted

    before = _memory_kb()
    data: TensorSplits = ray.get(boxed[0])
    fetched = _memory_kb()
    images = data.images
    # Image by image through numpy (which sums in small buffers): a read that allocates nothing of its own.
    pixels = images.numpy()
    total = sum(int(image.sum(dtype=np.uint64)) for image in pixels)
    read = _memory_kb()
    return {"mapping": _mapping_of(images.data_ptr()), "total": total, "before": before, "fetched": fetched,
            "read": read, "pid": os.getpid(), "images_path": data.images_path,
            "first_batch": data.train_x[:4], "labels": data.train_y[:4]}


def _run(data: TensorSplits) -> dict[str, Any]:
    return ray.get(_inspect.remote([ray.put(data)]), timeout=120)


def _grew_kb(result: dict[str, Any], kind: str, after: str) -> int:
    return result[after][kind] - result["before"][kind]


def test_a_worker_maps_the_cached_file_instead_of_receiving_a_copy(mapped: TensorSplits) -> None:
    """The worker's images lie in a mapping of that very images.npy (same path, same inode), it reads the
    same pixels, and neither fetching the splits nor reading every pixel grows its private memory by anything
    near the dataset's size (38 MB); the batches it normalises equal the driver's."""
    size_kb = mapped.images.numel() // 1024
    result = _run(mapped)
    assert result["pid"] != os.getpid()
    assert result["images_path"] == mapped.images_path
    assert result["mapping"] == (mapped.images_path, os.stat(mapped.images_path).st_ino), result["mapping"]
    assert result["total"] == int(mapped.images.sum())
    assert _grew_kb(result, "RssAnon", "fetched") < size_kb // 4, result
    assert _grew_kb(result, "RssAnon", "read") < size_kb // 4, result
    # Reading every page shows up as shared file pages, which is how we know the reads were counted at all.
    assert _grew_kb(result, "RssFile", "read") > size_kb // 2, result
    assert torch.equal(result["first_batch"], mapped.train_x[:4])
    assert torch.equal(result["labels"], mapped.train_y[:4])


def test_the_check_above_sees_a_copy(mapped: TensorSplits) -> None:
    """Control: the same splits held in memory (no file to map) arrive as a copy, and the worker's private
    memory grows by about the dataset's size; so the measurement above can fail."""
    in_memory = dataclasses.replace(mapped, images=mapped.images.clone(), images_path=None)
    size_kb = mapped.images.numel() // 1024
    result = _run(in_memory)
    assert result["images_path"] is None
    assert result["mapping"] is None or not result["mapping"][0].endswith("images.npy")
    assert result["total"] == int(mapped.images.sum())
    grew = max(_grew_kb(result, "RssAnon", "read"), _grew_kb(result, "VmRSS", "read") - _grew_kb(result, "RssFile",
                                                                                                      "read"))
    assert grew > size_kb // 2, result


def test_a_dataset_without_a_cache_folder_travels_whole() -> None:
    """digits, kept in memory (no cache folder): the worker receives the pixels themselves and normalises the
    same batches."""
    digits = load_dataset("digits")
    assert digits.images_path is None
    result = _run(digits)
    assert result["images_path"] is None
    assert result["total"] == int(digits.images.sum())
    assert torch.equal(result["first_batch"], digits.train_x[:4])
    assert torch.equal(result["labels"], digits.train_y[:4])
