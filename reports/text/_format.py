"""The report's number formats: accuracies, points, durations, latencies and config values for people.

Small pure helpers every other text module builds on (``format_*``, ``points_per_test_image``, ``percent``),
plus the little record-reading helpers they share (``as_mapping``, ``strip_prefix``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports.run import as_float
from runfolder import format_points as format_points  # the report says points as the console does


def format_accuracy(mean: float | None, std: float | None = None, n: int | None = None) -> str:
    """``93.4%``, or ``93.4% ± 0.3 pp (3 seeds)`` when measured over seeds."""
    if mean is None:
        return "n/a"
    text = f"{100 * mean:.1f}%"
    if std is not None:
        text += f" ± {100 * std:.1f} pp"
    if n is not None and n > 1:
        text += f" ({n} seeds)"
    return text


def format_value(value: Any) -> str:
    """A config value: floats to 4 significant digits, the rest as written."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float | None) -> str:
    """``45 s``, ``12.5 min``, ``3.2 h``."""
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def points_per_test_image(summary: Mapping[str, Any] | None) -> float | None:
    """How many points one test image is worth: the summary's value, else 100 / the test split's size."""
    summary = summary or {}
    points = as_float(summary.get("test_resolution_points"))
    if points is not None:
        return points
    test_size = as_float(as_mapping(summary.get("dataset")).get("test"))
    return 100 / test_size if test_size else None


def format_latency(milliseconds: float | None) -> str:
    """``0.052 ms``, ``1.3 ms``: three significant digits; ``n/a`` when unknown."""
    return f"{milliseconds:.3g} ms" if milliseconds is not None else "n/a"


def as_mapping(value: Any) -> Mapping[str, Any]:
    """The value when it is a mapping, else an empty one (for reading optional summary entries)."""
    return value if isinstance(value, Mapping) else {}


def percent(fraction: float) -> str:
    """``5%``, ``0.17%``: enough digits to tell small fractions apart."""
    return f"{100 * fraction:.2g}%" if fraction < 0.01 else f"{100 * fraction:.3g}%"


def strip_prefix(text: str, prefix: str) -> str:
    """The text without a leading ``prefix`` (lowercase, matched case-insensitively), capitalised."""
    text = text.strip()
    if text.lower().startswith(prefix):
        text = text[len(prefix) :].strip()
    return text[:1].upper() + text[1:]


def baseline_unsearched(baseline: Mapping[str, Any]) -> bool:
    """Whether the run's baseline had no recipe search of its own (``--baseline-budget 0``: 0 trials)."""
    return as_mapping(baseline.get("search")).get("trials") == 0
