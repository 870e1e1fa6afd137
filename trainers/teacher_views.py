"""The teacher's logits on every augmented view, kept on disk: one fp16 ``.npy`` memory map per teacher
and dataset, built once and mapped by every trial (a trial receives its path, not its bytes).

``<folder>/<key>.npy`` holds (views, N, classes) fp16, where the key digests the teacher's weights, the
dataset's fingerprint and the views (augmentation and padding value), so a changed teacher or dataset
never reads another's logits. The file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainers.data import DatasetInfo, view_count
from trainers.data._store import map_file
from trainers.files import state_digest

BYTES_PER_LOGIT = 2  # fp16: a teacher's logits need far less than float32's precision for a softened target
# The default budget: this share of the free space where the file goes (``--teacher-cache-gb`` overrides it).
DEFAULT_FREE_SHARE = 0.5


@dataclass(frozen=True)
class ViewStore:
    """Where per-view logits are kept (``folder``), how many bytes they may take, and the dataset's
    fingerprint (part of every file's key)."""

    folder: Path
    budget_bytes: int
    data_key: str

    def logits_bytes(self, info: DatasetInfo, images: int) -> int:
        return view_count(info) * images * info.num_classes * BYTES_PER_LOGIT

    def path_for(self, model: nn.Module, name: str, info: DatasetInfo, background: Sequence[float] | None) -> Path:
        """The file of this teacher's logits on ``info``'s views of this dataset."""
        key = json.dumps({"teacher": name, "weights": state_digest(model.state_dict()), "data": self.data_key,
                          "info": repr(info), "background": list(background) if background is not None else None})
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def default_budget_bytes(folder: Path) -> int:
    """Half the free space of the filesystem ``folder`` is (or will be) on."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return int(shutil.disk_usage(existing).free * DEFAULT_FREE_SHARE)


def open_logits(path: str | Path) -> torch.Tensor:
    """The (views, N, classes) fp16 logits over a copy-on-write memory map (shared pages, never written)."""
    return torch.from_numpy(map_file(path))


def build_logits(path: Path, shape: tuple[int, int, int],
                 fill_view: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """Write ``fill_view(view)`` (N, classes) for every view into ``path`` atomically, then map it.

    An existing file of the right shape is opened as it is: the key in its name says it holds these logits.
    """
    if path.is_file():
        try:
            logits = open_logits(path)
            if tuple(logits.shape) == shape:
                return logits
        except (OSError, ValueError):
            pass  # damaged (e.g. a disk that filled up): written again below
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
        for view in range(shape[0]):
            array[view] = fill_view(view).to("cpu", torch.float16).numpy()
        array.flush()
        del array
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return open_logits(path)
