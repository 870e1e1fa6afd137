"""Tests for trainers.data: each dataset is written in its real on-disk format under tmp_path."""

from __future__ import annotations

import csv
import gzip
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from trainers.data import (
    AUGMENTATIONS,
    DATASETS,
    DatasetError,
    DatasetInfo,
    TensorSplits,
    _builtin,
    augment_batch,
    canonical_name,
    fingerprint,
    load_dataset,
)
from trainers.data._decode import common_shape
from trainers.data._info import with_augmentation
from trainers.data._splits import stratified_three_way
from trainers.data._transforms import _crop_at

REPO_ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(0)

# Tiny official splits: 6 train and 2 test images per class, enough for a stratified 20% validation split.
TRAIN_PER_CLASS = 6
TEST_PER_CLASS = 2


def balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    """Labels 0..num_classes-1, each `per_class` times, interleaved like a shuffled real file."""
    return np.tile(np.arange(num_classes), per_class)


# ---------------------------------------------------------------------------------------------------------
# Writers for the real file formats
# ---------------------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file: two zero bytes, 0x08 (unsigned byte), ndim, big-endian uint32 sizes, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, *, compressed: bool = False) -> None:
    """MNIST-style files (1x28x28 images, 10 classes) in `folder`, plain or as .gz."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, per_class in (("train", TRAIN_PER_CLASS), ("t10k", TEST_PER_CLASS)):
        labels = balanced_labels(10, per_class)
        images = RNG.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            if compressed:
                (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
            else:
                (folder / name).write_bytes(idx_bytes(array))


def cifar_batch(num_classes: int, per_class: int, label_key: bytes) -> dict[bytes, object]:
    labels = balanced_labels(num_classes, per_class)
    images = RNG.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return {b"data": images, label_key: labels.tolist(), b"batch_label": b"synthetic"}


def write_pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    # Five batches of two images per class, like the real five batches of 10000 images.
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", cifar_batch(10, 2, b"labels"))
    write_pickle(folder / "test_batch", cifar_batch(10, TEST_PER_CLASS, b"labels"))


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    # 5 per class so that a 20% validation split still holds one image of each of the 100 classes.
    write_pickle(folder / "train", cifar_batch(100, 5, b"fine_labels"))
    write_pickle(folder / "test", cifar_batch(100, 1, b"fine_labels"))


def write_svhn(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        digits = balanced_labels(10, per_class)
        images = RNG.integers(0, 256, size=(32, 32, 3, len(digits)), dtype=np.uint8)
        # SVHN stores the digit 0 as label 10.
        labels = np.where(digits == 0, 10, digits).reshape(-1, 1)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": images, "y": labels})


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "fox"),
    per_class: int = 10,
    *,
    shape: tuple[int, ...] = (12, 10, 3),
    suffix: str = ".png",
    dtype: type = np.uint8,
) -> None:
    """`per_class` random images of numpy `shape` ((H, W) greyscale, (H, W, 3) colour) per class folder."""
    high = np.iinfo(dtype).max + 1
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = RNG.integers(0, high, size=shape, dtype=dtype)
            Image.fromarray(pixels).save(root / name / f"{shape}-{i}{suffix}")


def write_manifest(root: Path, per_class: int = 10, shape: tuple[int, ...] = (16, 16),
                   splits: tuple[str, ...] = ()) -> Path:
    """An image folder under ``root/images`` and ``root/manifest.csv`` listing it (paths relative to the
    manifest, labels the class names, and a ``split`` column cycling through ``splits`` when given)."""
    write_image_folder(root / "images", per_class=per_class, shape=shape)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", *(["split"] if splits else [])])
        for index, path in enumerate(sorted((root / "images").rglob("*.png"))):
            split = [splits[index % len(splits)]] if splits else []
            writer.writerow([path.relative_to(root).as_posix(), path.parent.name, *split])
    return manifest


# ---------------------------------------------------------------------------------------------------------
# digits: the embedded default
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> TensorSplits:
    return load_dataset("digits")


def test_digits_shapes_and_info(digits: TensorSplits) -> None:
    assert digits.info == DatasetInfo(
        "digits", (1, 8, 8), 10, crop_padding=1, horizontal_flip=False, student_augment=False
    )
    assert digits.info.augmentation == "crop"
    sizes = digits.sizes()
    assert sum(sizes.values()) == 1797
    for split in ("train", "val", "test"):
        x, y = getattr(digits, f"{split}_x"), getattr(digits, f"{split}_y")
        assert x.shape == (sizes[split], 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (sizes[split],) and y.dtype == torch.int64


def test_digits_class_counts_sum_to_sizes(digits: TensorSplits) -> None:
    counts = digits.class_counts()
    assert {split: sum(per_class) for split, per_class in counts.items()} == digits.sizes()
    assert all(len(per_class) == 10 for per_class in counts.values())


def test_digits_split_is_stratified(digits: TensorSplits) -> None:
    counts = digits.class_counts()
    totals = np.sum([counts[split] for split in counts], axis=0)
    for split, fraction in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        expected = fraction * totals
        assert np.all(np.abs(np.asarray(counts[split]) - expected) <= 2), (split, counts[split], expected)


def test_three_way_split_is_disjoint_and_complete() -> None:
    labels = balanced_labels(10, 30)
    train, val, test = stratified_three_way(labels, 0.2, 0.2, seed=0, what="test")
    assert len(set(train) | set(val) | set(test)) == len(labels) == len(train) + len(val) + len(test)
    assert (len(val), len(test)) == (60, 60)


def test_digits_split_depends_only_on_seed(digits: TensorSplits) -> None:
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(digits.train_x[:], again.train_x[:]) and torch.equal(digits.test_y, again.test_y)
    assert not torch.equal(digits.train_x[:], other.train_x[:])


def test_digits_normalised_with_train_statistics(digits: TensorSplits) -> None:
    assert abs(digits.train_x[:].mean().item()) < 1e-4
    assert digits.train_x[:].std().item() == pytest.approx(1.0, abs=1e-3)
    assert len(digits.mean) == len(digits.std) == 1
    # The other splits use the train statistics, so they are only close to standard.
    assert abs(digits.test_x[:].mean().item()) < 0.1


def test_max_train_samples_keeps_a_stratified_subset() -> None:
    small = load_dataset("digits", max_train_samples=100)
    assert small.sizes()["train"] == 100
    assert min(small.class_counts()["train"]) >= 9
    assert small.sizes()["test"] == load_dataset("digits").sizes()["test"]


def test_to_returns_a_moved_copy(digits: TensorSplits) -> None:
    moved = digits.to("cpu")
    assert moved is not digits and moved.info == digits.info
    assert torch.equal(moved.val_x[:], digits.val_x[:])


def test_names_are_case_and_underscore_insensitive() -> None:
    assert canonical_name("Fashion_MNIST") == "fashion-mnist"
    assert canonical_name(" CIFAR10 ") == "cifar10"
    assert set(map(canonical_name, DATASETS)) == set(DATASETS)


# ---------------------------------------------------------------------------------------------------------
# File datasets in their real formats
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder", "compressed"),
    [
        ("mnist", "MNIST/raw", False),
        ("mnist", "MNIST/raw", True),
        ("fashion_mnist", "FashionMNIST/raw", False),
        ("KMNIST", "KMNIST/raw", True),
    ],
)
def test_idx_datasets(tmp_path: Path, name: str, folder: str, compressed: bool) -> None:
    write_idx_dataset(tmp_path / folder, compressed=compressed)
    splits = load_dataset(name, str(tmp_path))
    assert splits.info.input_shape == (1, 28, 28) and splits.info.num_classes == 10
    assert (splits.info.crop_padding, splits.info.horizontal_flip) == (2, False)
    # The official test set is the test split; validation is 20% of the official train set.
    assert splits.sizes() == {"train": 48, "val": 12, "test": 20}
    assert splits.train_x[:].shape == (48, 1, 28, 28)
    assert splits.class_counts()["test"] == [TEST_PER_CLASS] * 10


def test_cifar10(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    splits = load_dataset("cifar10", str(tmp_path))
    assert splits.info == DatasetInfo("cifar10", (3, 32, 32), 10, crop_padding=4, horizontal_flip=True)
    assert splits.sizes() == {"train": 80, "val": 20, "test": 20}
    assert splits.train_x[:].shape == (80, 3, 32, 32) and len(splits.mean) == 3
    assert sorted(splits.test_y.unique().tolist()) == list(range(10))


def test_cifar_pixels_are_read_channel_first(tmp_path: Path) -> None:
    batch = cifar_batch(10, 2, b"labels")
    # Red plane all 0, green all 100, blue all 200: channel means must come out in that order.
    batch[b"data"] = np.repeat(np.array([0, 100, 200], dtype=np.uint8), 1024)[None].repeat(20, axis=0)
    for i in range(1, 6):
        write_pickle(tmp_path / "cifar-10-batches-py" / f"data_batch_{i}", batch)
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    splits = load_dataset("cifar10", str(tmp_path))
    assert splits.mean == pytest.approx((0.0, 100 / 255, 200 / 255), abs=1e-6)


def test_cifar100(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    splits = load_dataset("cifar100", str(tmp_path))
    assert splits.info.num_classes == 100 and splits.info.input_shape == (3, 32, 32)
    assert splits.sizes() == {"train": 400, "val": 100, "test": 100}
    assert splits.class_counts()["val"] == [1] * 100


def test_svhn_maps_label_10_to_digit_0(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    splits = load_dataset("svhn", str(tmp_path))
    assert (splits.info.crop_padding, splits.info.horizontal_flip) == (4, False)
    assert splits.sizes() == {"train": 48, "val": 12, "test": 20}
    assert sorted(splits.test_y.unique().tolist()) == list(range(10))
    assert splits.train_x[:].shape[1:] == (3, 32, 32)


def test_image_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    splits = load_dataset("imagefolder", str(tmp_path), image_size=16)
    assert splits.info.input_shape == (3, 16, 16) and splits.info.num_classes == 3
    assert splits.info.class_names == ("cat", "dog", "fox")
    assert (splits.info.crop_padding, splits.info.horizontal_flip) == (2, True)
    assert splits.sizes() == {"train": 18, "val": 6, "test": 6}
    assert all(min(counts) >= 1 for counts in splits.class_counts().values())


def test_image_folder_keeps_greyscale_and_size(tmp_path: Path) -> None:
    write_image_folder(tmp_path, shape=(28, 28))
    splits = load_dataset("imagefolder", str(tmp_path))
    assert splits.info.input_shape == (1, 28, 28) and splits.train_x[:].shape[1:] == (1, 28, 28)
    assert len(splits.mean) == 1
    # Greyscale: crop by 28 // 8 = 3 px, no mirror images (characters and scans are not symmetric).
    assert (splits.info.augmentation, splits.info.crop_padding) == ("crop", 3)
    assert splits.info.student_augment


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_image_folder_keeps_colour_and_size(tmp_path: Path, suffix: str) -> None:
    write_image_folder(tmp_path, shape=(12, 20, 3), suffix=suffix)
    splits = load_dataset("imagefolder", str(tmp_path))
    # Height 12, width 20: numpy's (H, W) order, not Pillow's (W, H).
    assert splits.info.input_shape == (3, 12, 20) and splits.val_x[:].shape[1:] == (3, 12, 20)
    assert (splits.info.augmentation, splits.info.crop_padding) == ("crop+flip", 1)


def test_image_folder_pixels_are_read_as_they_are(tmp_path: Path) -> None:
    for name, level in (("dark", 0), ("light", 200)):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("L", (6, 4), level).save(tmp_path / name / f"{i}.png")
    splits = load_dataset("imagefolder", str(tmp_path), val_fraction=0.2, test_fraction=0.2)
    assert splits.info.input_shape == (1, 4, 6)
    assert splits.mean == pytest.approx((100 / 255,), abs=1e-6)


def test_image_folder_with_one_colour_image_is_colour(tmp_path: Path) -> None:
    write_image_folder(tmp_path, shape=(8, 8))
    Image.fromarray(RNG.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(tmp_path / "cat" / "rgb.png")
    Image.new("LA", (8, 8), (90, 10)).save(tmp_path / "dog" / "alpha.png")
    splits = load_dataset("imagefolder", str(tmp_path))
    assert splits.info.input_shape == (3, 8, 8)
    # Greyscale images are repeated into the three channels, so most images have equal channels.
    x = torch.cat([splits.train_x[:], splits.val_x[:], splits.test_x[:]])
    raw = x * torch.tensor(splits.std).view(1, 3, 1, 1) + torch.tensor(splits.mean).view(1, 3, 1, 1)
    equal = [torch.allclose(image, image[:1].expand_as(image), atol=1e-5) for image in raw]
    assert sum(equal) == len(x) - 1


def test_one_band_modes_with_or_without_alpha_stay_greyscale(tmp_path: Path) -> None:
    for name, level in (("a", 10), ("b", 240)):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("LA", (5, 5), (level, 128)).save(tmp_path / name / f"{i}.png")
        Image.new("1", (5, 5), 1).save(tmp_path / name / "bilevel.png")
        Image.new("L", (5, 5), level).save(tmp_path / name / "plain.jpg")
    assert load_dataset("imagefolder", str(tmp_path)).info.input_shape == (1, 5, 5)


def test_palette_images_are_colour(tmp_path: Path) -> None:
    write_image_folder(tmp_path, shape=(6, 6))
    Image.new("RGB", (6, 6), (200, 20, 20)).convert("P").save(tmp_path / "fox" / "red.gif")
    assert load_dataset("imagefolder", str(tmp_path)).info.input_shape == (3, 6, 6)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    for name, level in (("dark", 0), ("mid", 128 * 257)):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(np.full((4, 4), level, dtype=np.uint16)).save(tmp_path / name / f"{i}.png")
    splits = load_dataset("imagefolder", str(tmp_path))
    assert splits.info.input_shape == (1, 4, 4)
    # Half the images at 0 and half at mid-grey: the 16-bit level 32896 is 8-bit 128, not clipped to 255.
    assert splits.mean == pytest.approx((64 / 255,), abs=1e-6)


def test_image_folder_of_mixed_sizes_takes_the_most_common(tmp_path: Path) -> None:
    write_image_folder(tmp_path, shape=(10, 14), per_class=6)
    write_image_folder(tmp_path, shape=(20, 20), per_class=2)
    splits = load_dataset("imagefolder", str(tmp_path))
    assert splits.info.input_shape == (1, 10, 14)
    assert sum(splits.sizes().values()) == 24


def test_equally_common_sizes_go_to_the_larger() -> None:
    probes = [(True, width, height) for height, width in [(4, 4), (8, 6), (4, 4), (8, 6), (2, 2)]]
    assert common_shape(probes, None) == (1, 8, 6)


def test_image_size_resizes_to_a_square(tmp_path: Path) -> None:
    write_image_folder(tmp_path, shape=(28, 28), per_class=5)
    write_image_folder(tmp_path, shape=(12, 20, 3), per_class=5)
    splits = load_dataset("imagefolder", str(tmp_path), image_size=7)
    assert splits.info.input_shape == (3, 7, 7) and splits.test_x[:].shape[1:] == (3, 7, 7)
    assert (splits.info.augmentation, splits.info.crop_padding) == ("crop+flip", 1)


def test_image_size_only_applies_to_image_folders() -> None:
    message = error_of("digits", image_size=16)
    assert "only to imagefolder" in message and "leave image_size out" in message


def test_image_size_below_one(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    assert "image_size must be at least 1" in error_of("imagefolder", tmp_path, image_size=0)


# ---------------------------------------------------------------------------------------------------------
# The augment choice
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("augment", "crop_padding", "flip"),
    [("auto", 4, False), ("none", 0, False), ("crop", 4, False), ("crop+flip", 4, True), (" Crop+Flip ", 4, True)],
)
def test_augment_choices_on_svhn(tmp_path: Path, augment: str, crop_padding: int, flip: bool) -> None:
    write_svhn(tmp_path)
    info = load_dataset("svhn", str(tmp_path), augment=augment).info
    assert (info.crop_padding, info.horizontal_flip) == (crop_padding, flip)
    assert info.student_augment


@pytest.mark.parametrize(
    ("augment", "augmentation", "crop_padding"),
    [("auto", "crop", 1), ("none", "none", 0), ("crop", "crop", 1), ("crop+flip", "crop+flip", 1)],
)
def test_augment_choices_on_digits(augment: str, augmentation: str, crop_padding: int) -> None:
    info = load_dataset("digits", max_train_samples=100, augment=augment).info
    assert (info.augmentation, info.crop_padding) == (augmentation, crop_padding)
    # Whether students augment stays the dataset's default whatever the recipe.
    assert not info.student_augment


def test_augment_choices_on_cifar10(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    infos = {augment: load_dataset("cifar10", str(tmp_path), augment=augment).info for augment in AUGMENTATIONS}
    assert {augment: info.augmentation for augment, info in infos.items()} == {
        "auto": "crop+flip", "none": "none", "crop": "crop", "crop+flip": "crop+flip"
    }
    assert infos["crop"].crop_padding == infos["auto"].crop_padding == 4


def test_crop_without_a_recipe_pads_an_eighth(tmp_path: Path) -> None:
    write_image_folder(tmp_path, shape=(24, 40, 3))
    splits = load_dataset("imagefolder", str(tmp_path), augment="none")
    assert (splits.info.crop_padding, splits.info.horizontal_flip) == (0, False)
    assert not splits.info.augmented
    # The recipe's own padding: an eighth of the shorter side.
    assert load_dataset("imagefolder", str(tmp_path), augment="crop").info.crop_padding == 3
    assert with_augmentation(splits.info, "crop").crop_padding == 3
    assert with_augmentation(splits.info, "crop+flip").augmentation == "crop+flip"


def test_unknown_augment_names_the_choices() -> None:
    message = error_of("digits", augment="flip")
    assert "unknown augment 'flip'" in message and "auto, none, crop, crop+flip" in message
    assert "did you mean 'crop+flip'" in message


def test_download_is_skipped_when_files_are_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    monkeypatch.setattr(_builtin, "_download", lambda *args: pytest.fail("downloaded although files exist"))
    assert load_dataset("mnist", str(tmp_path), download=True).sizes()["test"] == 20


def test_download_failure_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    class Offline:
        def __init__(self, **kwargs: object) -> None:
            raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DatasetError) as caught:
        load_dataset("cifar10", str(tmp_path), download=True)
    message = str(caught.value)
    assert "could not download cifar10" in message and "network is unreachable" in message
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in message
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------------------
# Errors: one line naming the problem and the fix
# ---------------------------------------------------------------------------------------------------------


def error_of(name: str, data_dir: Path | None = None, **kwargs: object) -> str:
    with pytest.raises(DatasetError) as caught:
        load_dataset(name, None if data_dir is None else str(data_dir), **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_name_suggests_the_closest() -> None:
    message = error_of("cifar")
    assert "did you mean 'cifar10'" in message and "imagefolder" in message


def test_missing_files_name_the_expected_path(tmp_path: Path) -> None:
    message = error_of("cifar10", tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in message and "--download" in message


def test_missing_data_dir() -> None:
    assert "--data-dir" in error_of("mnist")
    assert "--data-dir" in error_of("imagefolder")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x08\x03\x00\x00" + bytes(100), "bad magic"),
        (idx_bytes(np.zeros((60, 28, 28), dtype=np.uint8))[:-10], "header says"),
    ],
    ids=["bad-magic", "truncated"],
)
def test_corrupt_idx_file_is_named(tmp_path: Path, content: bytes, why: str) -> None:
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(content)
    message = error_of("mnist", tmp_path)
    assert str(bad) in message and why in message


def test_corrupt_gzip_file_is_named(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "MNIST" / "raw", compressed=True)
    bad = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"not gzip at all")
    assert str(bad) in error_of("mnist", tmp_path)


def test_corrupt_cifar_pickle_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(pickle.dumps(cifar_batch(10, 2, b"labels"))[:50])
    assert str(bad) in error_of("cifar10", tmp_path)


@pytest.mark.parametrize(
    ("labels", "why"),
    [([0, 1], "20 images but 2 labels"), (["a"] * 20, "not integers"), ([10] * 20, "labels outside 0..9")],
    ids=["too-few", "not-integers", "out-of-range"],
)
def test_cifar_batch_with_bad_labels_is_named(tmp_path: Path, labels: list[object], why: str) -> None:
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(bad, {**cifar_batch(10, 2, b"labels"), b"labels": labels})
    message = error_of("cifar10", tmp_path)
    assert str(bad) in message and why in message


def test_image_folder_missing(tmp_path: Path) -> None:
    assert "does not exist" in error_of("imagefolder", tmp_path / "nowhere")


def test_image_folder_without_classes(tmp_path: Path) -> None:
    (tmp_path / "empty-class").mkdir()
    (tmp_path / "loose.png").write_bytes(b"")
    assert "no class sub-folder with images" in error_of("imagefolder", tmp_path)


def test_image_folder_with_one_class(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=("only",))
    assert "only one class (only)" in error_of("imagefolder", tmp_path)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    bad = tmp_path / "dog" / "x.PNG"
    bad.write_bytes(b"this is not a png")
    assert str(bad) in error_of("imagefolder", tmp_path)


def test_too_few_samples_per_class_to_stratify(tmp_path: Path) -> None:
    write_image_folder(tmp_path, per_class=2)
    assert "cannot split imagefolder" in error_of("imagefolder", tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [{"val_fraction": 0.0}, {"test_fraction": 1.0}, {"val_fraction": 0.5, "test_fraction": 0.5}],
)
def test_bad_fractions(kwargs: dict[str, float]) -> None:
    assert "fraction" in error_of("digits", **kwargs)


# ---------------------------------------------------------------------------------------------------------
# augment_batch
# ---------------------------------------------------------------------------------------------------------

CROP_ONLY = DatasetInfo("t", (1, 6, 6), 2, crop_padding=2, horizontal_flip=False)
FLIP_ONLY = DatasetInfo("t", (1, 6, 6), 2, crop_padding=0, horizontal_flip=True)
BOTH = DatasetInfo("t", (1, 6, 6), 2, crop_padding=2, horizontal_flip=True)


def distinct_images(batch: int = 64) -> torch.Tensor:
    """Images whose every pixel differs (1..36), so any shift or flip is visible."""
    return torch.arange(1, 37, dtype=torch.float32).view(1, 1, 6, 6).repeat(batch, 1, 1, 1)


def shifted(image: torch.Tensor, dy: int, dx: int, padding: int, fill: float = 0.0) -> torch.Tensor:
    """The crop at offset (dy, dx) of the image padded with `fill`, by plain slicing (independent of the module)."""
    padded = torch.nn.functional.pad(image, (padding,) * 4, value=fill)
    return padded[..., dy : dy + image.shape[-2], dx : dx + image.shape[-1]]


def test_augment_preserves_shape_and_input() -> None:
    images = distinct_images()
    out = augment_batch(images, BOTH, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(images, distinct_images())


def test_augment_is_deterministic_with_a_seeded_generator() -> None:
    images = distinct_images()
    first = augment_batch(images, BOTH, torch.Generator().manual_seed(3))
    second = augment_batch(images, BOTH, torch.Generator().manual_seed(3))
    other = augment_batch(images, BOTH, torch.Generator().manual_seed(4))
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_flip_flips_about_half() -> None:
    images = distinct_images()
    out = augment_batch(images, FLIP_ONLY, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    assert torch.all(flipped ^ kept)
    assert 10 < int(flipped.sum()) < 54


def test_crop_shifts_content_within_the_padding() -> None:
    images = distinct_images()
    out = augment_batch(images, CROP_ONLY, torch.Generator().manual_seed(0))
    offsets = [(dy, dx) for dy in range(5) for dx in range(5)]
    used = set()
    for o, i in zip(out, images, strict=True):
        matches = [offset for offset in offsets if torch.equal(o, shifted(i, *offset, padding=2))]
        assert len(matches) == 1
        used.add(matches[0])
    # Offset (2, 2) is the unshifted image; 64 draws over 25 offsets hit many of them.
    assert len(used) > 10 and used != {(2, 2)}


def test_crop_pads_with_the_background_not_zero() -> None:
    images = distinct_images()
    out = augment_batch(images, CROP_ONLY, torch.Generator().manual_seed(0), background=(-7.0,))
    offsets = [(dy, dx) for dy in range(5) for dx in range(5)]
    for o, i in zip(out, images, strict=True):
        assert sum(torch.equal(o, shifted(i, *offset, padding=2, fill=-7.0)) for offset in offsets) == 1
    assert (out == -7.0).any() and not (out == 0).any()


def test_background_is_per_channel() -> None:
    images = torch.ones(32, 3, 6, 6)
    background = (-1.5, -2.5, -3.5)
    out = augment_batch(images, CROP_ONLY, torch.Generator().manual_seed(1), background=background)
    for channel, value in enumerate(background):
        assert set(out[:, channel].unique().tolist()) == {1.0, value}


def test_background_of_a_dataset_is_a_normalised_zero_pixel(tmp_path: Path) -> None:
    write_image_folder(tmp_path, shape=(8, 8, 3))
    splits = load_dataset("imagefolder", str(tmp_path))
    mean, std = torch.tensor(splits.mean), torch.tensor(splits.std)
    assert torch.allclose(torch.tensor(splits.background), (0 - mean) / std)
    assert all(value < 0 for value in splits.background)
    # Crop at the padded image's top-left corner: the first 2 rows and columns are all padding, which
    # must un-normalise to a black raw 0 pixel (zero padding would un-normalise to the mean instead).
    images = splits.train_x[:]
    corner = torch.zeros(2, len(images), dtype=torch.long)
    out = _crop_at(images, corner, padding=2, background=splits.background)
    raw = out * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    assert raw[:, :, :2, :].abs().max() < 1e-5 and raw[:, :, :, :2].abs().max() < 1e-5
    assert torch.equal(out[:, :, 2:, 2:], images[:, :, :-2, :-2])


def test_augment_is_a_no_op_without_augmentation() -> None:
    plain = load_dataset("digits", max_train_samples=100, augment="none")
    batch = plain.train_x[:16]
    assert augment_batch(batch, plain.info) is batch


# ---------------------------------------------------------------------------------------------------------
# fingerprint and layering
# ---------------------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_seed_sensitive(digits: TensorSplits) -> None:
    key = fingerprint(digits)
    assert len(key) == 16 and int(key, 16) >= 0
    assert fingerprint(load_dataset("digits")) == key
    assert fingerprint(load_dataset("digits", seed=1)) != key


def test_data_module_imports_neither_ray_nor_optuna() -> None:
    code = "import sys, trainers.data; sys.exit(bool({'ray', 'optuna'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_inference_batches_shrink_with_the_image_size() -> None:
    """Evaluation and teacher-output batches keep their size up to CIFAR's images and hold at most ~4M input
    values beyond, so activations on large images do not set a trial's peak memory."""
    from trainers.data import inference_batch_size

    assert inference_batch_size((1, 8, 8), 1024) == inference_batch_size((3, 32, 32), 1024) == 1024
    assert inference_batch_size((3, 32, 32), 512) == 512
    assert inference_batch_size((3, 64, 64), 1024) == 341
    assert inference_batch_size((3, 224, 224), 1024) == 64  # never fewer than 64
