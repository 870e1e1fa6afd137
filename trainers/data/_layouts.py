"""The layouts people keep their own images in, listed (not yet decoded) as a `FileList`.

- ``imagefolder``: ``ROOT/<class>/**/<image>``, one sub-folder per class, split by kdsearch;
- split folders: ``ROOT/train/<class>/...`` and ``ROOT/val/<class>/...`` (``valid`` and ``validation`` also
  name it), optionally ``ROOT/test/<class>/...``: the given splits are used as given;
- ``csv``: a manifest with a header, columns ``path`` and ``label`` and optionally ``split``
  (train / val / test); paths are relative to the manifest's folder (or absolute).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.data._info import IMAGE_EXTENSIONS, DatasetError

SPLIT_NAMES: dict[str, int] = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
UNSPLIT = -1  # a file kdsearch splits itself (stratified): the other files keep their given split


@dataclass(frozen=True)
class FileList:
    """Every file of a layout with its class and given split, before decoding."""

    layout: str  # "imagefolder", "split-folders" or "csv"
    root: Path  # the folder or the manifest
    files: tuple[Path, ...]
    labels: np.ndarray  # int64, per file
    class_names: tuple[str, ...]
    split_of: np.ndarray  # int8 per file: 0 train, 1 val, 2 test, UNSPLIT
    # Files in the layout that are not images (an unknown extension): left out, reported, never counted as lost.
    not_images: tuple[Path, ...] = ()

    @property
    def given_splits(self) -> set[int]:
        return {int(split) for split in np.unique(self.split_of) if split != UNSPLIT}


def list_layout(kind: str, data_dir: str | None) -> FileList:
    """The files of ``kind`` ("imagefolder" or "csv") at ``data_dir``, or `DatasetError` in one line."""
    if kind == "csv":
        return list_manifest(data_dir)
    return list_image_folder(data_dir)


def list_image_folder(data_dir: str | None) -> FileList:
    """An image folder, in either layout: split folders when ``train/`` and ``val/`` or ``test/`` are there."""
    if data_dir is None:
        raise DatasetError("dataset 'imagefolder' reads a folder of class sub-folders: pass --data-dir DIR")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist: pass --data-dir a folder of class sub-folders")
    splits = {name: root / name for name in SPLIT_NAMES if (root / name).is_dir()}
    if "train" in splits and len({SPLIT_NAMES[name] for name in splits}) > 1:
        return _split_folders(root, splits)
    classes, not_images = _files_by_class(root)
    _check_classes(root, classes)
    files, labels = _flatten(classes, list(classes))
    return FileList("imagefolder", root, files, labels, tuple(classes),
                    np.full(len(files), UNSPLIT, dtype=np.int8), not_images)


def _split_folders(root: Path, splits: dict[str, Path]) -> FileList:
    """``train/`` plus ``val/`` and/or ``test/``, each holding the same class sub-folders."""
    by_split = {name: _files_by_class(folder) for name, folder in splits.items()}
    class_names = sorted(set().union(*(classes for classes, _ in by_split.values())))
    train_classes = by_split["train"][0]
    _check_classes(root / "train", train_classes)
    unknown = sorted(set(class_names) - set(train_classes))
    if unknown:
        raise DatasetError(f"split folders under {root}: class {unknown[0]!r} has images in another split but none "
                           "in train/; give every class training images or remove it")
    files: list[Path] = []
    labels: list[np.ndarray] = []
    split_of: list[np.ndarray] = []
    not_images: list[Path] = []
    for name in sorted(splits, key=lambda split: SPLIT_NAMES[split]):
        classes, skipped = by_split[name]
        split_files, split_labels = _flatten(classes, class_names)
        files.extend(split_files)
        labels.append(split_labels)
        split_of.append(np.full(len(split_files), SPLIT_NAMES[name], dtype=np.int8))
        not_images.extend(skipped)
    return FileList("split-folders", root, tuple(files), np.concatenate(labels), tuple(class_names),
                    np.concatenate(split_of), tuple(not_images))


def list_manifest(data_dir: str | None) -> FileList:
    """A CSV manifest: header ``path,label[,split]``; a missing file is listed (decoding reports it lost)."""
    if data_dir is None:
        raise DatasetError("dataset 'csv' reads a manifest: pass --data-dir FILE.csv (columns path,label[,split])")
    manifest = Path(data_dir).expanduser()
    if not manifest.is_file():
        raise DatasetError(f"manifest {manifest} does not exist: pass --data-dir a CSV file with columns "
                           "path,label[,split]")
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip().lower() for name in (reader.fieldnames or [])]
            reader.fieldnames = columns
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read manifest {manifest} ({type(error).__name__}): save it as a UTF-8 CSV "
                           "with columns path,label[,split]") from None
    missing = [name for name in ("path", "label") if name not in columns]
    if missing:
        found = ", ".join(columns) if columns else "none"
        raise DatasetError(f"manifest {manifest} has no {' or '.join(repr(name) for name in missing)} column "
                           f"(columns: {found}); its header must name path,label and optionally split")
    if not rows:
        raise DatasetError(f"manifest {manifest} lists no images: add one row per image (path,label[,split])")
    base = manifest.parent
    files, names, splits = [], [], []
    for line, row in enumerate(rows, start=2):
        path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not path or not label:
            raise DatasetError(f"manifest {manifest} line {line}: empty path or label; fill it in or delete the row")
        split = (row.get("split") or "").strip().lower()
        if split and split not in SPLIT_NAMES:
            raise DatasetError(f"manifest {manifest} line {line}: unknown split {split!r}; use train, val or test "
                               "(or leave it empty to let kdsearch split)")
        files.append(base / Path(path).expanduser())
        names.append(label)
        splits.append(SPLIT_NAMES[split] if split else UNSPLIT)
    class_names = _sorted_labels(set(names))
    if len(class_names) < 2:
        raise DatasetError(f"manifest {manifest} has only one label ({class_names[0]}): a classifier needs at "
                           "least two classes")
    index = {name: label for label, name in enumerate(class_names)}
    split_of = np.asarray(splits, dtype=np.int8)
    if (split_of == UNSPLIT).any() and (split_of != UNSPLIT).any():
        raise DatasetError(f"manifest {manifest} gives a split for some rows but not others: give every row a "
                           "split, or none")
    return FileList("csv", manifest, tuple(files), np.asarray([index[name] for name in names], dtype=np.int64),
                    tuple(class_names), split_of)


def _sorted_labels(names: set[str]) -> list[str]:
    """Labels in numeric order when they are all integers (so "10" follows "9"), else alphabetical."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _files_by_class(root: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """Sorted class folder name -> its image files (searched recursively), and the non-image files seen."""
    classes: dict[str, list[Path]] = {}
    not_images: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _files_under(folder)
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        not_images.extend(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)
        if images:
            classes[folder.name] = images
    return classes, not_images


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file under ``folder``, recursively, sorted (os.walk and plain strings: at 100,000 files
    a stat call per file and pathlib's comparisons would cost seconds)."""
    names = sorted(os.path.join(parent, name) for parent, _, names in os.walk(folder) for name in names
                   if not name.startswith("."))
    return [Path(name) for name in names]


def _check_classes(root: Path, classes: dict[str, list[Path]]) -> None:
    if len(classes) < 2:
        found = f"only one class ({next(iter(classes))})" if classes else "no class sub-folder with images"
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DatasetError(f"image folder {root} has {found}: put each class's images ({extensions}) "
                           "in its own sub-folder, at least two classes")


def _flatten(classes: dict[str, list[Path]], class_names: list[str]) -> tuple[tuple[Path, ...], np.ndarray]:
    index = {name: label for label, name in enumerate(class_names)}
    files = [path for name in classes for path in classes[name]]
    labels = [index[name] for name in classes for _ in classes[name]]
    return tuple(files), np.asarray(labels, dtype=np.int64)
