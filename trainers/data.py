"""Datasets as in-memory tensors: loading, deterministic stratified splits, normalisation, augmentation.

Every dataset ends up as one `TensorSplits`: float32 images normalised with the train split's per-channel
statistics and int64 labels, for train, validation and test. The file datasets are read from the layout
torchvision downloads into, with small readers of our own, so a user can also put the files there by hand
and nothing here needs the network unless `download=True`.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import hashlib
import pickle
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    # Pillow is imported where images are read: the other datasets never need it.
    from PIL.Image import Image as PILImage

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "kmnist",
    "cifar10",
    "cifar100",
    "svhn",
    "imagefolder",
)

# "auto" is the dataset's own recipe; the others override it (see `load_dataset`).
AUGMENTATIONS: tuple[str, ...] = ("auto", "none", "crop", "crop+flip")

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the augmentation need to know about a dataset."""

    name: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int
    crop_padding: int  # 0 = no random crop
    horizontal_flip: bool
    # Only an image folder has names worth keeping; elsewhere the label index is the class.
    class_names: tuple[str, ...] = ()
    # Whether students train on augmented views by default (the teacher always does when `augmented`).
    # digits: no; its students do best on the plain images with the teacher's outputs cached.
    student_augment: bool = True

    @property
    def augmented(self) -> bool:
        """Whether `augment_batch` changes anything for this dataset."""
        return self.crop_padding > 0 or self.horizontal_flip

    @property
    def augmentation(self) -> str:
        """The augmentation in words: "none", "crop", "flip" or "crop+flip"."""
        parts = [name for name, used in (("crop", self.crop_padding > 0), ("flip", self.horizontal_flip)) if used]
        return "+".join(parts) or "none"


