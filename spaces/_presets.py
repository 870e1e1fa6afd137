"""Named starting spaces. ``default`` suits the embedded digits dataset and small images."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from spaces._params import ChoiceParam, IntParam
from spaces._space import FamilyBounds, SearchSpace

# The smoke space's one family: small plain CNNs train in seconds on any dataset.
SMOKE_FAMILY = "cnn"


def family_bounds(depth: tuple[int, int], width: tuple[int, int]) -> FamilyBounds:
    """A family's depth and width ranges from plain ``(low, high)`` pairs, e.g. a model registry's defaults."""
    return FamilyBounds(depth=IntParam(*depth), width=IntParam(*width))


def default_space(families: Mapping[str, FamilyBounds]) -> SearchSpace:
    """The default space: ``families`` (the registered student families and their default depth and width
    ranges, as the search layer reads them from ``trainers.models``), the full loss mix, broad optimisation
    ranges."""
    return SearchSpace(families=dict(families), metadata={"preset": "default"})


def smoke_space(families: Mapping[str, FamilyBounds] | None = None) -> SearchSpace:
    """A tiny space for ``--smoke``: small plain CNNs, so a setup check takes seconds.

    ``families`` (the registered ones) is accepted so every preset is called alike; the smoke space
    always uses its own small ``cnn`` bounds.
    """
    return SearchSpace(
        families={SMOKE_FAMILY: FamilyBounds(depth=IntParam(1, 1), width=IntParam(8, 16, step=8))},
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


def recipe_space(base: SearchSpace, family: str, depth: int, width: int) -> SearchSpace:
    """The recipe phase's search (``tuning.recipe_phase``): ``base`` with the student fixed to one architecture,
    every KD and optimisation parameter still searched in ``base``'s ranges (alpha, temperature, feature loss
    and beta, lr, weight decay, batch size, distillation interval, augmentation and ``init_from_teacher`` where
    ``base`` has them)."""
    fixed = FamilyBounds(depth=IntParam(depth, depth), width=IntParam(width, width))
    return replace(base, families={family: fixed}, metadata={"preset": "recipe"})


# A preset builds a space from the registered student families (name -> default bounds).
PRESETS: dict[str, Callable[[Mapping[str, FamilyBounds]], SearchSpace]] = {
    "default": default_space, "smoke": smoke_space}
