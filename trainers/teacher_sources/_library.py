"""``--teacher torchvision:NAME`` and ``--teacher timm:NAME``: a library architecture, with the user's weights.

The classifier head is built for the dataset's classes, and the first convolution takes the channels the
user's state_dict has for it, so a model finetuned on this dataset loads exactly. Nothing is downloaded:
a weights entry is read for its declared preprocessing only (``--teacher-preprocessing library``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from trainers.teacher_sources._common import TeacherCheckpointError, first_line
from trainers.teacher_sources._fit import set_input_channels

LIBRARIES = ("torchvision", "timm")
TIMM_MISSING = "timm is not installed; run 'pip install -e \".[timm]\"' (or 'pip install timm')"


@dataclass(frozen=True)
class LibraryRecipe:
    """Builds the same library model again (in a Ray worker); its weights travel beside it."""

    carries_weights: ClassVar[bool] = False
    library: str
    name: str
    num_classes: int
    in_channels: int | None = None  # None: the library's own first convolution

    def build(self) -> nn.Module:
        model = build_library_model(self.library, self.name, self.num_classes)
        if self.in_channels is not None:
            set_input_channels(model, self.in_channels)
        return model


def build_library_model(library: str, name: str, num_classes: int) -> nn.Module:
    """``library``'s model ``name`` with a ``num_classes`` head and random weights."""
    if library == "torchvision":
        from torchvision import models

        known = models.list_models()
        if name not in known:
            raise TeacherCheckpointError(f"--teacher torchvision:{name}: torchvision has no model {name!r}"
                                         f"{_did_you_mean(name, known)}; see torchvision.models.list_models()")
        try:
            return models.get_model(name, weights=None, num_classes=num_classes)
        except Exception as error:  # noqa: BLE001 - a builder's own refusal, said in one line
            raise TeacherCheckpointError(f"--teacher torchvision:{name} cannot be built with {num_classes} classes "
                                         f"({first_line(error)})") from None
    try:
        import timm
    except ImportError:
        raise TeacherCheckpointError(f"--teacher timm:{name}: {TIMM_MISSING}") from None
    if not timm.is_model(name):
        raise TeacherCheckpointError(f"--teacher timm:{name}: timm has no model {name!r}"
                                     f"{_did_you_mean(name, timm.list_models())}; see timm.list_models()")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def library_preprocessing(library: str, name: str, model: nn.Module
                          ) -> tuple[int | None, tuple[float, ...] | None, tuple[float, ...] | None]:
    """The input size, mean and std that the library declares for ``name``'s default weights (no download)."""
    if library == "torchvision":
        from torchvision.models import get_model_weights

        try:
            transforms = get_model_weights(name).DEFAULT.transforms()
        except (ValueError, KeyError, AttributeError, TypeError):
            return None, None, None
        crop = getattr(transforms, "crop_size", None)
        size = int(crop[0]) if crop else None
        return size, _floats(getattr(transforms, "mean", None)), _floats(getattr(transforms, "std", None))
    config = getattr(model, "pretrained_cfg", None) or {}
    input_size = config.get("input_size")
    return (int(input_size[-1]) if input_size else None, _floats(config.get("mean")), _floats(config.get("std")))


def _floats(values: object) -> tuple[float, ...] | None:
    return tuple(float(value) for value in values) if isinstance(values, list | tuple) else None


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
