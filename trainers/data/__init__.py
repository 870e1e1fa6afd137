"""Datasets as one uint8 image store: sources, the on-disk cache, splits, per-batch normalisation and
augmentation.

Every dataset ends up as one `TensorSplits`: its images kept once as uint8 (N, C, H, W), in memory or
memory-mapped from the cache, int64 labels, and the rows of the train, validation and test splits. Images
are converted to float32 and normalised with the train split's per-channel statistics batch by batch, on
the batch's device. One job per file:

    _info.py        names, `DatasetInfo`, `DatasetError`, augmentation settings
    _builtin.py     digits and the files torchvision downloads (MNIST family, CIFAR, SVHN)
    _layouts.py     a user's layouts listed: image folder, split folders, CSV manifest
    _decode.py      a user's images decoded in parallel into a uint8 memory map, bad files left out
    _store.py       the on-disk cache: keyed, atomic, opened as a memory map
    _sources.py     every dataset as a uint8 store, through the cache when there is one
    _splits.py      deterministic stratified splits
    _tensors.py     `TensorSplits` and `SplitImages`: the splits over the store, normalised per batch
    _transforms.py  random crops and flips of a batch, and the finite views they make
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from trainers.data._decode import DecodeStopped
from trainers.data._info import (
    AUGMENTATIONS,
    DATASETS,
    IMAGE_EXTENSIONS,
    USER_DATASETS,
    DatasetError,
    DatasetInfo,
    canonical_name,
    check_augment,
    with_augmentation,
)
from trainers.data._layouts import UNSPLIT
from trainers.data._sources import TEST_SPLIT, Store, open_store
from trainers.data._splits import check_fraction, stratified_split, stratified_subset, stratified_three_way
from trainers.data._store import statistics
from trainers.data._tensors import (
    SplitImages,
    TensorSplits,
    channel_statistics,
    fingerprint,
    inference_batch_size,
    normalise,
)
from trainers.data._transforms import augment_batch, augment_views, render_view, view_count

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "USER_DATASETS",
    "DatasetError",
    "DecodeStopped",
    "DatasetInfo",
    "SplitImages",
    "TensorSplits",
    "augment_batch",
    "augment_views",
    "canonical_name",
    "fingerprint",
    "inference_batch_size",
    "load_dataset",
    "normalise",
    "render_view",
    "view_count",
]

TRAIN_SPLIT, VAL_SPLIT = 0, 1


def load_dataset(
    name: str,
    data_dir: str | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    max_train_samples: int | None = None,
    augment: str = "auto",
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TensorSplits:
    """Load dataset `name` as a uint8 store with train / val / test splits, normalised when read.

    Splits: a split the source gives is used as given (the official test sets; a user's ``train/``,
    ``val/``, ``test/`` folders or a manifest's ``split`` column). What is not given is taken, stratified,
    from the rest: validation is `val_fraction` of the official train set; `digits`, an image folder and a
    manifest without splits are split three ways into `val_fraction` and `test_fraction` of the whole; split
    folders or a manifest without a test split give `test_fraction` of their train split to test. Splits
    depend only on the data and `seed`. `max_train_samples` keeps a stratified subset of the train split.

    A user's images (``imagefolder``, ``csv``) are read as they are: one channel if every image is
    greyscale, else RGB; their own size if they share one, else the most common size; `image_size`
    resizes every image to `image_size` x `image_size` instead (it applies only to those layouts).
    Files that cannot be read (empty, corrupt, missing) are left out and listed in ``splits.skipped`` with
    their reason, as are non-image files in the class folders; more than 1 % of the images lost is a
    `DatasetError` naming some of them.

    `cache_dir`: where the decoded uint8 store is kept (``<cache_dir>/data/<key>/``) and opened as a memory
    map by later runs and by every process the splits are pickled to; a changed source is decoded again
    (and `log` says so). Without it a user's images are decoded into memory and the built-in files read. A
    decode into the cache keeps its progress: a killed one goes on where it stopped, and once `stop_requested()`
    is true it stops after the chunks in progress, raising `DecodeStopped`.

    `augment` (one of `AUGMENTATIONS`) sets `info.crop_padding` and `info.horizontal_flip`: "auto" is the
    dataset's known recipe (digits crop 1 px, the MNIST family crop 2, CIFAR crop 4 + flip, SVHN crop 4,
    a user's images crop size // 8 plus flip when in colour); "none" turns augmentation off; "crop" keeps
    the recipe's padding (max(1, size // 8) where it has none) without flips; "crop+flip" adds flips.
    `info.student_augment` stays the dataset's default either way. Raises `DatasetError` with a one-line
    message on any problem.
    """
    key = canonical_name(name)
    augment = check_augment(augment)
    _check_image_size(key, image_size)
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise DatasetError(f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}")
    if max_train_samples is not None and max_train_samples < 1:
        raise DatasetError(f"max_train_samples must be at least 1, got {max_train_samples}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    store = open_store(key, data_dir, download=download, image_size=image_size, cache_dir=cache, log=log,
                       stop_requested=stop_requested)
    train, val, test = _split_rows(store, key, val_fraction, test_fraction, seed, log)
    if max_train_samples is not None and max_train_samples < len(train):
        train = train[stratified_subset(store.labels[train], max_train_samples, seed, what=key)]
    if store.images_path is not None:
        mean, std = statistics(Path(store.images_path).parent, train, store.pixel_max,
                               lambda: channel_statistics(store.images, train, store.pixel_max))
    else:
        mean, std = channel_statistics(store.images, train, store.pixel_max)
    return TensorSplits(
        info=with_augmentation(store.info, augment),
        images=store.images,
        labels=torch.from_numpy(np.asarray(store.labels, dtype=np.int64)),
        train_rows=torch.from_numpy(train),
        val_rows=torch.from_numpy(val),
        test_rows=torch.from_numpy(test),
        mean=mean,
        std=std,
        pixel_max=store.pixel_max,
        images_path=store.images_path,
        store_key=store.key,
        skipped=store.skipped,
        source=store.source,
    )


def _split_rows(store: Store, key: str, val_fraction: float, test_fraction: float, seed: int,
                log: Callable[[str], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) rows of the store's usable images: given splits as given, the rest stratified."""
    rows = np.flatnonzero(store.usable)
    split_of, labels = store.split_of[rows], store.labels

    def given(split: int) -> np.ndarray:
        return rows[split_of == split]

    free = rows[split_of == UNSPLIT]
    if len(free) == len(rows):
        parts = stratified_three_way(labels[free], val_fraction, test_fraction, seed, what=key)
        return tuple(free[part] for part in parts)  # type: ignore[return-value]
    train = np.sort(np.concatenate([given(TRAIN_SPLIT), free]))
    val, test = given(VAL_SPLIT), given(TEST_SPLIT)
    if len(test) == 0:
        kept, held = stratified_split(labels[train], test_fraction, seed, what=f"{key} train split")
        train, test = train[kept], train[held]
        if log is not None:
            log(f"data: no test split given: {len(test):,} images ({test_fraction:.0%}) of the train split "
                "held out as test, stratified")
    if len(val) == 0:
        kept, held = stratified_split(labels[train], val_fraction, seed, what=key)
        train, val = train[kept], train[held]
    return train, val, test


def _check_image_size(key: str, image_size: int | None) -> None:
    if image_size is None:
        return
    if key not in USER_DATASETS:
        # Silently ignoring it would train on a size the user did not ask for.
        raise DatasetError(
            f"image_size applies only to imagefolder and csv; '{key}' images have a fixed size: "
            "leave image_size out"
        )
    if image_size < 1:
        raise DatasetError(f"image_size must be at least 1, got {image_size}")
