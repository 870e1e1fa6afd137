"""The trial timeline: when each trial ran, and how many ran at once.

``concurrency_steps`` and ``max_concurrency`` count open intervals; ``timeline_data`` builds a bar per
trial and the concurrency step line; ``draw_timeline`` draws both, the bars coloured by trial state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.figures._style import OTHER_STATE_COLOR, STATE_COLORS
from reports.run import Trial


def concurrency_steps(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, int]]:
    """How many intervals are open over time, as ``(time, count from then on)`` steps.

    Intervals are half-open ``[start, end)``: a trial that ends when another starts does not overlap
    it (a slot is handed straight to the next trial). Intervals with ``end < start`` are ignored.
    """
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        if end < start:
            continue
        events.append((start, +1))
        events.append((end, -1))
    # At equal times, ends (-1) sort before starts (+1): that is the half-open rule above.
    events.sort()
    steps: list[tuple[float, int]] = []
    count = 0
    for time, delta in events:
        count += delta
        if steps and steps[-1][0] == time:
            steps[-1] = (time, count)
        else:
            steps.append((time, count))
    return steps


def max_concurrency(intervals: Sequence[tuple[float, float]]) -> int:
    """The largest number of intervals open at the same time (0 for none)."""
    return max((c for _, c in concurrency_steps(intervals)), default=0)


@dataclass(frozen=True)
class TimelineBar:
    """One trial's run time, in seconds since the first trial started."""

    trial_id: str
    label: str
    state: str
    start: float
    end: float
    open_ended: bool
    node: str | None = None


@dataclass(frozen=True)
class TimelineData:
    """Bars per trial plus the concurrency step line (both relative to the first start)."""

    bars: list[TimelineBar]
    steps: list[tuple[float, int]]
    max_concurrent: int
    t0: float | None


def timeline_data(trials: Sequence[Trial]) -> TimelineData:
    """Start-to-end bars for trials with a start time, ordered by start.

    A trial with no end time (still running when the run was interrupted) ends at its last report,
    or at its start if it never reported; it is flagged ``open_ended``.
    """
    timed = [t for t in trials if t.start_time is not None]
    if not timed:
        return TimelineData(bars=[], steps=[], max_concurrent=0, t0=None)
    t0 = min(float(t.start_time) for t in timed)  # type: ignore[arg-type]
    bars = []
    for t in sorted(timed, key=lambda t: (t.start_time, t.number or 0)):
        start = float(t.start_time)  # type: ignore[arg-type]
        end = t.end_time
        open_ended = end is None
        if end is None:
            reported = [p.time for p in t.curve if p.time is not None]
            end = max(reported) if reported else start
        end = max(float(end), start)
        bars.append(TimelineBar(t.trial_id, t.label, t.state, start - t0, end - t0, open_ended, t.node))
    intervals = [(b.start, b.end) for b in bars]
    return TimelineData(bars=bars, steps=concurrency_steps(intervals), max_concurrent=max_concurrency(intervals), t0=t0)


def draw_timeline(data: TimelineData) -> go.Figure:
    """Gantt-like bars per trial coloured by state, and the number of trials running below."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.05)
    minutes = bool(data.bars) and max(b.end for b in data.bars) > 600
    scale, unit = (60.0, "min") if minutes else (1.0, "s")
    states = list(dict.fromkeys(b.state for b in data.bars))
    for state in states:
        bs = [b for b in data.bars if b.state == state]
        fig.add_trace(
            go.Bar(
                y=[b.label for b in bs],
                x=[(b.end - b.start) / scale for b in bs],
                base=[b.start / scale for b in bs],
                orientation="h",
                marker_color=STATE_COLORS.get(state, OTHER_STATE_COLOR),
                name=state.lower(),
                customdata=[["still running" if b.open_ended else "", f"<br>on node {b.node}" if b.node else ""]
                            for b in bs],
                hovertemplate=(
                    f"%{{y}}<br>started at %{{base:.1f}} {unit}, ran %{{x:.1f}} {unit} %{{customdata[0]}}"
                    f"%{{customdata[1]}}<extra>{state}</extra>"
                ),
            ),
            row=1,
            col=1,
        )
    if data.steps:
        fig.add_trace(
            go.Scatter(
                x=[t / scale for t, _ in data.steps],
                y=[c for _, c in data.steps],
                mode="lines",
                line={"shape": "hv", "color": "black"},
                name="trials running",
                hovertemplate=f"%{{x:.1f}} {unit}: %{{y}} running<extra></extra>",
            ),
            row=2,
            col=1,
        )
    # Bars come in one trace per state; without an explicit order plotly would list trials by state.
    fig.update_yaxes(
        autorange="reversed",
        type="category",
        categoryorder="array",
        categoryarray=[b.label for b in data.bars],
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="running", row=2, col=1, rangemode="tozero", dtick=1)
    fig.update_xaxes(title_text=f"time since the first trial started ({unit})", row=2, col=1)
    nodes = {b.node for b in data.bars if b.node}
    fig.update_layout(
        title=f"Trial timeline (at most {data.max_concurrent} trials at once"
              + (f", on {len(nodes)} Ray nodes)" if len(nodes) > 1 else ")"),
        barmode="overlay",
        height=max(420, 140 + 18 * len(data.bars)),
    )
    return fig
