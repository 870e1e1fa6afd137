"""Validated parameter distributions: the building blocks of a search space.

Each class checks its bounds when it is built, so a bad space fails before anything runs
(Optuna style: eager validation), and knows how to ask an ``optuna.Trial`` for a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class TrialLike(Protocol):
    """The part of ``optuna.Trial`` a search space uses."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class FloatParam:
    """A real-valued parameter in ``[low, high]``, sampled on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self.low, self.high, self.log)

    def suggest(self, trial: TrialLike, name: str) -> float:
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this parameter can take."""
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class IntParam:
    """An integer parameter in ``[low, high]`` with an optional ``step``."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def __post_init__(self) -> None:
        for value in (self.low, self.high, self.step):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"integer bounds expected, got {value!r}")
        _check_range(self.low, self.high, self.log)
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if self.log and self.step != 1:
            raise ValueError("a log-scale integer range must have step 1")

    def suggest(self, trial: TrialLike, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this parameter can take."""
        return (isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
                and (value - self.low) % self.step == 0)

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "step": self.step, "log": self.log}


@dataclass(frozen=True)
class ChoiceParam:
    """A categorical parameter; a single choice fixes the value (it is still recorded by Optuna)."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.choices) == 0:
            raise ValueError("choices must not be empty")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choices must be distinct, got {list(self.choices)}")

    def suggest(self, trial: TrialLike, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices (``True`` is not ``1`` here)."""
        return any(type(value) is type(choice) and value == choice for choice in self.choices)

    def to_dict(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}


Param = FloatParam | IntParam | ChoiceParam


def _check_range(low: float, high: float, log: bool) -> None:
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"numeric bounds expected, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"bounds must be finite, got {value!r}")
    if low > high:
        raise ValueError(f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0, got low={low}")
