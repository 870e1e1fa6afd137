"""The teacher as a trial sees it: a frozen model plus its outputs on the training set, computed once.

Without augmentation every trial reads the teacher's logits (and attention maps / hint features)
for a batch from these cached tensors by index, so a KD step costs no teacher forward at all.
With augmentation the inputs differ each step and the teacher runs online, on KD steps only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainers.losses import teacher_attention_maps

OUTPUT_BATCH_SIZE = 512
# Hint features (the teacher's last stage) are cached only below this size; above it they are
# recomputed online, which costs time but never exhausts memory.
MAX_CACHED_HINT_BYTES = 256 * 2**20


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

    def to(self, device: torch.device | str) -> TeacherOutputs:
        hint = self.hint_features.to(device) if self.hint_features is not None else None
        return TeacherOutputs(self.logits.to(device), [m.to(device) for m in self.attention_maps], hint)


class Teacher:
    """A trained teacher model (kept in eval mode) and, optionally, its cached training-set outputs."""

    def __init__(self, model: nn.Module, name: str, outputs: TeacherOutputs | None = None) -> None:
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.name = name
        self.outputs = outputs

    @classmethod
    def with_cached_outputs(cls, model: nn.Module, name: str, train_images: torch.Tensor) -> Teacher:
        """Wrap ``model`` and compute its outputs on ``train_images`` once."""
        return cls(model, name, compute_outputs(model, train_images))

    def to(self, device: torch.device | str) -> Teacher:
        outputs = self.outputs.to(device) if self.outputs is not None else None
        return Teacher(self.model.to(device), self.name, outputs)

    def signal(self, images: torch.Tensor, indices: torch.Tensor | None, feature_loss: str) -> TeacherSignal:
        """The teacher's view of a batch: cached rows when ``indices`` are given, else a forward pass.

        ``indices`` index the training split and must be ``None`` when ``images`` were augmented.
        """
        cached = self.outputs
        if indices is not None and cached is not None and (
                feature_loss != "hint" or cached.hint_features is not None):
            return TeacherSignal(
                logits=cached.logits[indices],
                attention_maps=[maps[indices] for maps in cached.attention_maps]
                if feature_loss == "attention" else None,
                hint_feature=cached.hint_features[indices] if feature_loss == "hint" else None,
            )
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
