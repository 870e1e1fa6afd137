"""The teacher as a trial sees it: a frozen model plus its outputs on the training set, computed once.

Without augmentation every trial reads the teacher's logits (and attention maps / hint features)
for a batch from these cached tensors by index, so a KD step costs no teacher forward at all.
With augmentation the views are finite ((2p + 1)^2 crops, times 2 with flips): where the teacher's
outputs on every view of every training image fit the bounds below, they are cached too and looked up
by (view, index); otherwise the teacher runs online on the views the student sees, on KD steps only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trainers.data import DatasetInfo, render_view, view_count
from trainers.losses import teacher_attention_maps

OUTPUT_BATCH_SIZE = 512
# Hint features (the teacher's last stage) are cached only below this size; above it they are
# recomputed online, which costs time but never exhausts memory.
MAX_CACHED_HINT_BYTES = 256 * 2**20
# Per-view outputs are cached only when computing them costs at most this many image forwards (views x
# training images; digits: 9 x 1,077) and the logits take at most this much memory; above, the teacher
# runs online. Per-view feature maps (attention, hint) are kept while all of them fit the same budget.
MAX_VIEW_FORWARDS = 200_000
MAX_VIEW_BYTES = 256 * 2**20


@dataclass
class TeacherSignal:
    """What the KD terms of one step need from the teacher for one batch."""

    logits: torch.Tensor
    attention_maps: list[torch.Tensor] | None = None
    hint_feature: torch.Tensor | None = None


@dataclass
class TeacherOutputs:
    """The teacher's outputs on the whole (un-augmented) training split, row-aligned with it."""

    logits: torch.Tensor
    attention_maps: list[torch.Tensor]
    hint_features: torch.Tensor | None
    # The same outputs on every augmented view, each tensor with a leading view dimension: (views, N, ...).
    per_view: TeacherOutputs | None = None

    def to(self, device: torch.device | str) -> TeacherOutputs:
        hint = self.hint_features.to(device) if self.hint_features is not None else None
        per_view = self.per_view.to(device) if self.per_view is not None else None
        return TeacherOutputs(self.logits.to(device), [m.to(device) for m in self.attention_maps], hint, per_view)

    def answers(self, feature_loss: str) -> bool:
        """Whether these cached outputs hold what a step with ``feature_loss`` needs."""
        if feature_loss == "attention":
            return bool(self.attention_maps)
        return feature_loss != "hint" or self.hint_features is not None

    def rows(self, rows: tuple[torch.Tensor, ...], feature_loss: str) -> TeacherSignal:
        """The cached signal at ``rows`` (``(indices,)``, or ``(views, indices)`` for per-view outputs)."""
        return TeacherSignal(
            logits=self.logits[rows],
            attention_maps=[maps[rows] for maps in self.attention_maps] if feature_loss == "attention" else None,
            hint_feature=self.hint_features[rows] if feature_loss == "hint" and self.hint_features is not None
            else None,
        )


