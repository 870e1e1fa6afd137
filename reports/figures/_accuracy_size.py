"""Accuracy against size: every trial's best validation accuracy against its size, with the Pareto front.

``accuracy_vs_params_data`` builds the points (size by parameters, FLOPs or latency) and the front through
them; ``draw_accuracy_vs_params`` draws them, coloured by family, the chosen configuration starred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from reports.figures._style import PERCENT_FORMAT, family_color
from reports.run import FAILED, STOPPED, Trial
from runfolder import pareto_front


@dataclass(frozen=True)
class ScatterPoint:
    """One trial on the accuracy-vs-size plane."""

    trial_id: str
    label: str
    family: str
    state: str
    accuracy: float
    size: float  # by the plane's measure: parameters, FLOPs or latency in ms
    on_front: bool
    winner: bool


@dataclass(frozen=True)
class AccuracyParamsData:
    """Points (trials with both an accuracy and a size) and the Pareto front through them."""

    points: list[ScatterPoint]
    front: list[ScatterPoint]
    measure: str = "params"


# The x axis of the accuracy-vs-size plane for each size measure.
SIZE_AXES = {"params": "student parameters", "flops": "FLOPs per image",
             "latency_ms": "latency at batch 1 (ms)"}


def accuracy_vs_params_data(trials: Sequence[Trial], winner: str | None = None,
                            measure: str = "params") -> AccuracyParamsData:
    """Best validation accuracy vs student size (by ``measure``: params, flops or latency_ms) for every trial
    that measured both.

    Early-stopped trials are kept: their accuracy is a real measurement, just of a shorter training.
    Failed trials are left out even if they reported something: they produced no usable model.
    """
    usable = [t for t in trials
              if t.best_val_accuracy is not None and t.size(measure) is not None and t.state != FAILED]
    raw = [(float(t.best_val_accuracy), float(t.size(measure))) for t in usable]  # type: ignore[arg-type]
    front_idx = pareto_front(raw)
    on_front = set(front_idx)
    points = [
        ScatterPoint(
            trial_id=t.trial_id,
            label=t.label,
            family=t.family,
            state=t.state,
            accuracy=float(t.best_val_accuracy),  # type: ignore[arg-type]
            size=raw[i][1],
            on_front=i in on_front,
            winner=winner is not None and t.trial_id == winner,
        )
        for i, t in enumerate(usable)
    ]
    return AccuracyParamsData(points=points, front=[points[i] for i in front_idx], measure=measure)


def draw_accuracy_vs_params(data: AccuracyParamsData) -> go.Figure:
    """Scatter coloured by family (open markers = stopped early), Pareto front as a staircase."""
    fig = go.Figure()
    families = sorted({p.family for p in data.points})
    for family in families:
        pts = [p for p in data.points if p.family == family]
        fig.add_trace(
            go.Scatter(
                x=[p.size for p in pts],
                y=[p.accuracy for p in pts],
                mode="markers",
                name=family,
                marker={
                    "color": family_color(family),
                    "size": 10,
                    "symbol": ["circle-open" if p.state == STOPPED else "circle" for p in pts],
                    "line": {"width": 2, "color": family_color(family)},
                },
                text=[f"{p.label} ({p.state.lower()})" for p in pts],
                hovertemplate="%{text}<br>" + SIZE_AXES[data.measure] + " %{x:,}<br>val acc %{y:.2%}<extra>" + family
                + "</extra>",
            )
        )
    if data.front:
        fig.add_trace(
            go.Scatter(
                x=[p.size for p in data.front],
                y=[p.accuracy for p in data.front],
                mode="lines",
                line={"shape": "hv", "color": "black", "dash": "dot", "width": 1.5},
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    winners = [p for p in data.points if p.winner]
    if winners:
        fig.add_trace(
            go.Scatter(
                x=[p.size for p in winners],
                y=[p.accuracy for p in winners],
                mode="markers",
                marker={
                    "symbol": "star",
                    "size": 18,
                    "color": "gold",
                    "line": {"width": 1, "color": "black"},
                },
                name="chosen config",
                text=[p.label for p in winners],
                hovertemplate="%{text} (chosen)<extra></extra>",
            )
        )
    fig.update_layout(
        title="Validation accuracy vs student size",
        xaxis={"title": SIZE_AXES[data.measure], "type": "log"},
        yaxis={"title": "best validation accuracy", "tickformat": PERCENT_FORMAT},
        legend={"title": "family (open = stopped early)"},
    )
    return fig
