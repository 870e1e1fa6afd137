"""The distillation search space (DESIGN.md, "The search space") and its define-by-run sampler."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from spaces._params import ChoiceParam, FloatParam, IntParam, Param, TrialLike

FEATURE_LOSSES = ("none", "attention", "hint")


@dataclass(frozen=True)
class FamilyBounds:
    """Depth (blocks per stage) and width (channels of the first stage) of one student family."""

    depth: IntParam
    width: IntParam

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth.to_dict(), "width": self.width.to_dict()}


@dataclass(frozen=True)
class SearchSpace:
    """Every searched quantity of one distillation trial, with validated bounds.

    ``families`` maps each allowed student family to its own depth/width ranges, so the
    architecture parameters are conditional on the family. ``beta`` (the feature-loss weight)
    is sampled only when ``feature_loss`` is not ``"none"``, and ``init_from_teacher`` only when
    the student family matches the teacher's.
    """

    families: dict[str, FamilyBounds]
    alpha: Param = FloatParam(0.0, 0.95)
    temperature: Param = FloatParam(1.0, 20.0, log=True)
    feature_loss: Param = ChoiceParam(FEATURE_LOSSES)
    beta: Param = FloatParam(0.05, 50.0, log=True)
    lr: Param = FloatParam(0.01, 0.4, log=True)
    weight_decay: Param = FloatParam(1e-5, 1e-3, log=True)
    batch_size: Param = ChoiceParam((64, 128))
    distill_interval: Param = ChoiceParam((1, 2, 4, 8))
    init_from_teacher: Param = ChoiceParam((False, True))
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.families:
            raise ValueError("the space allows no student family: list at least one")
        if isinstance(self.feature_loss, ChoiceParam):
            unknown = [name for name in self.feature_loss.choices if name not in FEATURE_LOSSES]
            if unknown:
                raise ValueError(f"unknown feature_loss {unknown[0]!r}: choose from {list(FEATURE_LOSSES)}")
        if isinstance(self.distill_interval, ChoiceParam):
            bad = [k for k in self.distill_interval.choices if isinstance(k, bool) or not isinstance(k, int)
                   or k < 1]
            if bad:
                raise ValueError(f"distill_interval choices must be integers >= 1, got {bad[0]!r}")

    def with_families(self, families: dict[str, FamilyBounds]) -> SearchSpace:
        """A copy of this space restricted to (or widened to) ``families``."""
        return replace(self, families=dict(families))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (saved in spec.json, shown in the report)."""
        scalar_names = ("alpha", "temperature", "feature_loss", "beta", "lr", "weight_decay",
                        "batch_size", "distill_interval", "init_from_teacher")
        described: dict[str, Any] = {
            "families": {name: bounds.to_dict() for name, bounds in self.families.items()}
        }
        described.update({name: getattr(self, name).to_dict() for name in scalar_names})
        return described


def suggest_config(trial: TrialLike, space: SearchSpace, teacher_family: str | None) -> dict[str, Any]:
    """Sample one trial configuration, define-by-run, from ``space``.

    ``teacher_family`` is the student family the teacher belongs to (or ``None`` for a teacher
    no student can inherit weights from); ``init_from_teacher`` is searched only for students
    of that family.
    """
    family = trial.suggest_categorical("family", list(space.families))
    bounds = space.families[family]
    config: dict[str, Any] = {
        "family": family,
        "depth": bounds.depth.suggest(trial, "depth"),
        "width": bounds.width.suggest(trial, "width"),
        "alpha": space.alpha.suggest(trial, "alpha"),
        "temperature": space.temperature.suggest(trial, "temperature"),
        "feature_loss": space.feature_loss.suggest(trial, "feature_loss"),
    }
    if config["feature_loss"] != "none":
        config["beta"] = space.beta.suggest(trial, "beta")
    config["lr"] = space.lr.suggest(trial, "lr")
    config["weight_decay"] = space.weight_decay.suggest(trial, "weight_decay")
    config["batch_size"] = space.batch_size.suggest(trial, "batch_size")
    config["distill_interval"] = space.distill_interval.suggest(trial, "distill_interval")
    if teacher_family is not None and family == teacher_family:
        config["init_from_teacher"] = space.init_from_teacher.suggest(trial, "init_from_teacher")
    return config
