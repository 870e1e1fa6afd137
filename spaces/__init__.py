"""What is searched: validated Optuna define-by-run spaces for distillation trials.

This package imports Optuna-free, torch-free, ray-free code only, so a space can be built,
checked and inspected anywhere. ``PARAMETERS`` defines every searched parameter once (meaning,
type, the trainer's limits); the student families come from the caller (the search layer reads
them from the model registry), so this package names none but the smoke preset's.
"""

from spaces._overrides import SpaceError, apply_overrides, load_space_file
from spaces._parameters import FEATURE_LOSSES, PARAMETERS, Parameter
from spaces._params import ChoiceParam, FloatParam, IntParam, Param
from spaces._presets import PRESETS, baseline_space, default_space, family_bounds, recipe_space, smoke_space
from spaces._space import (
    STANDARD_RECIPE,
    FamilyBounds,
    ParamsOf,
    SearchSpace,
    SizeBound,
    bound_space,
    bound_space_to,
    space_parameters,
    standard_point,
    suggest_config,
)

__all__ = [
    "FEATURE_LOSSES",
    "PARAMETERS",
    "PRESETS",
    "STANDARD_RECIPE",
    "ChoiceParam",
    "FamilyBounds",
    "FloatParam",
    "IntParam",
    "Param",
    "Parameter",
    "ParamsOf",
    "SearchSpace",
    "SizeBound",
    "SpaceError",
    "apply_overrides",
    "baseline_space",
    "bound_space",
    "bound_space_to",
    "default_space",
    "family_bounds",
    "load_space_file",
    "recipe_space",
    "smoke_space",
    "space_parameters",
    "standard_point",
    "suggest_config",
]
