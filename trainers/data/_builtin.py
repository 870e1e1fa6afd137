"""The built-in datasets: scikit-learn's digits, and the files torchvision downloads (MNIST family, CIFAR,
SVHN), read with small readers of our own so a user can also put the files there by hand and nothing here
needs the network unless `download=True`."""

from __future__ import annotations

import gzip
import pickle
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.data._info import DatasetError, DatasetInfo


@dataclass
class Arrays:
    """Raw images (N, C, H, W) as stored on disk, before any scaling, and their int64 labels."""

    x: np.ndarray
    y: np.ndarray

    def take(self, indices: np.ndarray) -> Arrays:
        return Arrays(self.x[indices], self.y[indices])


# ---------------------------------------------------------------------------------------------------------
# digits (embedded in scikit-learn)
# ---------------------------------------------------------------------------------------------------------

# ±1 px shifts: the teacher needs them to generalise from 1,077 images (it memorises them otherwise).
DIGITS_INFO = DatasetInfo("digits", (1, 8, 8), 10, crop_padding=1, horizontal_flip=False, student_augment=False)


def read_digits() -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are the integers 0..16, so uint8 holds them exactly like the other datasets' pixels.
    images = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    return Arrays(images, bunch.target.astype(np.int64))


# ---------------------------------------------------------------------------------------------------------
# File datasets in torchvision's layout
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileDataset:
    """Where torchvision puts a dataset under data_dir and how to read its train and test parts."""

    info: DatasetInfo
    folder: str  # relative to data_dir
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    read: Callable[[Sequence[Path], DatasetInfo], Arrays]
    torchvision_class: str
    gzip_ok: bool = False  # the idx files may also be kept compressed


