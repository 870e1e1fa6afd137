"""Every dataset as one uint8 store: the rows of its images, their labels and the splits the source gives.

The built-in sets are read with the readers in `_builtin`; a user's layout (`_layouts`) is decoded by
`_decode`. With a cache folder, both go through the on-disk cache (`_store`): decoded once, then opened as
a memory map by this run, later runs and every trial. Without one, a user's images are decoded into a
temporary map and read into memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.data import _store
from trainers.data._builtin import (
    DIGITS_INFO,
    FILE_DATASETS,
    Arrays,
    file_paths,
    is_test_only,
    load_file_dataset,
    read_digits,
)
from trainers.data._decode import MAX_LOST_FRACTION, common_shape, decode_files, probe_files
from trainers.data._info import DatasetError, DatasetInfo, default_crop_padding
from trainers.data._layouts import UNSPLIT, FileList, list_layout

Log = Callable[[str], None]
TEST_SPLIT = 2


@dataclass
class Store:
    """A dataset's images (uint8 N, C, H, W), labels, each image's given split and what was left out."""

    info: DatasetInfo
    images: torch.Tensor
    labels: np.ndarray
    split_of: np.ndarray  # int8 per row: 0 train, 1 val, 2 test, UNSPLIT (kdsearch splits it)
    usable: np.ndarray  # bool per row: False for a file that could not be decoded
    pixel_max: float = 255.0
    images_path: str | None = None
    key: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    source: dict[str, Any] = field(default_factory=dict)


def open_store(key: str, data_dir: str | None, *, download: bool, image_size: int | None,
               cache_dir: Path | None, log: Log | None, stop_requested: Callable[[], bool] | None = None) -> Store:
    """The store of dataset ``key`` (a canonical name), from the cache when it holds it (``stop_requested`` as
    ``decode_files``', for a decode into the cache)."""
    if key == "digits":
        arrays = read_digits()
        # Pixel values are the integers 0..16, so uint8 holds them exactly like the other datasets' pixels.
        return Store(DIGITS_INFO, torch.from_numpy(arrays.x.copy()), arrays.y,
                     np.full(len(arrays.y), UNSPLIT, dtype=np.int8), np.ones(len(arrays.y), dtype=bool),
                     pixel_max=16.0, source={"layout": "embedded", "cache": "in memory"})
    if key in FILE_DATASETS:
        return _builtin_store(key, data_dir, download, cache_dir, log)
    return _user_store(list_layout(key, data_dir), image_size, cache_dir, log, stop_requested)


def _builtin_store(key: str, data_dir: str | None, download: bool, cache_dir: Path | None,
                   log: Log | None) -> Store:
    info = FILE_DATASETS[key].info
    # file_paths downloads first when asked, so what it finds is what will be read.
    paths = file_paths(key, data_dir, download)
    layout = "official files"
    if is_test_only(key, paths):
        layout = "test files only"
        if log is not None:
            log(f"data: {key}: only the test files found ({', '.join(path.name for path in paths)}): "
                "a test-only copy, split into train, validation and test like a folder of images")
    if cache_dir is None:
        train, test = load_file_dataset(key, data_dir, download)
        pool = _concatenate(train, test)
        return Store(info, torch.from_numpy(np.ascontiguousarray(pool.x)), pool.y, _official(train, test),
                     np.ones(len(pool.y), dtype=bool), source={"layout": layout, "cache": "in memory"})
    description = {"dataset": key, "files": [_stat(path) for path in paths]}
    key_of_files = _store.content_key(description)
    entry = _store.find(cache_dir, key_of_files)
    if entry is None:
        train, test = load_file_dataset(key, data_dir, False)
        pool = _concatenate(train, test)

        def fill(images_path: Path) -> dict[str, Any]:
            images = np.load(images_path, mmap_mode="r+")
            images[:] = pool.x
            images.flush()
            return {}

        entry = _store.build(cache_dir, key_of_files, pool.x.shape, pool.y,
                             {"split_of": _official(train, test).tolist()}, fill)
        how = "read"
    else:
        how = "opened"
    if log is not None:
        where = "read into" if how == "read" else "opened from"
        log(f"data: {key} {where} the uint8 cache {entry.folder} ({entry.meta['shape'][0]:,} images)")
    split_of = np.asarray(entry.meta["split_of"], dtype=np.int8)
    return Store(info, entry.images(), entry.labels(), split_of, np.ones(len(split_of), dtype=bool),
                 images_path=str(entry.images_path), key=entry.meta["key"],
                 source={"layout": layout, "cache": how, "cache_path": str(entry.folder)})


def _concatenate(train: Arrays, test: Arrays) -> Arrays:
    return Arrays(np.concatenate([train.x, test.x]), np.concatenate([train.y, test.y]))


def _official(train: Arrays, test: Arrays) -> np.ndarray:
    """The official train part, split by kdsearch into train and validation, then the official test part."""
    return np.concatenate([np.full(len(train.y), UNSPLIT, dtype=np.int8),
                           np.full(len(test.y), TEST_SPLIT, dtype=np.int8)])


def _stat(path: Path) -> tuple[str, int | None, int | None]:
    name = str(path)
    try:
        status = os.stat(name)
    except OSError:
        return name, None, None
    return name, status.st_size, status.st_mtime_ns


def _user_store(listing: FileList, image_size: int | None, cache_dir: Path | None, log: Log | None,
                stop_requested: Callable[[], bool] | None = None) -> Store:
    """A user's layout through the cache: opened when its files are unchanged, decoded (and said) otherwise."""
    what = str(listing.root)
    identity = {"layout": listing.layout, "root": str(listing.root.resolve()), "image_size": image_size}
    description = {**identity, "files": [_stat(path) for path in listing.files],
                   "labels": listing.labels.tolist(), "split_of": listing.split_of.tolist()}
    key = _store.content_key(description)
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="kdsearch-decode-") as scratch:
            entry = _decode(listing, image_size, Path(scratch), key, log, what)
            store = _user_entry_store(listing, entry, log, what)
            store.images = store.images.clone()  # into memory: the temporary map is deleted
            store.images_path, store.source = None, {**store.source, "cache": "in memory"}
            return store
    source = _store.source_id(identity)
    entry = _store.find(cache_dir, key)
    if entry is not None:
        if log is not None:
            usable = entry.meta["shape"][0] - len(entry.meta["failed_rows"])
            log(f"data: {what} opened from the uint8 cache {entry.folder} ({usable:,} images, decoded by an "
                "earlier run)")
        return _user_entry_store(listing, entry, log, what, how="opened")
    previous = _store.previous_key(cache_dir, source)
    if previous is not None and log is not None:
        log(f"data: {what} changed since it was cached (files added, removed or modified): decoding it again")
    _store.begin(cache_dir, source, key)
    entry = _decode(listing, image_size, cache_dir, key, log, what, stop_requested)
    try:
        store = _user_entry_store(listing, entry, log, what, how="re-decoded" if previous else "decoded")
    except DatasetError:
        _store.remove(entry)  # an unusable source leaves nothing behind
        raise
    _store.remember(cache_dir, source, key, what)
    return store


