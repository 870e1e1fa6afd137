"""The teacher's logits on every augmented view, kept on disk: one fp16 ``.npy`` memory map per teacher
and dataset, built once and mapped by every trial (a trial receives its path, not its bytes).

``<folder>/<key>.npy`` holds (views, N, classes) fp16, where the key digests the teacher's weights, the
dataset's fingerprint and the views (augmentation and padding value), so a changed teacher or dataset
never reads another's logits. The file is written under a temporary name and renamed into place.

Building it is the teacher's forward pass over every view of every training image: minutes on a real data set,
hours on a large one. So the views finished are kept: at most every ``SAVE_EVERY_S``, and whenever the caller asks
to stop (``ViewLogitsStopped``), the partial file is flushed and ``.<key>.npy.progress.json`` records how many
views it holds with a digest of each; the next build of the same key goes on from there. A process that finds the
partial file locked by another builder of the same key writes a partial file of its own and keeps no progress.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainers.data import DatasetInfo, view_count
from trainers.data._store import map_file
from trainers.files import atomic_write_json, fsync_path, lock_without_waiting, state_digest

BYTES_PER_LOGIT = 2  # fp16: a teacher's logits need far less than float32's precision for a softened target
# The default budget: this share of the free space where the file goes (``--teacher-cache-gb`` overrides it).
DEFAULT_FREE_SHARE = 0.5
# How often the views finished so far are kept while the logits are built (also at every stop request).
SAVE_EVERY_S = 60.0


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


class ViewLogitsStopped(Exception):
    """A stop request ended building per-view logits after ``done`` of ``views`` views, kept for the next build."""

    def __init__(self, done: int, views: int, partial: Path) -> None:
        super().__init__(f"teacher logits: stopped after view {done}/{views}, the views done kept in {partial}")
        self.done, self.views, self.partial = done, views, partial


def build_logits(path: Path, shape: tuple[int, int, int], fill_view: Callable[[int], torch.Tensor], *,
                 stop_requested: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
                 save_every_s: float = SAVE_EVERY_S) -> torch.Tensor:
    """Write ``fill_view(view)`` (N, classes) for every view into ``path`` atomically, then map it.

    An existing file of the right shape is opened as it is: the key in its name says it holds these logits.
    Views an earlier, stopped or killed, build of the same key kept are not computed again (``log`` says so). When
    ``stop_requested()`` is true after a view, the views done are kept and ``ViewLogitsStopped`` is raised.
    """
    existing = _complete(path, shape)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    shared = path.with_name(f".{path.name}.partial")
    progress_path = path.with_name(f".{path.name}.progress.json")
    lock = lock_without_waiting(shared)
    if lock is not None:
        partial, progress = shared, progress_path
    else:  # another process builds these logits: build them apart, keeping no progress
        partial, progress = path.with_name(f".{path.name}.{os.getpid()}.partial"), None
    try:
        existing = _complete(path, shape)  # the other builder may have just finished
        if existing is not None:
            if progress is not None:  # held: what is left under the shared name is no one's
                shared.unlink(missing_ok=True)
                progress.unlink(missing_ok=True)
            return existing
        return _fill(path, partial, progress, shape, fill_view, stop_requested, log, save_every_s)
    finally:
        if lock is not None:
            os.close(lock)


def _complete(path: Path, shape: tuple[int, int, int]) -> torch.Tensor | None:
    if path.is_file():
        try:
            logits = open_logits(path)
            if tuple(logits.shape) == shape:
                return logits
        except (OSError, ValueError):
            pass  # damaged (e.g. a disk that filled up): written again
    return None


def _fill(path: Path, partial: Path, progress: Path | None, shape: tuple[int, int, int],
          fill_view: Callable[[int], torch.Tensor], stop_requested: Callable[[], bool] | None,
          log: Callable[[str], None] | None, save_every_s: float) -> torch.Tensor:
    digests = _kept_views(partial, progress, shape, log) if progress is not None else []
    array = np.lib.format.open_memmap(partial, mode="r+" if digests else "w+", dtype=np.float16, shape=shape)
    saved = time.monotonic()
    try:
        for view in range(len(digests), shape[0]):
            array[view] = fill_view(view).to("cpu", torch.float16).numpy()
            digests.append(_view_digest(array, view))
            stopping = stop_requested is not None and stop_requested() and view + 1 < shape[0]
            if progress is not None and (stopping or time.monotonic() - saved >= save_every_s):
                _keep(array, partial, progress, shape, digests)
                saved = time.monotonic()
            if stopping:
                raise ViewLogitsStopped(len(digests), shape[0], partial)
        array.flush()
        del array
        fsync_path(partial)
        os.replace(partial, path)
    except ViewLogitsStopped:
        if progress is None:  # another process's build holds the shared name: this one's views cannot be kept
            partial.unlink(missing_ok=True)
        raise
    except BaseException:
        # Not resumable (e.g. a full disk): nothing half-written is left behind.
        partial.unlink(missing_ok=True)
        if progress is not None:
            progress.unlink(missing_ok=True)
        raise
    finally:
        if progress is not None and path.is_file():
            progress.unlink(missing_ok=True)
    return open_logits(path)


def _view_digest(array: np.ndarray, view: int) -> str:
    return hashlib.sha256(array[view].data).hexdigest()  # read in place: a view is contiguous in the file


def _keep(array: np.memmap, partial: Path, progress: Path, shape: tuple[int, int, int], digests: list[str]) -> None:
    """The views done flushed to disk, then recorded (the record never names a view the file may lack)."""
    array.flush()
    fsync_path(partial)
    atomic_write_json(progress, {"shape": list(shape), "digests": digests})


def _kept_views(partial: Path, progress: Path, shape: tuple[int, int, int],
                log: Callable[[str], None] | None) -> list[str]:
    """The digests of the views an earlier build kept in ``partial``; none when it kept none that still check."""
    if not progress.is_file():
        return []
    why = None
    try:
        record = json.loads(progress.read_text())
        digests = list(record["digests"])
        if record["shape"] != list(shape) or len(digests) >= shape[0]:
            why = "it was for other logits"
        else:
            array = np.load(partial, mmap_mode="r")
            if array.shape != shape or array.dtype != np.float16:
                why = "its file has another shape"
            elif any(_view_digest(array, view) != digest
                     for view, digest in enumerate(digests)):
                why = "a kept view fails its digest"
            del array
    except (OSError, ValueError, KeyError, TypeError) as error:
        why = f"it cannot be read ({type(error).__name__})"
    if why is not None:
        if log is not None:
            log(f"teacher logits: the views an earlier build kept in {partial} are not used ({why}); computing all")
        progress.unlink(missing_ok=True)
        return []
    if log is not None and digests:
        log(f"teacher logits: going on from view {len(digests)}/{shape[0]}, kept by an earlier build in {partial}")
    return digests
