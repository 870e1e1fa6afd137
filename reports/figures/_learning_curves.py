"""Learning curves: each trial's validation accuracy per epoch, stopped and failed trials marked.

``learning_curves_data`` builds one series per trial with its colour and dash; ``draw_learning_curves``
draws them with a legend per family and a marker where ASHA stopped a trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from reports.figures._style import FAILED_COLOR, PERCENT_FORMAT, family_color
from reports.run import FAILED, STOPPED, Trial


@dataclass(frozen=True)
class CurveSeries:
    """One trial's validation accuracy per epoch and how to draw it."""

    trial_id: str
    label: str
    family: str
    state: str
    epochs: list[int]
    accuracies: list[float]
    color: str
    dash: str
    stop_marker: tuple[int, float] | None


def learning_curves_data(trials: Sequence[Trial]) -> list[CurveSeries]:
    """A series per trial that reported at least one epoch.

    Stopped trials are dashed with a marker at their last reported epoch (where ASHA stopped them);
    failed trials are grey and dotted; the rest are solid in their family colour.
    """
    series = []
    for t in trials:
        pts = sorted((p.epoch, p.val_accuracy) for p in t.curve if p.val_accuracy is not None)
        if not pts:
            continue
        epochs = [e for e, _ in pts]
        accs = [float(a) for _, a in pts]  # type: ignore[arg-type]
        if t.state == FAILED:
            color, dash = FAILED_COLOR, "dot"
        elif t.state == STOPPED:
            color, dash = family_color(t.family), "dash"
        else:
            color, dash = family_color(t.family), "solid"
        series.append(
            CurveSeries(
                trial_id=t.trial_id,
                label=t.label,
                family=t.family,
                state=t.state,
                epochs=epochs,
                accuracies=accs,
                color=color,
                dash=dash,
                stop_marker=(epochs[-1], accs[-1]) if t.state == STOPPED else None,
            )
        )
    return series


def draw_learning_curves(series: Sequence[CurveSeries]) -> go.Figure:
    """One line per trial; the legend shows each family once, plus the stop and failure styles."""
    fig = go.Figure()
    for s in series:
        group = "failed" if s.state == FAILED else s.family
        fig.add_trace(
            go.Scatter(
                x=s.epochs,
                y=s.accuracies,
                mode="lines+markers" if len(s.epochs) == 1 else "lines",
                line={"color": s.color, "dash": s.dash, "width": 1.5},
                marker={"color": s.color, "size": 5},
                name=s.label,
                legendgroup=group,
                showlegend=False,
                hovertemplate=f"{s.label} ({s.state.lower()})<br>epoch %{{x}}<br>val acc %{{y:.2%}}<extra></extra>",
            )
        )
    # Legend-only entries: the first trial of a family may be a stopped (dashed) one, and its style
    # must not stand for the whole family.
    groups = {s.family: s.color for s in series if s.state != FAILED}
    legend = [(family, color, "solid") for family, color in sorted(groups.items())]
    if any(s.state == FAILED for s in series):
        legend.append(("failed", FAILED_COLOR, "dot"))
    for name, color, dash in legend:
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line={"color": color, "dash": dash},
                name=name,
                legendgroup=name,
            )
        )
    stops = [s for s in series if s.stop_marker is not None]
    if stops:
        fig.add_trace(
            go.Scatter(
                x=[s.stop_marker[0] for s in stops],  # type: ignore[index]
                y=[s.stop_marker[1] for s in stops],  # type: ignore[index]
                mode="markers",
                # One neutral colour so the legend entry stands for every stop; the line says the family.
                marker={"symbol": "x", "size": 9, "color": "black"},
                name="stopped early by ASHA (dashed)",
                text=[s.label for s in stops],
                hovertemplate="%{text} stopped at epoch %{x}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Learning curves: validation accuracy per epoch",
        xaxis={"title": "epoch", "dtick": 1},
        yaxis={"title": "validation accuracy", "tickformat": PERCENT_FORMAT},
    )
    return fig