@dataclass
class TensorSplits:
    """Train / validation / test tensors of one dataset, normalised with the train statistics."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    # The per-channel statistics applied to every split: an exported model needs the same preprocessing.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}

    def class_counts(self) -> dict[str, list[int]]:
        """Number of samples of each class in each split."""
        labels = {"train": self.train_y, "val": self.val_y, "test": self.test_y}
        return {
            split: torch.bincount(y.cpu(), minlength=self.info.num_classes).tolist()
            for split, y in labels.items()
        }

    def to(self, device: torch.device | str) -> TensorSplits:
        """A new `TensorSplits` with every tensor on `device`."""
        moved = {
            field: getattr(self, field).to(device)
            for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        }
        return dataclasses.replace(self, **moved)

    @property
    def background(self) -> tuple[float, ...]:
        """Per channel, the value a raw 0 pixel takes after normalisation: what a shifted-in border shows."""
        return tuple(-mean / std for mean, std in zip(self.mean, self.std, strict=True))


@dataclass
class _Arrays:
    """Raw images (N, C, H, W) as stored on disk, before any scaling, and their int64 labels."""

    x: np.ndarray
    y: np.ndarray

    def take(self, indices: np.ndarray) -> _Arrays:
        return _Arrays(self.x[indices], self.y[indices])


# ---------------------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------------------


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
) -> TensorSplits:
    """Load dataset `name` as normalised train / val / test tensors.

    Datasets with an official test set keep it as the test split and take a stratified `val_fraction` of
    the official train set as validation; `digits` and `imagefolder` are split three ways, stratified,
    into `val_fraction` and `test_fraction` of the whole. Splits depend only on the data and `seed`.
    `max_train_samples` keeps a stratified subset of the train split (for quick runs).

    An image folder is read as it is: one channel if every image is greyscale, else RGB; the images' own
    size if they share one, else the most common size (see `_read_image_folder`). `image_size` resizes
    every image to `image_size` x `image_size` instead; it applies only to `imagefolder`, the other
    datasets have a fixed size.

    `augment` (one of `AUGMENTATIONS`) sets `info.crop_padding` and `info.horizontal_flip`: "auto" is the
    dataset's known recipe (digits crop 1 px, the MNIST family crop 2, CIFAR crop 4 + flip, SVHN crop 4,
    an image folder crop size // 8 plus flip when in colour); "none" turns augmentation off; "crop" keeps
    the recipe's padding (max(1, size // 8) where it has none) without flips; "crop+flip" adds flips.
    `info.student_augment` stays the dataset's default either way. Raises `DatasetError` with a one-line
    message on any problem.
    """
    key = canonical_name(name)
    augment = _check_augment(augment)
    _check_image_size(key, image_size)
    _check_fraction("val_fraction", val_fraction)
    if max_train_samples is not None and max_train_samples < 1:
        raise DatasetError(f"max_train_samples must be at least 1, got {max_train_samples}")

    if key in _FILE_DATASETS:
        info = _FILE_DATASETS[key].info
        official_train, test = _load_file_dataset(key, data_dir, download)
        train_idx, val_idx = _stratified_split(official_train.y, val_fraction, seed, what=key)
        train, val = official_train.take(train_idx), official_train.take(val_idx)
        pixel_max = 255.0
    else:
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1:
            raise DatasetError(
                f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}"
            )
        if key == "digits":
            info, pool, pixel_max = _DIGITS_INFO, _read_digits(), 16.0
        else:
            info, pool = _read_image_folder(data_dir, image_size)
            pixel_max = 255.0
        indices = _stratified_three_way(pool.y, val_fraction, test_fraction, seed, what=key)
        train, val, test = (pool.take(i) for i in indices)

    if max_train_samples is not None and max_train_samples < len(train.y):
        train = train.take(_stratified_subset(train.y, max_train_samples, seed, what=key))
    return _to_tensor_splits(_with_augmentation(info, augment), train, val, test, pixel_max)


def canonical_name(name: str) -> str:
    """The entry of `DATASETS` that `name` means (case-insensitive, "_" for "-"), or `DatasetError`."""
    key = name.strip().lower().replace("_", "-")
    if key in DATASETS:
        return key
    close = difflib.get_close_matches(key, DATASETS, n=1, cutoff=0.3)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DatasetError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}{hint}")


def _check_augment(augment: str) -> str:
    """The entry of `AUGMENTATIONS` that `augment` means (case-insensitive), or `DatasetError`."""
    key = augment.strip().lower()
    if key in AUGMENTATIONS:
        return key
    close = difflib.get_close_matches(key, AUGMENTATIONS, n=1, cutoff=0.3)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DatasetError(f"unknown augment '{augment}': choose one of {', '.join(AUGMENTATIONS)}{hint}")


def _check_image_size(key: str, image_size: int | None) -> None:
    if image_size is None:
        return
    if key != "imagefolder":
        # Silently ignoring it would train on a size the user did not ask for.
        raise DatasetError(
            f"image_size applies only to imagefolder; '{key}' images have a fixed size: leave image_size out"
        )
    if image_size < 1:
        raise DatasetError(f"image_size must be at least 1, got {image_size}")


def augment_batch(
    images: torch.Tensor,
    info: DatasetInfo,
    generator: torch.Generator | None = None,
    background: Sequence[float] | None = None,
) -> torch.Tensor:
    """Random crop (padding `info.crop_padding`) and random horizontal flip of a (B, C, H, W) batch.

    The padding takes the per-channel `background` value (`TensorSplits.background`: a raw 0 pixel after
    normalisation, so a shifted digit shows the black border it would on paper); 0 when not given.
    Vectorised over the batch and run on the images' device; the random draws come from `generator`
    (on its own device) so a seeded generator gives the same batch every time. Returns `images` itself
    when the dataset is not augmented, otherwise a new tensor.
    """
    return augment_views(images, info, generator, background)[0]


def augment_views(
    images: torch.Tensor,
    info: DatasetInfo,
    generator: torch.Generator | None = None,
    background: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`augment_batch` (the same random draws), plus the id of the view each image became.

    The views of an image are finite: (2p + 1)^2 crop offsets, times 2 with flips. A view id indexes
    them (`view_count`, `render_view`), so per-view teacher outputs can be computed once and looked up.
    """
    batch = len(images)
    views = torch.zeros(batch, dtype=torch.long, device=images.device)
    if not info.augmented:
        return images, views
    # Draw on the generator's own device: a CPU generator cannot fill a CUDA tensor.
    rng_device = generator.device if generator is not None else images.device
    if info.crop_padding > 0:
        span = 2 * info.crop_padding + 1
        offsets = torch.randint(0, span, (2, batch), generator=generator, device=rng_device).to(images.device)
        images = _crop_at(images, offsets, info.crop_padding, background)
        views = offsets[0] * span + offsets[1]
    if info.horizontal_flip:
        flip = torch.rand(batch, generator=generator, device=rng_device).to(images.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        views = views * 2 + flip.long()
    return images, views


def view_count(info: DatasetInfo) -> int:
    """How many distinct views `augment_views` can make of one image (1 without augmentation)."""
    span = 2 * info.crop_padding + 1
    return span * span * (2 if info.horizontal_flip else 1)


def render_view(
    images: torch.Tensor, info: DatasetInfo, view: int, background: Sequence[float] | None = None
) -> torch.Tensor:
    """Every image of the batch as view `view` (the id `augment_views` reports), pixel for pixel."""
    flipped = False
    if info.horizontal_flip:
        view, flipped = divmod(view, 2)
    if info.crop_padding > 0:
        span = 2 * info.crop_padding + 1
        row, col = divmod(view, span)
        offsets = torch.tensor([[row], [col]], device=images.device).expand(2, len(images))
        images = _crop_at(images, offsets, info.crop_padding, background)
    return images.flip(-1) if flipped else images


def fingerprint(splits: TensorSplits) -> str:
    """A short hex digest that changes whenever the dataset, its splits or its normalisation change."""
    digest = hashlib.sha256(repr(splits.info).encode())
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        tensor = getattr(splits, field).detach().cpu().contiguous()
        digest.update(f"{field}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Splitting and normalisation
# ---------------------------------------------------------------------------------------------------------


def _check_fraction(label: str, value: float) -> None:
    if not 0 < value < 1:
        raise DatasetError(f"{label} must be between 0 and 1 (exclusive), got {value}")


def _sklearn_split(
    labels: np.ndarray, indices: np.ndarray, size: float | int, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (rest, taken) split of `indices`, where `taken` has `size` samples or that fraction."""
    from sklearn.model_selection import train_test_split

    try:
        rest, taken = train_test_split(indices, test_size=size, stratify=labels[indices], random_state=seed)
    except ValueError as error:
        # sklearn refuses when a class is too small for every part to get one of it.
        reason = str(error).splitlines()[0]
        raise DatasetError(
            f"cannot split {what} ({len(indices)} samples) with every class in every part: {reason}; "
            "use more samples per class or other fractions"
        ) from None
    return np.sort(rest), np.sort(taken)


def _stratified_split(
    labels: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with `fraction` of the samples held out, stratified by label."""
    return _sklearn_split(labels, np.arange(len(labels)), fraction, seed, what)


def _stratified_three_way(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, val, test) indices covering all samples, val and test as fractions of the whole."""
    rest, test = _sklearn_split(labels, np.arange(len(labels)), test_fraction, seed, what)
    # val_fraction is of the whole, so it is a larger share of what is left after the test split.
    train, val = _sklearn_split(labels, rest, val_fraction / (1 - test_fraction), seed, what)
    return train, val, test


def _stratified_subset(labels: np.ndarray, size: int, seed: int, what: str) -> np.ndarray:
    """Indices of a stratified subset of `size` samples."""
    return _sklearn_split(labels, np.arange(len(labels)), size, seed, what)[1]


def _to_tensor_splits(
    info: DatasetInfo, train: _Arrays, val: _Arrays, test: _Arrays, pixel_max: float
) -> TensorSplits:
    """Scale pixels to [0, 1] and normalise every split with the train split's per-channel statistics."""
    train_x = _to_unit_float(train.x, pixel_max)
    # var_mean reduces without a float64 copy of the whole train set (over 1 GB for CIFAR or SVHN).
    var, mean = torch.var_mean(train_x, dim=(0, 2, 3))
    # A constant channel (a border pixel that is always 0) must not divide by zero.
    std = var.sqrt().clamp_min(1e-6)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))

    return TensorSplits(
        info=info,
        train_x=normalise(train_x),
        train_y=torch.from_numpy(train.y.astype(np.int64)),
        val_x=normalise(_to_unit_float(val.x, pixel_max)),
        val_y=torch.from_numpy(val.y.astype(np.int64)),
        test_x=normalise(_to_unit_float(test.x, pixel_max)),
        test_y=torch.from_numpy(test.y.astype(np.int64)),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def _to_unit_float(x: np.ndarray, pixel_max: float) -> torch.Tensor:
    # astype copies, so read-only arrays straight from a file buffer are fine here.
    return torch.from_numpy(x.astype(np.float32)).div_(pixel_max)


# ---------------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------------


def _default_crop_padding(height: int, width: int) -> int:
    """An eighth of the shorter side (4 px at 32 px, like CIFAR), at least 1 so that small images shift."""
    return max(1, min(height, width) // 8)


def _with_augmentation(info: DatasetInfo, augment: str) -> DatasetInfo:
    """`info` with the crop and flip that `augment` (an entry of `AUGMENTATIONS`) asks for."""
    if augment == "auto":
        return info
    if augment == "none":
        return dataclasses.replace(info, crop_padding=0, horizontal_flip=False)
    padding = info.crop_padding or _default_crop_padding(*info.input_shape[1:])
    return dataclasses.replace(info, crop_padding=padding, horizontal_flip=augment == "crop+flip")


def _crop_at(
    images: torch.Tensor, offsets: torch.Tensor, padding: int, background: Sequence[float] | None = None
) -> torch.Tensor:
    """Each image cropped back to its size at (row, column) `offsets[:, i]` of its padded version."""
    batch, channels, height, width = images.shape
    device = images.device
    if background is None:
        padded = F.pad(images, (padding, padding, padding, padding))
    else:
        fill = torch.tensor(background, dtype=images.dtype, device=device).view(1, channels, 1, 1)
        padded = fill.expand(batch, channels, height + 2 * padding, width + 2 * padding).clone()
        padded[:, :, padding:padding + height, padding:padding + width] = images
    rows = offsets[0][:, None] + torch.arange(height, device=device)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(width, device=device)  # (B, W)
    # Broadcast advanced indices (B,1,1,1), (1,C,1,1), (B,1,H,1), (B,1,1,W) gather (B, C, H, W) at once.
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


# ---------------------------------------------------------------------------------------------------------
# digits (embedded in scikit-learn)
# ---------------------------------------------------------------------------------------------------------

# ±1 px shifts: the teacher needs them to generalise from 1,077 images (it memorises them otherwise).
_DIGITS_INFO = DatasetInfo("digits", (1, 8, 8), 10, crop_padding=1, horizontal_flip=False, student_augment=False)


def _read_digits() -> _Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are the integers 0..16, so uint8 holds them exactly like the other datasets' pixels.
    images = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    return _Arrays(images, bunch.target.astype(np.int64))


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
    read: Callable[[Sequence[Path], DatasetInfo], _Arrays]
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


_FILE_DATASETS: dict[str, _FileDataset] = {
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


def _load_file_dataset(key: str, data_dir: str | None, download: bool) -> tuple[_Arrays, _Arrays]:
    """The official (train, test) parts of a file dataset, downloading them first if asked and missing."""
    spec = _FILE_DATASETS[key]
    if data_dir is None:
        how = "" if download else " (add --download to fetch them)"
        raise DatasetError(f"dataset '{key}' is read from files: pass --data-dir DIR{how}")
    root = Path(data_dir).expanduser()
    if _missing_files(spec, root) and download:
        _download(key, spec, root)
    missing = _missing_files(spec, root)
    if missing:
        raise DatasetError(
            f"dataset '{key}' not found under {root}: expected {', '.join(map(str, missing))}; "
            "pass --download to fetch it or put the files there"
        )
    train = spec.read([_locate(spec, root, name) for name in spec.train_files], spec.info)
    test = spec.read([_locate(spec, root, name) for name in spec.test_files], spec.info)
    return train, test


def _locate(spec: _FileDataset, root: Path, name: str) -> Path:
    """The path of one expected file: the plain one, else (idx only) its .gz; the plain one if neither."""
    plain = root / spec.folder / name
    gz = plain.with_name(name + ".gz")
    return gz if spec.gzip_ok and not plain.is_file() and gz.is_file() else plain


def _missing_files(spec: _FileDataset, root: Path) -> list[Path]:
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


def _check_parts(where: Path | str, arrays: _Arrays, info: DatasetInfo) -> _Arrays:
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


def _read_idx_pair(images_path: Path, labels_path: Path, info: DatasetInfo) -> _Arrays:
    images = _read_idx(images_path, ndim=3)[:, None]  # add the channel axis
    labels = _read_idx(labels_path, ndim=1).astype(np.int64)
    return _check_parts(f"{images_path} or {labels_path}", _Arrays(images, labels), info)


# --- CIFAR python pickles -------------------------------------------------------------------------------


def _read_cifar_batches(paths: Sequence[Path], label_key: bytes, info: DatasetInfo) -> _Arrays:
    parts = [_read_cifar_batch(path, label_key, info) for path in paths]
    return _Arrays(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def _read_cifar_batch(path: Path, label_key: bytes, info: DatasetInfo) -> _Arrays:
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
    return _check_parts(path, _Arrays(images, _labels(batch[label_key], path)), info)


# --- SVHN MATLAB files ----------------------------------------------------------------------------------


def _read_svhn_mat(path: Path, info: DatasetInfo) -> _Arrays:
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
    return _check_parts(path, _Arrays(images, labels), info)


# ---------------------------------------------------------------------------------------------------------
# imagefolder: one sub-folder of images per class
# ---------------------------------------------------------------------------------------------------------


def _read_image_folder(data_dir: str | None, image_size: int | None) -> tuple[DatasetInfo, _Arrays]:
    """Every image under `data_dir/<class>/` as uint8 (N, C, H, W), classes in sorted folder order.

    C is 1 when every image is greyscale (Pillow modes "1", "L", "LA", "I", "I;16", "F"; alpha is
    dropped) and 3 otherwise, greyscale images then repeated into RGB. H x W is the images' own size when
    they share one; when sizes differ every image is resized (bilinear, aspect ratio not kept) to the most
    common size, ties going to the larger. `image_size` resizes every image to that square size instead.
    Augmentation: crop (size // 8, at least 1), plus horizontal flips in colour only (greyscale folders are
    often characters or scans, which a mirror image turns into another class).
    """
    if data_dir is None:
        raise DatasetError("dataset 'imagefolder' reads a folder of class sub-folders: pass --data-dir DIR")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"image folder {root} does not exist: pass --data-dir a folder of class sub-folders"
        )
    classes = _image_files_by_class(root)
    if len(classes) < 2:
        found = f"only one class ({next(iter(classes))})" if classes else "no class sub-folder with images"
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DatasetError(
            f"image folder {root} has {found}: put each class's images ({extensions}) "
            "in its own sub-folder, at least two classes"
        )
    size = None if image_size is None else (image_size, image_size)
    pixels, labels = [], []
    for label, files in enumerate(classes.values()):
        # Each file is opened once: its mode and size are only looked at after it is decoded.
        pixels.extend(_read_image(path, size) for path in files)
        labels.extend([label] * len(files))
    images = _stack_images(pixels)
    channels, height, width = images.shape[1:]
    info = DatasetInfo(
        "imagefolder",
        (channels, height, width),
        len(classes),
        crop_padding=_default_crop_padding(height, width),
        horizontal_flip=channels == 3,
        class_names=tuple(classes),
    )
    return info, _Arrays(images, np.asarray(labels, dtype=np.int64))


def _image_files_by_class(root: Path) -> dict[str, list[Path]]:
    """Sorted class folder name -> its image files (searched recursively), skipping folders without any."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if _is_image_file(p))
        if files:
            classes[folder.name] = files
    return classes


def _is_image_file(path: Path) -> bool:
    # Hidden files include macOS "._x.png" resource forks, which are not images.
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 (H, W) if greyscale or (H, W, 3) RGB otherwise, resized to `size` (W, H) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            plain = _grey_or_rgb(image)
            if size is not None and plain.size != size:
                plain = plain.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(plain, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        raise DatasetError(
            f"cannot read image {path}: {type(error).__name__}; replace or remove the file"
        ) from None


# Pillow modes with one grey band ("LA" and "La" add alpha, which is dropped); "I;16" and kin by prefix.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


def _grey_or_rgb(image: PILImage) -> PILImage:
    """`image` decoded as 8-bit "L" if it has one grey band, else as "RGB" (palette, CMYK, alpha, ...)."""
    from PIL import Image

    mode = image.mode
    if mode.startswith("I"):
        # 16-bit greyscale (PNG) has levels up to 65535, which convert("L") would clip at 255 rather than scale.
        levels = np.asarray(image, dtype=np.float64) / 257
        return Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8))
    if mode in ("L", "RGB"):
        return image
    return image.convert("L" if mode in _GREY_MODES else "RGB")


def _stack_images(pixels: list[np.ndarray]) -> np.ndarray:
    """Images from `_read_image` as one uint8 (N, C, H, W): C = 1 if all are greyscale, H x W the common size."""
    height, width = _common_size([p.shape[:2] for p in pixels])
    channels = 3 if any(p.ndim == 3 for p in pixels) else 1
    # Filled in place: np.stack of 10,000 images plus a transposed copy would hold them three times.
    images = np.empty((len(pixels), channels, height, width), dtype=np.uint8)
    for i, image in enumerate(pixels):
        if image.shape[:2] != (height, width):
            image = _resize(image, height, width)
        # A (H, W) greyscale image broadcasts into all three channels of a colour folder.
        images[i] = image.transpose(2, 0, 1) if image.ndim == 3 else image
    return images


def _common_size(sizes: list[tuple[int, ...]]) -> tuple[int, int]:
    """The most common (H, W); among equally common ones the largest, so that no detail is thrown away."""
    counts = Counter(sizes)
    height, width = max(counts, key=lambda hw: (counts[hw], hw[0] * hw[1], hw))
    return height, width


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
