"""Is distillation's gain real? Paired per-seed differences, their 95 % t-interval, and a verdict in words.

Student and baseline are trained with the same seeds, so each seed gives one paired difference
(student minus baseline test accuracy, in percentage points). The gain is their mean; the 95 %
confidence interval is Student's t on ``n - 1`` degrees of freedom. The verdict is ``helps`` when the
whole interval is above 0, ``hurts`` when it is below, and ``no detectable difference`` otherwise
(also with a single seed, where no interval exists).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from scipy import stats

HELPS, NO_DIFFERENCE, HURTS = "helps", "no detectable difference", "hurts"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class GainVerdict:
    """The paired gain in points, its 95 % interval (``None`` from one seed) and the verdict."""

    gain: float
    ci95: tuple[float, float] | None
    verdict: str
    per_seed: tuple[float, ...]

    def summary_fields(self) -> dict[str, Any]:
        """``kd_gain``, ``kd_gain_ci95``, ``kd_verdict`` and ``kd_gain_per_seed`` as ``summary.json`` has them."""
        return {"kd_gain": self.gain, "kd_gain_ci95": self.interval(), "kd_verdict": self.verdict,
                "kd_gain_per_seed": list(self.per_seed)}

    def interval(self) -> list[float] | None:
        """The 95 % interval as a JSON list, or ``None``."""
        return list(self.ci95) if self.ci95 is not None else None


def paired_gain(student: list[float], baseline: list[float]) -> GainVerdict:
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
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, degrees_of_freedom))


def verdict(low: float, high: float) -> str:
    """``helps`` above 0, ``hurts`` below 0, else ``no detectable difference``."""
    if low > 0:
        return HELPS
    if high < 0:
        return HURTS
    return NO_DIFFERENCE


def resolution_points(test_size: int) -> float:
    """How many accuracy points one test image is worth."""
    return 100.0 / test_size
