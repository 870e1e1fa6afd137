"""A dataset as one uint8 image store plus the rows of each split, normalised batch by batch.

Every image is kept once, as uint8 (N, C, H, W), at the size the run needs: in memory for small sets, or
memory-mapped from the on-disk cache (`trainers.data._store`). A split is a set of rows of that store.
Reading a batch gathers its rows and converts them to normalised float32 on the store's device, so a
dataset costs its uint8 size once, not four times that per copy. A mapped store pickles as its path:
a Ray worker that receives a `TensorSplits` maps the same file instead of receiving a copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainers.data._info import DatasetInfo

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class SplitImages:
    """The images of one split, read from the uint8 store and normalised per batch.

    Indexing it like a tensor (``split[start:stop]``, ``split[indices]``) returns those images as
    normalised float32 (B, C, H, W) on the store's device; ``split[:]`` is the whole split (a copy: for
    small data and tests; training and evaluation read batches).
    """

    store: torch.Tensor  # uint8 (N, C, H, W): every image of the dataset
    rows: torch.Tensor  # int64: this split's rows of the store
    pixel_max: float
    mean: torch.Tensor  # float32 (1, C, 1, 1)
    std: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> torch.Tensor:
        rows = self.rows[key]
        if rows.dim() == 0:
            rows = rows.view(1)
        return normalise(self.store[rows], self.pixel_max, self.mean, self.std)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.store.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self.store.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32


# An inference batch holds at most this many input values (1024 images up to 32x32 RGB, 341 at 64x64 RGB, 64
# from 181x181 RGB on): its activations, not the dataset, would otherwise set a trial's peak memory on large images.
INFERENCE_BATCH_VALUES = 4 * 2**20
MIN_INFERENCE_BATCH = 64


def inference_batch_size(image_shape: Sequence[int], most: int) -> int:
    """Images per evaluation or teacher-output batch for images of ``image_shape`` (C, H, W): ``most``,
    fewer for large images."""
    return max(MIN_INFERENCE_BATCH, min(most, INFERENCE_BATCH_VALUES // max(1, math.prod(image_shape))))


def normalise(images: torch.Tensor, pixel_max: float, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) pixels as float32 in [0, 1], standardised per channel."""
    return images.to(torch.float32).div_(pixel_max).sub_(mean.to(images.device)).div_(std.to(images.device))


@dataclass
class TensorSplits:
    """Train / validation / test splits of one dataset over one uint8 store, normalised with the train
    split's per-channel statistics when read (``train_x``, ``val_x``, ``test_x`` are `SplitImages`)."""

    info: DatasetInfo
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    train_rows: torch.Tensor
    val_rows: torch.Tensor
    test_rows: torch.Tensor
    # The per-channel statistics applied to every split: an exported model needs the same preprocessing.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    pixel_max: float = 255.0
    # The cache file `images` is mapped from (None: held in memory); it travels instead of the pixels.
    images_path: str | None = None
    # Identifies the store's content without hashing every pixel (a mapped store's cache key).
    store_key: str | None = None
    # Files of a user's layout that were left out, as (path, reason); `load_dataset` documents the rule.
    skipped: tuple[tuple[str, str], ...] = ()
    source: dict[str, Any] = field(default_factory=dict)  # how the store was obtained, for summary.json

    @classmethod
    def from_uint8(cls, info: DatasetInfo, images: torch.Tensor, labels: torch.Tensor, train_rows: torch.Tensor,
                   val_rows: torch.Tensor, test_rows: torch.Tensor, pixel_max: float = 255.0) -> TensorSplits:
        """Splits over in-memory uint8 ``images`` (N, C, H, W), normalised with the train rows' statistics
        (for benchmarks and tests that make their own images; `load_dataset` is the way in otherwise)."""
        mean, std = channel_statistics(images, train_rows.numpy(), pixel_max)
        return cls(info, images, labels, train_rows, val_rows, test_rows, mean=mean, std=std, pixel_max=pixel_max)

    @property
    def train_y(self) -> torch.Tensor:
        return self.labels[self.train_rows]

    @property
    def val_y(self) -> torch.Tensor:
        return self.labels[self.val_rows]

    @property
    def test_y(self) -> torch.Tensor:
        return self.labels[self.test_rows]

    @property
    def train_x(self) -> SplitImages:
        return self._split(self.train_rows)

    @property
    def val_x(self) -> SplitImages:
        return self._split(self.val_rows)

    @property
    def test_x(self) -> SplitImages:
        return self._split(self.test_rows)

    def _split(self, rows: torch.Tensor) -> SplitImages:
        channels = self.images.shape[1]
        mean = torch.tensor(self.mean or (0.0,) * channels, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std or (1.0,) * channels, dtype=torch.float32).view(1, -1, 1, 1)
        return SplitImages(self.images, rows, self.pixel_max, mean.to(self.images.device), std.to(self.images.device))

    @property
    def device(self) -> torch.device:
        return self.images.device

    def sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {"train": len(self.train_rows), "val": len(self.val_rows), "test": len(self.test_rows)}

    def class_counts(self) -> dict[str, list[int]]:
        """Number of samples of each class in each split."""
        labels = {"train": self.train_y, "val": self.val_y, "test": self.test_y}
        return {
            split: torch.bincount(y.cpu(), minlength=self.info.num_classes).tolist()
            for split, y in labels.items()
        }

    def to(self, device: torch.device | str) -> TensorSplits:
        """A new `TensorSplits` with the store and the rows on `device` (the uint8 store moves, not floats)."""
        moved = {name: getattr(self, name).to(device)
                 for name in ("images", "labels", "train_rows", "val_rows", "test_rows")}
        return dataclasses.replace(self, **moved)

    @property
    def background(self) -> tuple[float, ...]:
        """Per channel, the value a raw 0 pixel takes after normalisation: what a shifted-in border shows."""
        return tuple(-mean / std for mean, std in zip(self.mean, self.std, strict=True))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.images_path is not None and self.images.device.type == "cpu":
            state["images"] = None  # mapped again from the file where this is unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state["images"] is None:
            from trainers.data._store import open_images

            state["images"] = open_images(state["images_path"])
        self.__dict__.update(state)


