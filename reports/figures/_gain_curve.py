"""Where distillation pays: the KD gain and its 95 % interval against student size.

``gain_curve_data`` reads the summary's ``gain_curve`` into points, smallest student first, with a verdict
per size; ``draw_gain_curve`` draws the gain above and both students' test accuracy below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.figures._style import PERCENT_FORMAT, UNKNOWN_VERDICT_COLOR, VERDICT_COLORS, format_params
from reports.run import as_float, as_int, interval
from runfolder import verdict as runfolder_verdict


@dataclass(frozen=True)
class GainPoint:
    """One student size of the gain curve: KD gain in points, its 95 % CI, and both test means."""

    arch: str
    params: int
    teacher_fraction: float | None
    gain: float
    ci_low: float | None
    ci_high: float | None
    verdict: str
    kd_mean: float | None
    baseline_mean: float | None
    seeds: int

    @property
    def err_plus(self) -> float:
        """Distance from the gain up to the CI's upper end (0 when the CI is unknown)."""
        return self.ci_high - self.gain if self.ci_high is not None else 0.0

    @property
    def err_minus(self) -> float:
        """Distance from the gain down to the CI's lower end (0 when the CI is unknown)."""
        return self.gain - self.ci_low if self.ci_low is not None else 0.0


@dataclass(frozen=True)
class GainCurveData:
    """The gain curve's points, smallest student first, and the teacher's test accuracy for reference."""

    points: list[GainPoint]
    teacher_accuracy: float | None


def gain_curve_data(summary: Mapping[str, Any] | None) -> GainCurveData | None:
    """The summary's ``gain_curve`` as points sorted by size; ``None`` when the run has no gain curve.

    Entries without a parameter count or a gain cannot be placed and are left out. A missing verdict is
    read off the CI (above 0: helps, below 0: hurts, else no detectable difference), or ``unknown``.
    """
    entries = (summary or {}).get("gain_curve")
    if not isinstance(entries, list):
        return None
    points = [p for p in (_gain_point(e) for e in entries if isinstance(e, Mapping)) if p is not None]
    teacher = (summary or {}).get("teacher")
    teacher_acc = as_float(teacher.get("test_accuracy")) if isinstance(teacher, Mapping) else None
    return GainCurveData(points=sorted(points, key=lambda p: p.params), teacher_accuracy=teacher_acc)


def _gain_point(entry: Mapping[str, Any]) -> GainPoint | None:
    params, gain = as_int(entry.get("params")), as_float(entry.get("gain"))
    if params is None or params <= 0 or gain is None:
        return None
    ci = interval(entry.get("gain_ci95"))
    verdict = entry.get("verdict")
    if verdict not in VERDICT_COLORS:
        verdict = runfolder_verdict(*ci) if ci is not None else "unknown"
    seeds = entry.get("seeds")
    return GainPoint(
        arch=str(entry.get("arch") or f"{params} params"),
        params=params,
        teacher_fraction=as_float(entry.get("teacher_fraction")),
        gain=gain,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        verdict=str(verdict),
        kd_mean=as_float(entry.get("kd_test_mean")),
        baseline_mean=as_float(entry.get("baseline_test_mean")),
        seeds=len(seeds) if isinstance(seeds, list) else 0,
    )


def draw_gain_curve(data: GainCurveData) -> go.Figure:
    """Top: gain (points) with 95 % CI error bars against student size (log x), coloured by verdict.

    Bottom: the distilled and the baseline student's mean test accuracy per size, and the teacher's
    test accuracy as a horizontal line.
    """
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.55, 0.45],
        vertical_spacing=0.08,
        subplot_titles=("KD gain: distilled minus alone (points, 95 % CI)", "test accuracy"),
    )
    pts = data.points
    xs = [p.params for p in pts]
    hover = [
        f"{p.arch}<br>{format_params(p.params)} params"
        + (f" ({p.teacher_fraction:.2%} of the teacher)" if p.teacher_fraction is not None else "")
        + f"<br>gain {p.gain:+.2f} points"
        + (f", 95 % CI {p.ci_low:+.2f} to {p.ci_high:+.2f}" if p.ci_low is not None else ", CI unknown")
        + f"<br>{p.verdict}"
        + (f" ({p.seeds} paired seeds)" if p.seeds else "")
        for p in pts
    ]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[p.gain for p in pts],
            mode="lines+markers",
            line={"color": "#555", "width": 1},
            marker={"size": 11, "color": [VERDICT_COLORS.get(p.verdict, UNKNOWN_VERDICT_COLOR) for p in pts]},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [p.err_plus for p in pts],
                "arrayminus": [p.err_minus for p in pts],
                "visible": True,
                "color": "#555",
            },
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            name="KD gain (± 95 % CI)",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    for verdict in dict.fromkeys(p.verdict for p in pts):  # legend only: what the marker colours mean
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={"size": 11, "color": VERDICT_COLORS.get(verdict, UNKNOWN_VERDICT_COLOR)},
                name=verdict,
                legendgroup="verdict",
            ),
            row=1,
            col=1,
        )
    fig.add_hline(y=0, line={"color": "black", "width": 1, "dash": "dot"}, row=1, col=1)
    for name, values, color, symbol in (
        ("distilled student", [p.kd_mean for p in pts], "#3182bd", "circle"),
        ("student alone (baseline)", [p.baseline_mean for p in pts], "#9ecae1", "square"),
    ):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=values,
                mode="lines+markers",
                line={"color": color},
                marker={"color": color, "symbol": symbol, "size": 8},
                name=name,
                text=[p.arch for p in pts],
                hovertemplate="%{text}<br>%{x:,} params<br>" + name + " test acc %{y:.2%}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    if data.teacher_accuracy is not None and xs:
        fig.add_trace(
            go.Scatter(
                x=[min(xs), max(xs)],
                y=[data.teacher_accuracy] * 2,
                mode="lines",
                line={"color": "#7f7f7f", "dash": "dash"},
                name="teacher",
                hovertemplate=f"teacher test acc {data.teacher_accuracy:.2%}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_xaxes(type="log", title_text="student parameters", row=2, col=1)
    fig.update_yaxes(title_text="gain (points)", zeroline=True, row=1, col=1)
    fig.update_yaxes(title_text="test accuracy", tickformat=PERCENT_FORMAT, row=2, col=1)
    fig.update_layout(title="Where distillation pays: gain against student size", height=640)
    return fig
