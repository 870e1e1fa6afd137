"""The on-disk image cache: a dataset decoded once into a uint8 ``.npy`` memory map, opened by every run.

One entry per content key (a fingerprint of the source files' paths, sizes and modification times and of
the target size), under ``<cache_dir>/data/<key>/``:

    images.npy   uint8 (N, C, H, W), opened with ``np.load(mmap_mode="c")``: pages are shared, never copied
    labels.npy   int64 (N,)
    meta.json    the format, the key, what was decoded (files, classes, given splits, skipped files)

An entry is built in ``.<key>.partial/`` beside it and renamed into place (``os.replace``), so a killed
decode leaves no entry that looks complete; the decode keeps its progress there (``PROGRESS_FILE``), and the next
build of the same key goes on from it. The partial folder is locked (``flock``) while it is built: a second
builder of the same key beside a running one builds in a private temporary folder and keeps no progress.

A pointer per source (``sources/<source id>.json``) remembers
the last key seen for a folder or manifest, so a changed source is noticed and said, not silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runfolder import atomic_write_text
from trainers.files import fsync_path, lock_without_waiting

CACHE_FORMAT = 1
# What a decode has finished, kept beside the images it is writing (``trainers.data._decode``).
PROGRESS_FILE = "decoded.json"
_LOCK_FILE = ".lock"


@dataclass(frozen=True)
class CacheEntry:
    """One complete cache entry: where its images are and what its ``meta.json`` says."""

    folder: Path
    meta: dict[str, Any]

    @property
    def images_path(self) -> Path:
        return self.folder / "images.npy"

    def images(self) -> torch.Tensor:
        return open_images(self.images_path)

    def labels(self) -> np.ndarray:
        return np.load(self.folder / "labels.npy")


def open_images(path: str | Path) -> torch.Tensor:
    """The cached uint8 images as a tensor over a copy-on-write memory map of ``path``.

    Copy-on-write keeps the array writable for torch (which warns on read-only memory) while the file
    is never changed and every process that maps it shares the same page-cache pages.
    """
    return torch.from_numpy(map_file(path))


def map_file(path: str | Path) -> np.ndarray:
    """``np.load(path, mmap_mode="c")``, with one line that says what to do when this machine cannot see it
    (a Ray node without the shared storage the cache was written to)."""
    try:
        return np.load(path, mmap_mode="c")
    except FileNotFoundError:
        raise FileNotFoundError(f"the cache file {path} is not visible on this machine: put --cache-dir (default "
                                "RESULTS_DIR/cache) on storage that every Ray node shares") from None


def content_key(description: dict[str, Any]) -> str:
    """The cache key of a source as described (file stats, target size, layout): a short sha256."""
    text = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def find(cache_dir: Path, key: str) -> CacheEntry | None:
    """The complete entry for ``key``, or None (missing, or unreadable: it is then decoded again)."""
    folder = cache_dir / "data" / key
    try:
        meta = json.loads((folder / "meta.json").read_text())
        shape = tuple(np.load(folder / "images.npy", mmap_mode="r").shape)
        labels = np.load(folder / "labels.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if meta.get("format") != CACHE_FORMAT or meta.get("key") != key or list(shape) != meta.get("shape") \
            or len(labels) != shape[0]:
        return None
    return CacheEntry(folder, meta)


def build(cache_dir: Path, key: str, shape: tuple[int, int, int, int], labels: np.ndarray, meta: dict[str, Any],
          fill: Callable[[Path], dict[str, Any]]) -> CacheEntry:
    """Create the entry for ``key``: an empty ``images.npy`` of ``shape``, which ``fill(path)`` writes (it may
    hand rows to other processes, each mapping the file), then labels and meta; renamed into place whole.

    ``fill`` returns what it learned (e.g. files that failed to decode), merged into ``meta.json``.
    """
    root = cache_dir / "data"
    root.mkdir(parents=True, exist_ok=True)
    work, lock = _work_folder(root, key)
    try:
        if lock is not None:
            done = find(cache_dir, key)  # another builder may have finished it since the caller looked
            if done is not None:
                shutil.rmtree(work, ignore_errors=True)
                return done
        images_path = work / "images.npy"
        if not _is_images_file(images_path, shape):  # else an earlier, stopped build's, which the fill goes on with
            (work / PROGRESS_FILE).unlink(missing_ok=True)
            array = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=shape)
            del array  # the header is written; fill maps the file itself
        learned = fill(images_path)
        np.save(work / "labels.npy", np.asarray(labels, dtype=np.int64))
        full = {"format": CACHE_FORMAT, "key": key, "shape": list(shape), **meta, **learned}
        (work / "meta.json").write_text(json.dumps(full))
        for name in ("images.npy", "labels.npy", "meta.json"):
            fsync_path(work / name)
        (work / PROGRESS_FILE).unlink(missing_ok=True)
        (work / _LOCK_FILE).unlink(missing_ok=True)
        final = root / key
        try:
            os.replace(work, final)
        except OSError:
            # Another process finished the same entry first (a rename onto a non-empty folder fails): use it.
            shutil.rmtree(work, ignore_errors=True)
        entry = find(cache_dir, key)
        if entry is None:
            raise OSError(f"the image cache entry {final} could not be read back after writing it")
        return entry
    except BaseException:
        if lock is None:  # a private folder: nothing to go on from
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _work_folder(root: Path, key: str) -> tuple[Path, int | None]:
    """``.<key>.partial`` with its lock held (the descriptor), or a private folder while another process holds it."""
    shared = root / f".{key}.partial"
    shared.mkdir(exist_ok=True)
    lock = lock_without_waiting(shared / _LOCK_FILE)
    if lock is not None:
        return shared, lock
    return Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root)), None


def _is_images_file(path: Path, shape: tuple[int, int, int, int]) -> bool:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return tuple(array.shape) == tuple(shape) and array.dtype == np.uint8


def statistics(entry_folder: Path, rows: np.ndarray, pixel_max: float,
               compute: Callable[[], tuple[tuple[float, ...], tuple[float, ...]]]
               ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel (mean, std) of a train split of a cached store: read from the entry when an earlier run
    computed them for the same rows, else computed and kept there (``stats-<rows digest>.json``, atomic)."""
    digest = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes() + repr(pixel_max).encode()).hexdigest()[:20]
    path = entry_folder / f"stats-{digest}.json"
    try:
        saved = json.loads(path.read_text())
        return tuple(saved["mean"]), tuple(saved["std"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    mean, std = compute()
    try:
        atomic_write_text(path, json.dumps({"mean": list(mean), "std": list(std)}))
    except OSError:
        pass  # a read-only cache still works: the statistics are computed again next time
    return mean, std


def remove(entry: CacheEntry) -> None:
    """Delete an entry (e.g. one whose source turned out unusable), leaving nothing of it behind."""
    shutil.rmtree(entry.folder, ignore_errors=True)


def previous_key(cache_dir: Path, source_id: str) -> str | None:
    """The key this source had the last time it was cached, if any."""
    try:
        return json.loads((cache_dir / "data" / "sources" / f"{source_id}.json").read_text()).get("key")
    except (OSError, ValueError):
        return None


def begin(cache_dir: Path, source_id: str, key: str) -> None:
    """Note that ``key`` is being decoded for this source; the partial folder of another key an earlier decode of it
    left (stopped, then the source changed) is deleted, unless a process still builds it."""
    pointer = cache_dir / "data" / "sources" / f"{source_id}.json"
    try:
        record = json.loads(pointer.read_text())
    except (OSError, ValueError):
        record = {}
    earlier = record.get("decoding")
    if earlier is not None and earlier != key:
        _remove_partial(cache_dir / "data" / f".{earlier}.partial")
    pointer.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(pointer, json.dumps({**record, "decoding": key}))


def _remove_partial(folder: Path) -> None:
    if not folder.is_dir():
        return
    lock = lock_without_waiting(folder / _LOCK_FILE)
    if lock is None:
        return  # still being built
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(lock)


def remember(cache_dir: Path, source_id: str, key: str, source: str) -> None:
    """Record ``key`` as the current content of ``source``; an older entry of it is deleted (it is stale)."""
    old = previous_key(cache_dir, source_id)
    if old is not None and old != key:
        shutil.rmtree(cache_dir / "data" / old, ignore_errors=True)
    folder = cache_dir / "data" / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{source_id}.json", json.dumps({"key": key, "source": source}))


def source_id(description: dict[str, Any]) -> str:
    """A stable id of a source (its kind, path and target size), whatever its files hold now."""
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:20]
