"""Knowledge-distillation losses: soft-label KL (Hinton), attention transfer, FitNets hints.

The trial's objective combines them as
``(1 - alpha) * CE(student, y) + alpha * kd_loss(...) + beta * feature_loss`` (see docs/ARCHITECTURE.md).

Teacher tensors are treated as constants only if the caller makes them so (compute them under
``torch.no_grad()`` or cache them); these functions never detach, so they can be gradient-checked
with respect to every input.

Attention maps follow one convention throughout: :func:`attention_map` returns ``(N, H, W)`` maps whose
``H * W`` values have unit L2 norm per sample. Keeping the spatial shape (rather than flattening) lets
:func:`attention_loss` compute each student map directly at its teacher map's resolution, so teacher
maps can be computed once with :func:`teacher_attention_maps` and cached.

Feature losses are looked up by name in a small registry (:func:`register_feature_loss`,
:func:`get_feature_loss`): the distillation loop and the teacher's cache know no loss by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spaces import FEATURE_LOSSES

__all__ = [
    "FeatureLoss",
    "HintRegressor",
    "TeacherFeatures",
    "attention_loss",
    "attention_map",
    "feature_loss_names",
    "get_feature_loss",
    "hint_loss",
    "kd_loss",
    "register_feature_loss",
    "resize_spatial",
    "teacher_attention_maps",
]

# What a feature loss needs from the teacher for a batch: one tensor, or one per stage.
TeacherFeatures = Tensor | list[Tensor]
FeatureLossFn = Callable[[list[Tensor], TeacherFeatures, nn.Module | None], Tensor]


@dataclass(frozen=True)
class FeatureLoss:
    """A registered feature-matching term between student and teacher stage features.

    ``teacher_signal(stage_features)`` turns the teacher's stage features into what ``loss`` compares
    with (computed once per training image and cached, unless it exceeds ``max_cached_bytes``).
    ``loss(student_stage_features, teacher_signal, regressor)`` returns the term. ``regressor``, when
    given, builds a module trained together with the student from a probe batch's
    ``(student_stage_features, teacher_signal)``; ``loss`` then receives it.
    """

    name: str
    teacher_signal: Callable[[list[Tensor]], TeacherFeatures]
    loss: FeatureLossFn
    regressor: Callable[[list[Tensor], TeacherFeatures], nn.Module] | None = None
    max_cached_bytes: int | None = None


_FEATURE_LOSSES: dict[str, FeatureLoss] = {}


def register_feature_loss(name: str, *, teacher_signal: Callable[[list[Tensor]], TeacherFeatures],
                          regressor: Callable[[list[Tensor], TeacherFeatures], nn.Module] | None = None,
                          max_cached_bytes: int | None = None) -> Callable[[FeatureLossFn], FeatureLossFn]:
    """Register ``fn(student_stage_features, teacher_signal, regressor) -> loss`` as feature loss ``name``.

    ``name`` must be one of the ``feature_loss`` choices of ``spaces.PARAMETERS`` (the torch-free table the
    search space reads): add it there first.
    """
    if name == "none" or name not in FEATURE_LOSSES:
        raise ValueError(f"feature loss {name!r} is not a feature_loss choice of spaces.PARAMETERS "
                         f"({', '.join(FEATURE_LOSSES)}); add it there first")

    def decorator(loss: FeatureLossFn) -> FeatureLossFn:
        if name in _FEATURE_LOSSES:
            raise ValueError(f"feature loss {name!r} is already registered")
        _FEATURE_LOSSES[name] = FeatureLoss(name, teacher_signal, loss, regressor, max_cached_bytes)
        return loss

    return decorator


def get_feature_loss(name: str) -> FeatureLoss:
    """The registered feature loss ``name``; ``ValueError`` naming the registered ones otherwise."""
    if name not in _FEATURE_LOSSES:
        close = difflib.get_close_matches(name, list(_FEATURE_LOSSES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown feature loss {name!r}{hint}; registered: {', '.join(_FEATURE_LOSSES)}")
    return _FEATURE_LOSSES[name]


def feature_loss_names() -> tuple[str, ...]:
    """The registered feature losses, in registration order ("none", no feature term, is not one)."""
    return tuple(_FEATURE_LOSSES)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.'s soft-label loss: ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    Computed from log-probabilities on both sides (``log_target=True``), which stays finite where a
    softmax would underflow to zero; averaged over the batch (``reduction="batchmean"``), the true KL
    divergence per sample. The ``T^2`` factor keeps the gradient scale independent of the temperature.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: "
            f"{tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}"
        )
    student_log_probs = F.log_softmax(student_logits / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=1)
    divergence = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return temperature**2 * divergence


def resize_spatial(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(N, C, H, W)`` maps to ``size``: average pooling to shrink, bilinear to grow.

    Pooling keeps each output the mean of the region it covers (no aliasing when shrinking); bilinear
    interpolation is the smooth choice for growing. A mixed case (one side shrinks, the other grows)
    is interpolated.
    """
    height, width = maps.shape[-2:]
    target_height, target_width = size
    if (height, width) == (target_height, target_width):
        return maps
    if target_height <= height and target_width <= width:
        return F.adaptive_avg_pool2d(maps, size)
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def attention_map(features: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Zagoruyko & Komodakis's spatial attention of ``(N, C, H, W)`` features.

    The channel mean of ``features ** 2``, resized to ``size`` if given (see :func:`resize_spatial`),
    then L2-normalised over its ``H * W`` positions. Returns ``(N, H, W)`` (``size`` if given), each
    sample's map with unit L2 norm (an all-zero map stays zero).
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got shape {tuple(features.shape)}")
    energy = features.pow(2).mean(dim=1, keepdim=True)
    if size is not None:
        energy = resize_spatial(energy, size)
    batch, _, height, width = energy.shape
    normalised = F.normalize(energy.reshape(batch, height * width), p=2, dim=1)
    return normalised.reshape(batch, height, width)


def teacher_attention_maps(teacher_features: list[Tensor]) -> list[Tensor]:
    """Attention maps of the teacher's stage features, in the form :func:`attention_loss` expects.

    Compute them once (e.g. under ``torch.no_grad()``) and reuse them across epochs.
    """
    return [attention_map(features) for features in teacher_features]


def attention_loss(student_features: list[Tensor], teacher_maps: list[Tensor]) -> Tensor:
    """Attention transfer between the last stages of student and teacher.

    Pairs the last ``min(len(student_features), len(teacher_maps))`` entries of each list, counted from
    the end (deepest with deepest). ``teacher_maps`` are :func:`teacher_attention_maps` outputs,
    ``(N, H_t, W_t)``; each student map is computed at its teacher map's ``(H_t, W_t)``. A pair's loss is
    the batch mean of the squared L2 distance between the two normalised maps; the result is the mean
    over pairs.
    """
    pairs = min(len(student_features), len(teacher_maps))
    if pairs == 0:
        raise ValueError("attention_loss needs at least one student feature map and one teacher map")
    pair_losses = []
    for student_feature, teacher_map in zip(student_features[-pairs:], teacher_maps[-pairs:], strict=True):
        if teacher_map.dim() != 3 or teacher_map.shape[0] != student_feature.shape[0]:
            raise ValueError(
                f"teacher map of shape {tuple(teacher_map.shape)} does not fit student features of shape "
                f"{tuple(student_feature.shape)}: expected (N, H, W) with the same N"
            )
        student_map = attention_map(student_feature, size=(teacher_map.shape[1], teacher_map.shape[2]))
        squared_distance = (student_map - teacher_map).pow(2).flatten(1).sum(dim=1)
        pair_losses.append(squared_distance.mean())
    return torch.stack(pair_losses).mean()


class HintRegressor(nn.Module):
    """FitNets regressor: a 1x1 convolution from student to teacher channels, optionally batch-normed.

    Trained together with the student; it belongs to the distillation, not to the exported model.
    """

    def __init__(self, student_channels: int, teacher_channels: int, batch_norm: bool = False) -> None:
        super().__init__()
        # BN already has a shift, so the conv's bias would be redundant.
        self.conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=not batch_norm)
        self.norm: nn.Module = nn.BatchNorm2d(teacher_channels) if batch_norm else nn.Identity()

    def forward(self, student_feature: Tensor) -> Tensor:
        """Map ``(N, student_channels, H, W)`` to ``(N, teacher_channels, H, W)``."""
        return self.norm(self.conv(student_feature))


