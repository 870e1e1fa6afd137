"""Was the search worth it? The final stage's ``search_gain`` (searched KD recipe minus the textbook one) in words.

Pure: a summary in, one sentence out, shared by ``report.html``, ``summary.md`` and their tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports.run import HELPS, HURTS, as_float, interval
from reports.text import format_points, points_per_test_image


def search_sentence(summary: Mapping[str, Any] | None) -> str | None:
    """One sentence on ``search_gain`` with its 95 % interval, seeds and resolution; ``None`` when the run
    has no textbook arm (older runs, or no final stage)."""
    summary = summary or {}
    textbook = summary.get("textbook")
    gain = as_float(summary.get("search_gain"))
    if not isinstance(textbook, Mapping) or gain is None:
        return None
    if textbook.get("same_as_winner"):
        return ("Does the search pay? The winning recipe is the textbook one (alpha 0.9, T 4, no feature loss) on "
                "the baseline's own settings, so the search found nothing better than the textbook recipe here.")
    seeds = len(textbook.get("seeds") or [])
    gain += 0.0
    diff = (f"{format_points(gain, signed=gain >= 0)} points {'more' if gain >= 0 else 'less'} accurate on test than "
            "the same student distilled with the textbook recipe (alpha 0.9, T 4, no feature loss)")
    ci95 = interval(summary.get("search_gain_ci95"))
    resolution = points_per_test_image(summary)
    details = [f"over {seeds} paired seeds"] if seeds else []
    if ci95 is not None:
        low, high = ci95
        details.insert(0, f"95 % CI {format_points(low)} to {format_points(high)}")
        details.append(f"these seeds detect gains above {(high - low) / 2:.2f} points")
    if resolution is not None:
        details.append(f"one test image = {resolution:.2f} points")
    tail = f" ({'; '.join(details)})" if details else ""
    verdict = summary.get("search_verdict")
    if verdict == HELPS:
        return f"The search pays: the searched recipe is {diff}{tail}."
    if verdict == HURTS:
        return f"The search did not pay: the searched recipe is {diff}{tail}; the textbook recipe is better."
    return (f"No detectable difference between the searched and the textbook recipe: the searched recipe is "
            f"{diff}{tail}.")
