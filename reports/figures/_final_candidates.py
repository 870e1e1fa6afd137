"""The final stage's top-k candidates: their validation accuracy re-trained over seeds, the winner marked.

``final_candidates_data`` builds one bar per candidate, best mean first; ``draw_final_candidates`` draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from reports.figures._style import PERCENT_FORMAT
from reports.run import as_float


@dataclass(frozen=True)
class CandidateBar:
    """One final-stage candidate: validation accuracy over seeds."""

    trial_id: str
    mean: float
    std: float | None
    seeds: int
    winner: bool
    config: Mapping[str, Any]


def final_candidates_data(summary: Mapping[str, Any] | None) -> list[CandidateBar]:
    """The re-trained top-k configurations, best mean first."""
    final = (summary or {}).get("final")
    if not isinstance(final, Mapping):
        return []
    winner = final.get("winner")
    bars = []
    for c in final.get("candidates") or []:
        if not isinstance(c, Mapping) or as_float(c.get("val_accuracy_mean")) is None:
            continue
        seeds = c.get("seeds")
        bars.append(
            CandidateBar(
                trial_id=str(c.get("trial_id")),
                mean=float(c["val_accuracy_mean"]),
                std=as_float(c.get("val_accuracy_std")),
                seeds=len(seeds) if isinstance(seeds, list) else int(as_float(seeds) or 0),
                winner=winner is not None and str(c.get("trial_id")) == str(winner),
                config=c.get("config") if isinstance(c.get("config"), Mapping) else {},
            )
        )
    bars.sort(key=lambda b: -b.mean)
    return bars


def draw_final_candidates(bars: Sequence[CandidateBar]) -> go.Figure:
    """Candidates' validation accuracy mean and std over seeds; the winner is highlighted."""
    fig = go.Figure(
        go.Bar(
            x=[b.trial_id for b in bars],
            y=[b.mean for b in bars],
            error_y={"type": "data", "array": [b.std or 0.0 for b in bars], "visible": True},
            marker_color=["#e6550d" if b.winner else "#fdae6b" for b in bars],
            text=["winner" if b.winner else "" for b in bars],
            textposition="outside",
            customdata=[[b.seeds, _short_config(b.config)] for b in bars],
            hovertemplate="%{x}<br>val acc %{y:.2%}<br>%{customdata[0]} seeds<br>%{customdata[1]}<extra></extra>",
        )
    )
    lows = [b.mean - (b.std or 0.0) for b in bars]
    floor = max(0.0, min(lows) - 0.05) if lows else 0.0
    fig.update_layout(
        title="Final stage: top configurations re-trained over several seeds",
        xaxis={"title": "trial", "type": "category"},
        yaxis={"title": "validation accuracy (mean ± std)", "tickformat": PERCENT_FORMAT, "range": [floor, 1.0]},
    )
    return fig


def _short_config(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in config.items())


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