def hint_loss(student_feature: Tensor, teacher_feature: Tensor, regressor: HintRegressor) -> Tensor:
    """FitNets hint loss: mean squared error between the regressed student map and the teacher's.

    The regressed map is resized to the teacher's ``(H, W)`` if they differ (see :func:`resize_spatial`).
    """
    regressed = regressor(student_feature)
    if regressed.shape[:2] != teacher_feature.shape[:2]:
        raise ValueError(
            f"regressed student feature {tuple(regressed.shape)} and teacher feature "
            f"{tuple(teacher_feature.shape)} differ in batch size or channels"
        )
    regressed = resize_spatial(regressed, (teacher_feature.shape[2], teacher_feature.shape[3]))
    return F.mse_loss(regressed, teacher_feature)


# --------------------------------------------------------------------------------------------------
# The registered feature losses.

# Hint features (the teacher's last stage) are cached only below this size; above it they are
# recomputed online, which costs time but never exhausts memory.
MAX_CACHED_HINT_BYTES = 256 * 2**20


def last_stage(stage_features: list[Tensor]) -> Tensor:
    """The deepest stage's feature map: FitNets' hint layer."""
    return stage_features[-1]


def hint_regressor(student_features: list[Tensor], teacher_feature: TeacherFeatures) -> nn.Module:
    """A regressor from the student's last-stage channels to the teacher's hint channels."""
    assert isinstance(teacher_feature, Tensor)
    return HintRegressor(student_features[-1].shape[1], teacher_feature.shape[1])


@register_feature_loss("attention", teacher_signal=teacher_attention_maps)
def attention_term(student_features: list[Tensor], teacher_maps: TeacherFeatures,
                   regressor: nn.Module | None) -> Tensor:
    """Attention transfer (:func:`attention_loss`) against the teacher's cached attention maps."""
    assert isinstance(teacher_maps, list)
    return attention_loss(student_features, teacher_maps)


@register_feature_loss("hint", teacher_signal=last_stage, regressor=hint_regressor,
                       max_cached_bytes=MAX_CACHED_HINT_BYTES)
def hint_term(student_features: list[Tensor], teacher_feature: TeacherFeatures,
              regressor: nn.Module | None) -> Tensor:
    """FitNets hint (:func:`hint_loss`) of the student's last stage through the trained regressor."""
    assert isinstance(teacher_feature, Tensor) and isinstance(regressor, HintRegressor)
    return hint_loss(student_features[-1], teacher_feature, regressor)
