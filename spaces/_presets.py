"""Named starting spaces. ``default`` suits the embedded digits dataset and small images."""

from __future__ import annotations

from dataclasses import replace

from spaces._params import ChoiceParam, IntParam
from spaces._space import FamilyBounds, SearchSpace

# Widths from 2 channels: on 10 classes the smallest student (cnn, depth 1, width 2) has 536 parameters,
# 0.1 % of digits' default teacher (cnn-large, 491k) and 0.05 % of resnet-large (1.08M). The size bound
# (--max-params, default 5 % of the teacher) then cuts each family's depth and width.
STUDENT_FAMILY_BOUNDS: dict[str, FamilyBounds] = {
    "cnn": FamilyBounds(depth=IntParam(1, 3), width=IntParam(2, 32)),
    "resnet": FamilyBounds(depth=IntParam(1, 3), width=IntParam(2, 32)),
    "mobilenet": FamilyBounds(depth=IntParam(1, 3), width=IntParam(2, 32)),
}


def default_space() -> SearchSpace:
    """The default space: every family, the full loss mix, broad optimisation ranges."""
    return SearchSpace(families=dict(STUDENT_FAMILY_BOUNDS), metadata={"preset": "default"})


def smoke_space() -> SearchSpace:
    """A tiny space for ``--smoke``: small plain CNNs, so a setup check takes seconds."""
    return SearchSpace(
        families={"cnn": FamilyBounds(depth=IntParam(1, 1), width=IntParam(8, 16, step=8))},
        batch_size=ChoiceParam((64,)),
        metadata={"preset": "smoke"},
    )


def baseline_space(base: SearchSpace, family: str, depth: int, width: int,
                   augment_choices: tuple[bool, ...]) -> SearchSpace:
    """The no-teacher baseline's own search: one fixed architecture, its optimisation recipe searched.

    ``lr``, ``weight_decay`` and ``batch_size`` keep ``base``'s ranges; ``augment_choices`` is
    ``(False, True)`` where the dataset has an augmentation, else ``(False,)``.
    """
    fixed = FamilyBounds(depth=IntParam(depth, depth), width=IntParam(width, width))
    return replace(base, families={family: fixed}, augment=ChoiceParam(augment_choices), distills=False,
                   metadata={"preset": "baseline"})


PRESETS = {"default": default_space, "smoke": smoke_space}
