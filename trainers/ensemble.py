"""The teacher of a repeated round of distillation: the original teacher and the last round's student together.

Round k+1 of ``--rounds`` re-initialises the winner's student and distils it from both the original teacher
and round k's trained student (born-again networks, Furlanello et al. 2018, with the teacher kept in an
ensemble rather than replaced): the KD target is the mean of the two models' logits. Feature losses
(attention, hint) keep reading the original teacher's stage maps, whose shapes the winner's regressor and
attention terms were tuned for; the round-k student's maps add nothing a same-size student lacks.

The ensemble is wrapped as an ordinary :class:`~trainers.teacher.Teacher`, so the distillation loop runs
unchanged. Its cached outputs reuse the teacher's: only the round-k student runs over the training images
(and over every augmented view the teacher's logits are cached for, when the averaged logits fit in memory).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from trainers.data import DatasetInfo, view_count
from trainers.teacher import Images, Teacher, TeacherOutputs, compute_outputs, fits_view_cache, view_transform


class LogitEnsemble(nn.Module):
    """The mean of a teacher's and a student's logits; the teacher's stage features for feature losses."""

    def __init__(self, teacher: nn.Module, student: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        self.student = student
        # Feature losses read the teacher's maps only, so the ensemble has them exactly when the teacher does.
        self.provides_features = getattr(teacher, "provides_features", True)

    def forward(self, x: Tensor) -> Tensor:
        """The two models' logits, averaged: ``(N, num_classes)``."""
        return (self.teacher(x) + self.student(x)) / 2

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(averaged logits, the teacher's stage features)``."""
        teacher_logits, features = self.teacher.forward_features(x)
        return (teacher_logits + self.student(x)) / 2, features


def ensemble_teacher(teacher: Teacher, student: nn.Module, train_images: Images, info: DatasetInfo | None = None,
                     background: Sequence[float] | None = None, name: str | None = None) -> Teacher:
    """``teacher`` and ``student`` as one :class:`Teacher` (:class:`LogitEnsemble`), on ``teacher``'s device.

    Where ``teacher`` has cached outputs on ``train_images`` (row-aligned, as ``Teacher.with_cached_outputs``
    made them), the ensemble's are those logits averaged with ``student``'s, with the teacher's cached
    features; per augmented view (``info``, ``background`` as the cache used) likewise, while the averaged
    per-view logits fit ``trainers.teacher``'s in-memory bound. Otherwise the ensemble runs online on
    the batches a KD step sees, as any teacher does.
    """
    device = next(teacher.model.parameters(), torch.empty(0)).device
    student = student.to(device).eval()
    model = LogitEnsemble(teacher.model, student)
    cached = teacher.outputs
    outputs = None
    if cached is not None:
        student_logits = compute_outputs(student, train_images, with_features=False).logits
        outputs = TeacherOutputs(logits=_mean(cached.logits, student_logits), features=dict(cached.features))
        per_view = cached.per_view
        if per_view is not None and info is not None and info.augmented and fits_view_cache(info, train_images):
            views = [compute_outputs(student, train_images, with_features=False,
                                     transform=view_transform(info, view, background)).logits
                     for view in range(view_count(info))]
            outputs.per_view = TeacherOutputs(logits=_mean(per_view.logits, torch.stack(views)),
                                              features=dict(per_view.features))
    return Teacher(model, name or f"{teacher.name} + student", outputs)


def _mean(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    # float(): a teacher's cached logits may be an fp16 memory map; the ensemble's are kept in float32.
    return (teacher_logits.float().to(student_logits.device) + student_logits.float()) / 2

