"""What one distillation run is: its configuration, what it reports each epoch, and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from torch import nn

from spaces import PARAMETERS
from trainers.data import TensorSplits


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite: this configuration diverged."""


@dataclass(frozen=True)
class DistillConfig:
    """Everything one trial varies, plus the fixed recipe. Defaults are a sound KD run on digits."""

    family: str = "cnn"
    depth: int = 1
    width: int = 16
    alpha: float = 0.5
    temperature: float = 4.0
    feature_loss: str = "none"
    beta: float = 0.0
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_size: int = 64
    distill_interval: int = 1
    init_from_teacher: bool = False
    # Train on augmented views (the dataset's crop/flip); None: the dataset's default for students.
    augment: bool | None = None
    epochs: int = 15
    seed: int = 0
    momentum: float = 0.9

    def __post_init__(self) -> None:
        # The searched parameters' limits are spaces.PARAMETERS', the same the search space checks.
        for parameter in PARAMETERS.values():
            value = getattr(self, parameter.name)
            if not (parameter.name == "augment" and value is None):  # None: the dataset's default
                parameter.check(value)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DistillConfig:
        """Build from a search configuration; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown DistillConfig keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    @property
    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher (a baseline run has none)."""
        return self.alpha > 0 or self.uses_features or self.init_from_teacher

    @property
    def uses_kd_terms(self) -> bool:
        """Whether a training step has any term computed from the teacher's outputs."""
        return self.alpha > 0 or self.uses_features

    @property
    def uses_features(self) -> bool:
        return self.feature_loss != "none" and self.beta > 0

    def without_teacher(self) -> DistillConfig:
        """The same recipe trained from labels alone: the baseline of a distilled student."""
        return replace(self, alpha=0.0, feature_loss="none", beta=0.0, init_from_teacher=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def augments(self, data: TensorSplits) -> bool:
        """Whether this run trains on augmented views of ``data`` (the dataset's default when unset)."""
        wanted = data.info.student_augment if self.augment is None else self.augment
        return wanted and data.info.augmented


@dataclass(frozen=True)
class EpochReport:
    """What ``on_epoch`` receives after each epoch; ``val_accuracy`` and ``val_loss`` are ``None`` on an
    epoch that was not validated (``validate_each_epoch=False``: every epoch but the last)."""

    epoch: int
    val_accuracy: float | None
    val_loss: float | None
    train_loss: float
    params: int
    epoch_seconds: float
    kd_steps: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DistillResult:
    """The trained student and its per-epoch history."""

    model: nn.Module
    history: list[EpochReport] = field(default_factory=list)

    @property
    def best_val_accuracy(self) -> float:
        return max(report.val_accuracy for report in self.history if report.val_accuracy is not None)

    @property
    def last_val_accuracy(self) -> float:
        """The last epoch's validation accuracy (that epoch is always validated)."""
        accuracy = self.history[-1].val_accuracy
        assert accuracy is not None, "distill validates the last epoch"
        return accuracy


EpochCallback = Callable[[EpochReport, Callable[[], dict[str, Any]]], None]
StopRule = Callable[[EpochReport], bool]


# The keys of a training state (``state()``): the one definition ``load_state`` and a checkpoint check use.
TRAINING_STATE_KEYS = frozenset({"epoch", "step", "student", "regressor", "optimizer", "scheduler", "generator",
                                 "augment_generator", "history"})


def missing_state_keys(state: Any) -> list[str]:
    """The training-state keys ``state`` lacks (all of them when it is not a dict), sorted."""
    return sorted(TRAINING_STATE_KEYS - set(state)) if isinstance(state, dict) else sorted(TRAINING_STATE_KEYS)