class Teacher:
    """A trained teacher model (kept in eval mode) and, optionally, its cached training-set outputs."""

    def __init__(self, model: nn.Module, name: str, outputs: TeacherOutputs | None = None) -> None:
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.name = name
        self.outputs = outputs

    @classmethod
    def with_cached_outputs(cls, model: nn.Module, name: str, train_images: torch.Tensor,
                            views_of: DatasetInfo | None = None, background: Sequence[float] | None = None) -> Teacher:
        """Wrap ``model`` and compute its outputs on ``train_images`` once; with ``views_of`` (the dataset's
        augmentation) also its logits on every augmented view, where ``fits_view_cache`` allows."""
        outputs = compute_outputs(model, train_images)
        if views_of is not None and views_of.augmented and fits_view_cache(views_of, train_images):
            outputs.per_view = compute_view_outputs(model, train_images, views_of, background)
        return cls(model, name, outputs)

    def to(self, device: torch.device | str) -> Teacher:
        outputs = self.outputs.to(device) if self.outputs is not None else None
        return Teacher(self.model.to(device), self.name, outputs)

    def signal(self, images: torch.Tensor, indices: torch.Tensor | None, feature_loss: str,
               views: torch.Tensor | None = None) -> TeacherSignal:
        """The teacher's view of a batch: cached rows when ``indices`` are given, else a forward pass.

        ``indices`` index the training split. For augmented ``images``, ``views`` holds each image's view
        id (``augment_views``): cached per-view logits answer a logits-only request, anything else runs
        the teacher on ``images``. Pass ``indices=None`` to force the forward pass.
        """
        cached = self.outputs
        if views is not None:
            per_view = cached.per_view if cached is not None else None
            if indices is not None and per_view is not None and per_view.answers(feature_loss):
                return per_view.rows((views, indices), feature_loss)
        elif indices is not None and cached is not None and cached.answers(feature_loss):
            return cached.rows((indices,), feature_loss)
        with torch.no_grad():
            if feature_loss == "none":
                return TeacherSignal(logits=self.model(images))
            logits, features = self.model.forward_features(images)
        return TeacherSignal(
            logits=logits,
            attention_maps=teacher_attention_maps(features) if feature_loss == "attention" else None,
            hint_feature=features[-1] if feature_loss == "hint" else None,
        )

    def hint_channels(self, probe: torch.Tensor) -> int:
        """Channels of the teacher's last stage (the FitNets hint layer)."""
        if self.outputs is not None and self.outputs.hint_features is not None:
            return int(self.outputs.hint_features.shape[1])
        with torch.no_grad():
            _, features = self.model.forward_features(probe)
        return int(features[-1].shape[1])


def fits_view_cache(info: DatasetInfo, train_images: torch.Tensor) -> bool:
    """Whether per-view logits for ``info``'s augmentation are within the forward and memory bounds."""
    views = view_count(info) * len(train_images)
    return views <= MAX_VIEW_FORWARDS and views * info.num_classes * 4 <= MAX_VIEW_BYTES


def compute_view_outputs(model: nn.Module, images: torch.Tensor, info: DatasetInfo,
                         background: Sequence[float] | None) -> TeacherOutputs:
    """The teacher's outputs on every view of every image, stacked on a leading view dimension.

    Feature maps are dropped (the teacher then runs online for feature losses on augmented views)
    when they would take more than ``MAX_VIEW_BYTES`` in all.
    """
    per_view = [compute_outputs(model, render_view(images, info, view, background)) for view in range(view_count(info))]
    first = per_view[0]
    feature_bytes = len(per_view) * sum(t.numel() * t.element_size() for t in
                                        [*first.attention_maps, *([first.hint_features] if first.hint_features
                                                                  is not None else [])])
    keep_features = feature_bytes <= MAX_VIEW_BYTES
    hints_kept = keep_features and all(outputs.hint_features is not None for outputs in per_view)
    return TeacherOutputs(
        logits=torch.stack([outputs.logits for outputs in per_view]),
        attention_maps=[torch.stack(stage) for stage in zip(*(o.attention_maps for o in per_view), strict=True)]
        if keep_features else [],
        hint_features=torch.stack([o.hint_features for o in per_view]) if hints_kept else None,
    )


def compute_outputs(model: nn.Module, images: torch.Tensor) -> TeacherOutputs:
    """Run ``model`` once over ``images`` in eval mode and keep logits, attention maps, hint features."""
    model.eval()
    logits, maps, hints = [], [], []
    # no_grad, not inference_mode: inference tensors cannot be saved for the student's backward.
    with torch.no_grad():
        for start in range(0, len(images), OUTPUT_BATCH_SIZE):
            batch_logits, features = model.forward_features(images[start:start + OUTPUT_BATCH_SIZE])
            logits.append(batch_logits)
            maps.append(teacher_attention_maps(features))
            hints.append(features[-1])
    hint_bytes = sum(h.numel() * h.element_size() for h in hints)
    return TeacherOutputs(
        logits=torch.cat(logits),
        attention_maps=[torch.cat(stage) for stage in zip(*maps, strict=True)],
        hint_features=torch.cat(hints) if hint_bytes <= MAX_CACHED_HINT_BYTES else None,
    )
