"""What every part of the data package shares: the error type, the names and `DatasetInfo`."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "kmnist",
    "cifar10",
    "cifar100",
    "svhn",
    "imagefolder",
    "csv",
)

# "auto" is the dataset's own recipe; the others override it (see `load_dataset`).
AUGMENTATIONS: tuple[str, ...] = ("auto", "none", "crop", "crop+flip")

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})

# The datasets a user lays out on disk (their images are decoded with Pillow); the others are read from the
# files torchvision downloads, or embedded.
USER_DATASETS: frozenset[str] = frozenset({"imagefolder", "csv"})


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
    # Only a user's own layout has names worth keeping; elsewhere the label index is the class.
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


def canonical_name(name: str) -> str:
    """The entry of `DATASETS` that `name` means (case-insensitive, "_" for "-"), or `DatasetError`."""
    key = name.strip().lower().replace("_", "-")
    if key in DATASETS:
        return key
    close = difflib.get_close_matches(key, DATASETS, n=1, cutoff=0.3)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DatasetError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}{hint}")


def check_augment(augment: str) -> str:
    """The entry of `AUGMENTATIONS` that `augment` means (case-insensitive), or `DatasetError`."""
    key = augment.strip().lower()
    if key in AUGMENTATIONS:
        return key
    close = difflib.get_close_matches(key, AUGMENTATIONS, n=1, cutoff=0.3)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DatasetError(f"unknown augment '{augment}': choose one of {', '.join(AUGMENTATIONS)}{hint}")


def default_crop_padding(height: int, width: int) -> int:
    """An eighth of the shorter side (4 px at 32 px, like CIFAR), at least 1 so that small images shift."""
    return max(1, min(height, width) // 8)


def with_augmentation(info: DatasetInfo, augment: str) -> DatasetInfo:
    """`info` with the crop and flip that `augment` (an entry of `AUGMENTATIONS`) asks for."""
    if augment == "auto":
        return info
    if augment == "none":
        return dataclasses.replace(info, crop_padding=0, horizontal_flip=False)
    padding = info.crop_padding or default_crop_padding(*info.input_shape[1:])
    return dataclasses.replace(info, crop_padding=padding, horizontal_flip=augment == "crop+flip")