def fingerprint(splits: TensorSplits) -> str:
    """A short hex digest that changes whenever the dataset, its splits or its normalisation change."""
    info = splits.info
    # What a model is shown and how it is augmented; descriptive fields (class names, the students' default
    # augmentation) stay out, so that adding such a field to DatasetInfo does not retrain every cached teacher.
    digest = hashlib.sha256(repr((info.name, tuple(info.input_shape), info.num_classes, info.crop_padding,
                                  info.horizontal_flip)).encode())
    digest.update(repr((splits.mean, splits.std, splits.pixel_max, tuple(splits.images.shape))).encode())
    if splits.store_key is not None:
        digest.update(splits.store_key.encode())
    else:
        digest.update(splits.images.detach().cpu().contiguous().numpy().tobytes())
    for name in ("labels", "train_rows", "val_rows", "test_rows"):
        tensor = getattr(splits, name).detach().cpu().contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


# Pixels per chunk of `channel_statistics`: 4M values, 32 MB as int64 for counting (4,096 MNIST images, 27 at
# 224 x 224 RGB).
STATISTICS_CHUNK_VALUES = 4 * 2**20


def channel_statistics(images: torch.Tensor, rows: np.ndarray, pixel_max: float,
                       chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of ``images[rows] / pixel_max``, exact, from each channel's
    histogram of uint8 values, a chunk of rows at a time: no float copy of the split is ever made (a
    100,000-image store would need gigabytes), and counting is far cheaper than float arithmetic. A chunk is
    at most `chunk` images and `STATISTICS_CHUNK_VALUES` pixel values, whatever the image size. A constant
    channel gets std 1e-6 rather than a division by zero."""
    channels = images.shape[1]
    chunk = max(1, min(chunk, STATISTICS_CHUNK_VALUES // max(1, math.prod(images.shape[1:]))))
    counts = torch.zeros(channels, 256, dtype=torch.float64)
    index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    for start in range(0, len(index), chunk):
        batch = images[index[start:start + chunk]].to("cpu")
        for channel in range(channels):
            counts[channel] += torch.bincount(batch[:, channel].reshape(-1).to(torch.int64), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / pixel_max
    total = counts.sum(dim=1)
    mean = (counts * values).sum(dim=1) / total
    variance = (counts * (values - mean[:, None]).square()).sum(dim=1) / (total - 1).clamp_min(1)
    std = variance.sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())
