"""What the report's figures share: colours (per family, trial state and verdict), formats and seed dots.

``format_params`` writes parameter counts for people (the text modules use it too); ``PERCENT_FORMAT`` is the
axes' tick format for accuracies, which stay fractions in [0, 1]; ``add_seed_dots`` draws each seed's test
accuracy over its bar or point.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from reports.run import COMPLETE, FAILED, HELPS, HURTS, NO_DIFFERENCE, STOPPED

FAMILY_COLORS = {"cnn": "#1f77b4", "resnet": "#ff7f0e", "mobilenet": "#2ca02c"}
_EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
STATE_COLORS = {COMPLETE: "#4c78a8", STOPPED: "#f58518", FAILED: "#9d9d9d"}
OTHER_STATE_COLOR = "#b279a2"
FAILED_COLOR = "#b0b0b0"
PERCENT_FORMAT = ".1%"

VERDICT_COLORS = {HELPS: "#2ca02c", NO_DIFFERENCE: "#7f7f7f", HURTS: "#d62728"}
UNKNOWN_VERDICT_COLOR = "#9467bd"


def family_color(family: str) -> str:
    """A stable colour per student family (unknown families get a stable extra colour)."""
    if family in FAMILY_COLORS:
        return FAMILY_COLORS[family]
    return _EXTRA_COLORS[sum(map(ord, family)) % len(_EXTRA_COLORS)]


def format_params(n: float | None) -> str:
    """Parameter counts for people: 950, 12.3k, 1.23M."""
    if n is None:
        return "n/a"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.3g}M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.3g}k"
    return f"{int(n)}"


def add_seed_dots(fig: go.Figure, groups: Sequence[tuple[str, Sequence[float]]], size: int) -> bool:
    """Each seed's test accuracy as a black dot over its group's bar or point (groups of one seed get none);
    whether any was drawn."""
    seeds_x = [label for label, accuracies in groups if len(accuracies) > 1 for _ in accuracies]
    seeds_y = [a for _, accuracies in groups if len(accuracies) > 1 for a in accuracies]
    if seeds_x:
        fig.add_trace(
            go.Scatter(
                x=seeds_x,
                y=seeds_y,
                mode="markers",
                marker={"color": "black", "size": size},
                name="one seed",
                hovertemplate="%{x}<br>seed test acc %{y:.2%}<extra></extra>",
            )
        )
    return bool(seeds_x)
