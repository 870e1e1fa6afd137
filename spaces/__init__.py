"""What is searched: validated Optuna define-by-run spaces for distillation trials.

This package imports Optuna-free, torch-free, ray-free code only, so a space can be built,
checked and inspected anywhere.
"""

from spaces._overrides import SpaceError, apply_overrides, load_space_file
from spaces._params import ChoiceParam, FloatParam, IntParam, Param
from spaces._presets import PRESETS, STUDENT_FAMILY_BOUNDS, baseline_space, default_space, smoke_space
from spaces._space import (
    FEATURE_LOSSES,
    FamilyBounds,
    ParamsOf,
    SearchSpace,
    bound_space,
    standard_point,
    suggest_config,
)

__all__ = [
    "FEATURE_LOSSES",
    "PRESETS",
    "STUDENT_FAMILY_BOUNDS",
    "ChoiceParam",
    "FamilyBounds",
    "FloatParam",
    "IntParam",
    "Param",
    "ParamsOf",
    "SearchSpace",
    "SpaceError",
    "apply_overrides",
    "baseline_space",
    "bound_space",
    "default_space",
    "load_space_file",
    "smoke_space",
    "standard_point",
    "suggest_config",
]