def _decode(listing: FileList, image_size: int | None, cache_dir: Path, key: str, log: Log | None,
            what: str, stop_requested: Callable[[], bool] | None = None) -> _store.CacheEntry:
    probes, failures = probe_files(listing.files, log, what)
    _check_lost(listing, failures)
    if len(failures) == len(listing.files):
        raise DatasetError(f"no image of {what} could be read: check the files (e.g. {listing.files[0]})")
    shape = (len(listing.files), *common_shape(probes, image_size))
    readable = [row for row in range(len(listing.files)) if row not in failures]

    def fill(images_path: Path) -> dict[str, Any]:
        lost = decode_files([listing.files[row] for row in readable], readable, images_path, shape[1:], log, what,
                            stop_requested=stop_requested)
        every = {**failures, **lost}
        return {"failed_rows": sorted(every), "failed_reasons": [every[row] for row in sorted(every)]}

    meta = {"files": [os.path.relpath(path, listing.root if listing.root.is_dir() else listing.root.parent)
                      for path in listing.files],
            "class_names": list(listing.class_names), "split_of": listing.split_of.tolist(),
            "layout": listing.layout}
    return _store.build(cache_dir, key, shape, listing.labels, meta, fill)


def _user_entry_store(listing: FileList, entry: _store.CacheEntry, log: Log | None, what: str,
                      how: str = "decoded") -> Store:
    failed = dict(zip(entry.meta["failed_rows"], entry.meta["failed_reasons"], strict=True))
    _check_lost(listing, failed)
    usable = np.ones(entry.meta["shape"][0], dtype=bool)
    usable[list(failed)] = False
    skipped = tuple((str(listing.files[row]), reason) for row, reason in sorted(failed.items()))
    skipped += tuple((str(path), "not an image file") for path in listing.not_images)
    if skipped and log is not None:
        shown = "; ".join(f"{path} ({reason})" for path, reason in skipped[:5])
        more = f"; and {len(skipped) - 5} more (summary.json lists them)" if len(skipped) > 5 else ""
        log(f"data: {len(skipped)} file(s) of {what} left out: {shown}{more}")
    channels, height, width = entry.meta["shape"][1:]
    info = DatasetInfo(listing.layout if listing.layout == "csv" else "imagefolder", (channels, height, width),
                       len(listing.class_names), crop_padding=default_crop_padding(height, width),
                       horizontal_flip=channels == 3, class_names=listing.class_names)
    source = {"layout": listing.layout, "cache": how, "cache_path": str(entry.folder),
              "images": int(usable.sum()), "skipped": len(skipped)}
    return Store(info, entry.images(), entry.labels(), np.asarray(entry.meta["split_of"], dtype=np.int8), usable,
                 images_path=str(entry.images_path), key=entry.meta["key"], skipped=skipped, source=source)


def _check_lost(listing: FileList, failed: dict[int, str]) -> None:
    """More than `MAX_LOST_FRACTION` of the images unreadable: one line naming some of them."""
    if len(failed) <= MAX_LOST_FRACTION * len(listing.files):
        return
    named = ", ".join(f"{listing.files[row]} ({reason})" for row, reason in sorted(failed.items())[:3])
    raise DatasetError(f"{len(failed)} of {len(listing.files)} images of {listing.root} cannot be read "
                       f"(more than {MAX_LOST_FRACTION:.0%}), e.g. {named}; replace or remove them")
