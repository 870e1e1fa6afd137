"""Teacher vs baseline vs distilled student: test accuracy of each model the final stage measured.

``comparison_data`` builds one bar per model (teacher, baseline, textbook KD recipe, distilled student);
``draw_comparison`` draws the means with their spread over seeds and each seed as a dot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from reports.figures._style import PERCENT_FORMAT, add_seed_dots, format_params
from reports.run import as_float, as_int


@dataclass(frozen=True)
class ComparisonBar:
    """Test accuracy of one model; ``std`` is over seeds (``None`` for a single measurement)."""

    role: str
    label: str
    arch: str
    mean: float
    std: float | None
    accuracies: list[float]
    params: int | None


def comparison_data(summary: Mapping[str, Any] | None) -> list[ComparisonBar]:
    """Bars for whichever of teacher, baseline, textbook arm and distilled student the summary measured on test."""
    if not summary:
        return []
    bars: list[ComparisonBar] = []
    teacher = summary.get("teacher")
    if isinstance(teacher, Mapping) and as_float(teacher.get("test_accuracy")) is not None:
        acc = float(teacher["test_accuracy"])
        bars.append(
            ComparisonBar(
                role="teacher",
                label="teacher",
                arch=str(teacher.get("arch", "")),
                mean=acc,
                std=None,
                accuracies=[acc],
                params=as_int(teacher.get("params")),
            )
        )
    for role, label in (("baseline", "baseline (no teacher)"), ("textbook", "textbook KD recipe"),
                        ("student", "distilled student")):
        entry = summary.get(role)
        if not isinstance(entry, Mapping) or as_float(entry.get("test_accuracy_mean")) is None:
            continue
        if role == "textbook" and isinstance(summary.get("student"), Mapping):
            entry = {**summary["student"], **entry}  # the student's architecture and size, its own accuracies
        accs = [float(a) for a in entry.get("test_accuracies") or [] if as_float(a) is not None]
        bars.append(
            ComparisonBar(
                role=role,
                label=label,
                arch=str(entry.get("arch", "")),
                mean=float(entry["test_accuracy_mean"]),
                std=as_float(entry.get("test_accuracy_std")),
                accuracies=accs,
                params=as_int(entry.get("params")),
            )
        )
    return bars


def draw_comparison(bars: Sequence[ComparisonBar]) -> go.Figure:
    """Bars of mean test accuracy with std error bars, the per-seed results as dots on top."""
    colors = {"teacher": "#7f7f7f", "baseline": "#9ecae1", "textbook": "#6baed6", "student": "#3182bd"}
    fig = go.Figure(
        go.Bar(
            x=[b.label for b in bars],
            y=[b.mean for b in bars],
            error_y={"type": "data", "array": [b.std or 0.0 for b in bars], "visible": True},
            marker_color=[colors.get(b.role, "#3182bd") for b in bars],
            text=[f"{b.mean:.2%}<br>{format_params(b.params)} params" for b in bars],
            textposition="inside",
            customdata=[[b.arch, format_params(b.params), len(b.accuracies)] for b in bars],
            hovertemplate=(
                "%{x}: %{customdata[0]}<br>test acc %{y:.2%}<br>%{customdata[1]} params"
                "<br>%{customdata[2]} seed(s)<extra></extra>"
            ),
            name="mean test accuracy",
        )
    )
    has_seed_dots = add_seed_dots(fig, [(b.label, b.accuracies) for b in bars], size=6)
    lows = [min([b.mean - (b.std or 0.0), *b.accuracies]) for b in bars]
    # Accuracies of all three are often within a few points: zooming in makes differences visible.
    floor = max(0.0, min(lows) - 0.05) if lows else 0.0
    fig.update_layout(
        title="Test accuracy: teacher, student without a teacher, textbook KD recipe, distilled student",
        yaxis={"title": "test accuracy", "tickformat": PERCENT_FORMAT, "range": [floor, 1.0]},
        showlegend=has_seed_dots,
    )
    return fig