def _idx_files(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")


def _mnist_like(name: str, folder: str, torchvision_class: str) -> _FileDataset:
    return _FileDataset(
        info=DatasetInfo(name, (1, 28, 28), 10, crop_padding=2, horizontal_flip=False),
        folder=folder,
        train_files=_idx_files("train"),
        test_files=_idx_files("t10k"),
        read=lambda paths, info: _read_idx_pair(paths[0], paths[1], info),
        torchvision_class=torchvision_class,
        gzip_ok=True,
    )


def _cifar(
    name: str,
    folder: str,
    train: tuple[str, ...],
    test: tuple[str, ...],
    classes: int,
    label_key: bytes,
    torchvision_class: str,
) -> _FileDataset:
    return _FileDataset(
        info=DatasetInfo(name, (3, 32, 32), classes, crop_padding=4, horizontal_flip=True),
        folder=folder,
        train_files=train,
        test_files=test,
        read=lambda paths, info: _read_cifar_batches(paths, label_key, info),
        torchvision_class=torchvision_class,
    )


FILE_DATASETS: dict[str, _FileDataset] = {
    "mnist": _mnist_like("mnist", "MNIST/raw", "MNIST"),
    "fashion-mnist": _mnist_like("fashion-mnist", "FashionMNIST/raw", "FashionMNIST"),
    "kmnist": _mnist_like("kmnist", "KMNIST/raw", "KMNIST"),
    "cifar10": _cifar(
        "cifar10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        10,
        b"labels",
        "CIFAR10",
    ),
    "cifar100": _cifar(
        "cifar100", "cifar-100-python", ("train",), ("test",), 100, b"fine_labels", "CIFAR100"
    ),
    "svhn": _FileDataset(
        info=DatasetInfo("svhn", (3, 32, 32), 10, crop_padding=4, horizontal_flip=False),
        folder="",
        train_files=("train_32x32.mat",),
        test_files=("test_32x32.mat",),
        read=lambda paths, info: _read_svhn_mat(paths[0], info),
        torchvision_class="SVHN",
    ),
}


def file_paths(key: str, data_dir: str | None, download: bool) -> list[Path]:
    """The files of file dataset ``key`` under ``data_dir`` (train parts, then test parts), downloading them
    first if asked and missing; `DatasetError` naming what is missing otherwise.

    Each file is looked for in torchvision's folder under ``data_dir`` (``MNIST/raw``, ...), then in
    ``data_dir`` itself. A copy holding the test files alone (``--download`` not asked) is a test-only
    copy: only its test paths are returned, and `load_file_dataset` reads them as the whole dataset.
    """
    spec = FILE_DATASETS[key]
    if data_dir is None:
        how = "" if download else " (add --download to fetch them)"
        raise DatasetError(f"dataset '{key}' is read from files: pass --data-dir DIR{how}")
    root = Path(data_dir).expanduser()
    if missing_files(spec, root) and download:
        _download(key, spec, root)
    missing = missing_files(spec, root)
    test_paths = [_locate(spec, root, name) for name in spec.test_files]
    if missing and not download and all(path.is_file() for path in test_paths):
        return test_paths
    if missing:
        raise DatasetError(
            f"dataset '{key}' not found under {root}: expected {', '.join(map(str, missing))}; "
            "pass --download to fetch it or put the files there"
        )
    return [_locate(spec, root, name) for name in spec.train_files + spec.test_files]


def is_test_only(key: str, paths: Sequence[Path]) -> bool:
    """Whether ``file_paths`` found a test-only copy of file dataset ``key``."""
    spec = FILE_DATASETS[key]
    return len(paths) < len(spec.train_files) + len(spec.test_files)


def load_file_dataset(key: str, data_dir: str | None, download: bool) -> tuple[Arrays, Arrays]:
    """The official (train, test) parts of a file dataset, downloading them first if asked and missing.

    A test-only copy comes back as its test part in place of the train part and an empty test part, so it
    is split three ways like a folder of images."""
    spec = FILE_DATASETS[key]
    paths = file_paths(key, data_dir, download)
    if is_test_only(key, paths):
        test = spec.read(paths, spec.info)
        return test, Arrays(test.x[:0], test.y[:0])
    train = spec.read(paths[:len(spec.train_files)], spec.info)
    test = spec.read(paths[len(spec.train_files):], spec.info)
    return train, test


def _locate(spec: _FileDataset, root: Path, name: str) -> Path:
    """The path of one expected file: in torchvision's folder, else in ``root`` itself; the plain file, else
    (idx only) its .gz; the plain one in torchvision's folder if none is there."""
    for folder in dict.fromkeys((root / spec.folder, root)):
        plain = folder / name
        gz = plain.with_name(name + ".gz")
        if plain.is_file():
            return plain
        if spec.gzip_ok and gz.is_file():
            return gz
    return root / spec.folder / name


def missing_files(spec: _FileDataset, root: Path) -> list[Path]:
    paths = [_locate(spec, root, name) for name in spec.train_files + spec.test_files]
    return [path for path in paths if not path.is_file()]


def _download(key: str, spec: _FileDataset, root: Path) -> None:
    """Let torchvision fetch the files into `root`, in the layout the readers expect."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, spec.torchvision_class)
    part_args = (
        [{"split": "train"}, {"split": "test"}] if key == "svhn" else [{"train": True}, {"train": False}]
    )
    try:
        root.mkdir(parents=True, exist_ok=True)
        for args in part_args:
            cls(root=str(root), download=True, **args)
    except Exception as error:
        # Network, mirror, checksum and disk failures surface as many unrelated exception types.
        expected = ", ".join(str(root / spec.folder / name) for name in spec.train_files + spec.test_files)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DatasetError(
            f"could not download {key} into {root}: {reason}; put the files there by hand: {expected}"
        ) from None


def _corrupt(where: Path | str, why: str) -> DatasetError:
    return DatasetError(f"corrupt dataset file {where}: {why}; delete it and download or copy it again")


def _labels(values: object, where: Path) -> np.ndarray:
    """Labels as a flat int64 array, or the file named as corrupt."""
    try:
        return np.asarray(values, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise _corrupt(where, "labels are not integers") from None


def _check_parts(where: Path | str, arrays: Arrays, info: DatasetInfo) -> Arrays:
    """Reject files whose images or labels do not fit the dataset, naming the file."""
    if arrays.x.shape[1:] != info.input_shape:
        raise _corrupt(where, f"images of shape {arrays.x.shape[1:]}, expected {info.input_shape}")
    if len(arrays.x) != len(arrays.y):
        raise _corrupt(where, f"{len(arrays.x)} images but {len(arrays.y)} labels")
    if len(arrays.y) and (arrays.y.min() < 0 or arrays.y.max() >= info.num_classes):
        raise _corrupt(where, f"labels outside 0..{info.num_classes - 1}")
    return arrays


# --- idx (MNIST family) ---------------------------------------------------------------------------------

_IDX_UBYTE = 0x08


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte idx array: 2 zero bytes, type 0x08, ndim, ndim big-endian uint32 sizes, data."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise _corrupt(path, f"cannot read it ({error})") from None
    header_size = 4 + 4 * ndim
    if len(raw) < header_size or raw[0:2] != b"\x00\x00" or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise _corrupt(path, f"not an idx file of {ndim}-D unsigned bytes (bad magic number)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header_size != int(np.prod(shape)):
        raise _corrupt(path, f"{len(raw) - header_size} data bytes, header says shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_idx_pair(images_path: Path, labels_path: Path, info: DatasetInfo) -> Arrays:
    images = _read_idx(images_path, ndim=3)[:, None]  # add the channel axis
    labels = _read_idx(labels_path, ndim=1).astype(np.int64)
    return _check_parts(f"{images_path} or {labels_path}", Arrays(images, labels), info)


# --- CIFAR python pickles -------------------------------------------------------------------------------


def _read_cifar_batches(paths: Sequence[Path], label_key: bytes, info: DatasetInfo) -> Arrays:
    parts = [_read_cifar_batch(path, label_key, info) for path in paths]
    return Arrays(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def _read_cifar_batch(path: Path, label_key: bytes, info: DatasetInfo) -> Arrays:
    """One CIFAR batch: a pickled dict with b"data" (N, 3072) uint8 and a label list."""
    try:
        with path.open("rb") as f:
            # Pickle is the format CIFAR ships in; these are files the user downloaded or put there.
            batch = pickle.load(f, encoding="bytes")
    except Exception as error:
        # A damaged pickle can raise almost any exception type.
        raise _corrupt(path, f"cannot unpickle it ({type(error).__name__})") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise _corrupt(path, f"expected a dict with b'data' and {label_key!r}")
    data = np.asarray(batch[b"data"])
    channels, height, width = info.input_shape
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != channels * height * width:
        raise _corrupt(
            path, f"b'data' is {data.dtype} {data.shape}, expected uint8 (N, {channels * height * width})"
        )
    # Each row is the red plane, then green, then blue, each row-major: exactly (C, H, W).
    images = data.reshape(-1, channels, height, width)
    return _check_parts(path, Arrays(images, _labels(batch[label_key], path)), info)


# --- SVHN MATLAB files ----------------------------------------------------------------------------------


def _read_svhn_mat(path: Path, info: DatasetInfo) -> Arrays:
    """SVHN cropped digits: X (32, 32, 3, N) uint8 and y (N, 1) with 10 standing for the digit 0."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as error:
        # scipy raises ValueError, MatReadError, OSError and others for a damaged file.
        raise _corrupt(path, f"cannot read it as a MATLAB file ({type(error).__name__})") from None
    if "X" not in mat or "y" not in mat or np.asarray(mat["X"]).ndim != 4:
        raise _corrupt(path, "expected variables X (32, 32, 3, N) and y (N, 1)")
    images = np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1)
    labels = _labels(mat["y"], path) % 10
    return _check_parts(path, Arrays(images, labels), info)
