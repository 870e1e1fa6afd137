"""The statistics both sides of a run folder read off its records, each defined once.

- ``pareto_front``: the trials no other trial beats on accuracy (higher) and parameters (fewer).
- ``paired_gain``: is distillation's gain real? Student and baseline are trained with the same seeds, so
  each seed gives one paired difference (student minus baseline test accuracy, in points). The gain is
  their mean, its 95 % interval Student's t on ``n - 1`` degrees of freedom, and the verdict ``helps``
  when the whole interval is above 0, ``hurts`` when below, else ``no detectable difference`` (also
  from a single seed, where no interval exists).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HELPS, NO_DIFFERENCE, HURTS = "helps", "no detectable difference", "hurts"
VERDICTS = (HELPS, NO_DIFFERENCE, HURTS)
CONFIDENCE = 0.95


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(accuracy, params)`` points: maximise accuracy, minimise params.

    In increasing params order (so they can be drawn as a line). Of exact duplicates, and of points tied
    on params, only the first most accurate one is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    front: list[int] = []
    best_accuracy = float("-inf")
    for index in order:
        # Sorted by params, so a point is on the front exactly when it beats every smaller model.
        if points[index][0] > best_accuracy:
            front.append(index)
            best_accuracy = points[index][0]
    return front


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class GainVerdict:
    """The paired gain in points, its 95 % interval (``None`` from one seed) and the verdict."""

    gain: float
    ci95: tuple[float, float] | None
    verdict: str
    per_seed: tuple[float, ...]

    def summary_fields(self, prefix: str = "kd") -> dict[str, Any]:
        """``kd_gain``, ``kd_gain_ci95``, ``kd_verdict`` and ``kd_gain_per_seed`` as ``summary.json`` has them
        (``search_gain`` and so on with ``prefix="search"``)."""
        return {f"{prefix}_gain": self.gain, f"{prefix}_gain_ci95": self.interval(), f"{prefix}_verdict": self.verdict,
                f"{prefix}_gain_per_seed": list(self.per_seed)}

    def interval(self) -> list[float] | None:
        """The 95 % interval as a JSON list, or ``None``."""
        return list(self.ci95) if self.ci95 is not None else None


def paired_gain(student: Sequence[float], baseline: Sequence[float]) -> GainVerdict:
    """Compare per-seed test accuracies (fractions, the same seeds in the same order) of two models."""
    if len(student) != len(baseline) or not student:
        raise ValueError(f"paired_gain needs equal, non-empty lists; got {len(student)} and {len(baseline)}")
    differences = tuple(100.0 * (s - b) for s, b in zip(student, baseline, strict=True))
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return GainVerdict(mean, None, NO_DIFFERENCE, differences)
    half_width = t_quantile(len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
    low, high = mean - half_width, mean + half_width
    return GainVerdict(mean, (low, high), verdict(low, high), differences)


def t_quantile(degrees_of_freedom: int) -> float:
    """The two-sided 95 % critical value of Student's t (2.776 for 4 degrees of freedom)."""
    from scipy import stats  # imported here: scipy.stats takes about a second to import, and every layer uses runfolder

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, degrees_of_freedom))


def verdict(low: float, high: float) -> str:
    """``helps`` above 0, ``hurts`` below 0, else ``no detectable difference``."""
    if low > 0:
        return HELPS
    if high < 0:
        return HURTS
    return NO_DIFFERENCE


def format_points(value: float, signed: bool = True) -> str:
    """Percentage points with two decimals: ``+0.83`` (signed) or ``0.83``; never ``-0.00``."""
    value += 0.0  # -0.0 -> 0.0
    return f"{value:+.2f}" if signed else f"{abs(value):.2f}"


def interval_words(interval: Sequence[float] | None) -> tuple[str, str | None]:
    """A paired gain's interval as the console prints it, and the smallest gain those seeds detect (the
    interval's half width): ``("95% CI [+0.28, +1.24]", "these seeds detect gains above 0.48 points")``, or
    ``("no interval from one seed", None)``."""
    if not interval:
        return "no interval from one seed", None
    low, high = interval
    return (f"95% CI [{format_points(low)}, {format_points(high)}]",
            f"these seeds detect gains above {format_points((high - low) / 2, signed=False)} points")


def resolution_points(test_size: int) -> float:
    """How many accuracy points one test image is worth."""
    return 100.0 / test_size
