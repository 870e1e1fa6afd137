"""Repeated rounds of distillation (``--rounds``): each round's test accuracy and its gain over the one before.

``rounds_data`` reads the summary's ``rounds`` into points in round order; ``draw_rounds`` draws them,
coloured by verdict, the exported round outlined.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from reports.figures._style import PERCENT_FORMAT, VERDICT_COLORS, add_seed_dots
from reports.run import as_float, as_int, interval
from runfolder import verdict as runfolder_verdict


@dataclass(frozen=True)
class RoundPoint:
    """One round: its test accuracy over seeds and, from round 2 on, its gain over the round before."""

    round: int
    teachers: str
    mean: float
    std: float | None
    accuracies: list[float]
    gain: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str | None


@dataclass(frozen=True)
class RoundsData:
    """The rounds in order, which one ``best/`` holds, and why they stopped."""

    points: list[RoundPoint]
    best: int | None
    stop: str | None


def rounds_data(summary: Mapping[str, Any] | None) -> RoundsData | None:
    """The summary's ``rounds`` as points in round order; ``None`` when the run has no rounds entry.

    Entries without a round number or a test mean cannot be placed and are left out. A missing verdict
    is read off the gain's CI, as for the gain curve.
    """
    entries = (summary or {}).get("rounds")
    if not isinstance(entries, list):
        return None
    points = [p for p in (_round_point(e) for e in entries if isinstance(e, Mapping)) if p is not None]
    return RoundsData(points=sorted(points, key=lambda p: p.round), best=as_int((summary or {}).get("rounds_best")),
                      stop=str(summary["rounds_stop"]) if (summary or {}).get("rounds_stop") is not None else None)


def _round_point(entry: Mapping[str, Any]) -> RoundPoint | None:
    number, mean = as_int(entry.get("round")), as_float(entry.get("test_accuracy_mean"))
    if number is None or mean is None:
        return None
    gain = as_float(entry.get("gain"))
    ci = interval(entry.get("gain_ci95"))
    verdict = entry.get("verdict")
    if gain is not None and verdict not in VERDICT_COLORS:
        verdict = runfolder_verdict(*ci) if ci is not None else "unknown"
    teachers = entry.get("teachers")
    return RoundPoint(
        round=number,
        teachers=" + ".join(map(str, teachers)) if isinstance(teachers, list) else "",
        mean=mean,
        std=as_float(entry.get("test_accuracy_std")),
        accuracies=[float(a) for a in entry.get("test_accuracies") or [] if as_float(a) is not None],
        gain=gain,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        verdict=str(verdict) if gain is not None else None,
    )


def draw_rounds(data: RoundsData) -> go.Figure:
    """Test accuracy (mean ± std over seeds, each seed a dot) per round; a marker's colour is the verdict of
    that round over the one before (round 1: the plain distilled student); the exported round is outlined."""
    pts = data.points
    xs = [f"round {p.round}" for p in pts]
    hover = [
        f"round {p.round}, taught by {p.teachers or 'n/a'}<br>test acc {p.mean:.2%}"
        + (f" ± {p.std:.2%}" if p.std is not None else "")
        + (f"<br>gain over round {p.round - 1}: {p.gain:+.2f} points" if p.gain is not None else "")
        + (f", 95 % CI {p.ci_low:+.2f} to {p.ci_high:+.2f}" if p.ci_low is not None else "")
        + (f"<br>{p.verdict}" if p.verdict else "")
        + ("<br>exported to best/" if p.round == data.best else "")
        for p in pts
    ]
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=[p.mean for p in pts],
            mode="lines+markers",
            line={"color": "#555", "width": 1},
            marker={
                "size": 13,
                "color": [VERDICT_COLORS.get(p.verdict or "", "#3182bd") for p in pts],
                "line": {"width": [3 if p.round == data.best else 0 for p in pts], "color": "black"},
            },
            error_y={"type": "data", "array": [p.std or 0.0 for p in pts], "visible": True, "color": "#555"},
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            name="test accuracy (mean ± std)",
        )
    )
    add_seed_dots(fig, [(f"round {p.round}", p.accuracies) for p in pts], size=5)
    title = "Repeated rounds: each round distilled from the teacher and the round before"
    fig.update_layout(
        title=title + (f" (stopped: {data.stop})" if data.stop else ""),
        xaxis={"title": "round", "type": "category"},
        yaxis={"title": "test accuracy (mean ± std)", "tickformat": PERCENT_FORMAT},
    )
    return fig
