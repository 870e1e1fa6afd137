"""Every searched parameter, defined once: its name, what it means, its type and the trainer's hard limits.

The search space (``spaces``), the trainer's own checks (``trainers.DistillConfig``), the report's
parameter meanings and the CSV columns all read this table, so a parameter is added, renamed or
re-limited here and nowhere else. The limits are what the trainer accepts at all (``alpha`` outside
``[0, 1]`` is not a knowledge-distillation loss); a space's default ranges are a narrower choice made
in ``spaces._space``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Parameter:
    """One searched parameter of a distillation trial.

    ``kind`` is ``float``, ``int``, ``bool`` or ``str``. Numeric limits are ``low`` (excluded when
    ``low_open``) and ``high``, ``None`` meaning unbounded; ``choices`` lists the only values a ``str``
    parameter may take (``None``: any registered name, e.g. a student family).
    """

    name: str
    meaning: str
    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def limits(self) -> str:
        """The accepted values in words, e.g. ``a number in [0, 1]`` or ``an integer >= 1``."""
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "one of " + ", ".join(self.choices) if self.choices else "a name"
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        return noun

    def accepts(self, value: Any) -> bool:
        """Whether the trainer accepts ``value`` for this parameter (``True`` is not the number 1 here)."""
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str) and (self.choices is None or value in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        return math.isfinite(value) and self._within(value)

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` ("alpha must be a number in [0, 1], got 2") unless ``accepts(value)``."""
        if not self.accepts(value):
            raise ValueError(f"{self.name} must be {self.limits}, got {value!r}")

    def _within(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


def _table(*parameters: Parameter) -> dict[str, Parameter]:
    return {parameter.name: parameter for parameter in parameters}


# In reading order (architecture, loss, optimisation): the report and the CSV columns keep it.
PARAMETERS: dict[str, Parameter] = _table(
    Parameter("family", "student architecture family", str),
    Parameter("depth", "student depth (blocks)", int, low=1),
    Parameter("width", "student width (base channels)", int, low=1),
    Parameter("alpha", "weight of the soft-label KL term (the rest goes to cross-entropy)", float, low=0, high=1),
    Parameter("temperature", "softmax temperature of the KL term", float, low=0, low_open=True),
    # The trainers' feature-loss registry must hold exactly these names ("none" aside): it checks them
    # when a loss registers, and a test compares both lists.
    Parameter("feature_loss", "feature loss (attention transfer, FitNets hint, or none)", str,
              choices=("none", "attention", "hint")),
    Parameter("beta", "weight of the feature loss", float, low=0),
    Parameter("lr", "learning rate", float, low=0, low_open=True),
    Parameter("weight_decay", "weight decay", float, low=0),
    Parameter("batch_size", "batch size", int, low=1),
    Parameter("distill_interval", "KD terms run every k-th optimizer step", int, low=1),
    Parameter("init_from_teacher", "student starts from sliced teacher weights", bool),
    Parameter("augment", "student trains on augmented views of its images", bool),
)

# "none" switches the feature term off; the other names are losses registered in ``trainers.losses``.
FEATURE_LOSSES: tuple[str, ...] = PARAMETERS["feature_loss"].choices or ()
