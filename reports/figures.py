"""The report's own plotly figures: each is a pure data builder plus a drawer.

Builders (``*_data``, ``pareto_front``, ``concurrency_steps``) take run records and return plain
dataclasses; they hold all the logic and are unit-tested on hand-made records. Drawers (``draw_*``)
only turn that data into a ``plotly.graph_objects.Figure``.

Accuracies stay fractions in [0, 1]; axes show them as percentages through ``tickformat``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.run import (
    COMPLETE,
    FAILED,
    HELPS,
    HURTS,
    NO_DIFFERENCE,
    STOPPED,
    Trial,
    as_float,
    as_int,
    interval,
)
from runfolder import pareto_front
from runfolder import verdict as runfolder_verdict

FAMILY_COLORS = {"cnn": "#1f77b4", "resnet": "#ff7f0e", "mobilenet": "#2ca02c"}
_EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
STATE_COLORS = {COMPLETE: "#4c78a8", STOPPED: "#f58518", FAILED: "#9d9d9d"}
OTHER_STATE_COLOR = "#b279a2"
FAILED_COLOR = "#b0b0b0"
_PCT = ".1%"


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


# ---------------------------------------------------------------------------------------------------
# Accuracy vs parameters, with the Pareto front


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
        yaxis={"title": "best validation accuracy", "tickformat": _PCT},
        legend={"title": "family (open = stopped early)"},
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# Learning curves


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
        yaxis={"title": "validation accuracy", "tickformat": _PCT},
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# Teacher vs baseline vs distilled student


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


def _add_seed_dots(fig: go.Figure, groups: Sequence[tuple[str, Sequence[float]]], size: int) -> bool:
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
    has_seed_dots = _add_seed_dots(fig, [(b.label, b.accuracies) for b in bars], size=6)
    lows = [min([b.mean - (b.std or 0.0), *b.accuracies]) for b in bars]
    # Accuracies of all three are often within a few points: zooming in makes differences visible.
    floor = max(0.0, min(lows) - 0.05) if lows else 0.0
    fig.update_layout(
        title="Test accuracy: teacher, student without a teacher, textbook KD recipe, distilled student",
        yaxis={"title": "test accuracy", "tickformat": _PCT, "range": [floor, 1.0]},
        showlegend=has_seed_dots,
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# Where distillation pays: gain against student size

VERDICT_COLORS = {HELPS: "#2ca02c", NO_DIFFERENCE: "#7f7f7f", HURTS: "#d62728"}
UNKNOWN_VERDICT_COLOR = "#9467bd"


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
    fig.update_yaxes(title_text="test accuracy", tickformat=_PCT, row=2, col=1)
    fig.update_layout(title="Where distillation pays: gain against student size", height=640)
    return fig


# ---------------------------------------------------------------------------------------------------
# Repeated rounds of distillation (--rounds)


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
    _add_seed_dots(fig, [(f"round {p.round}", p.accuracies) for p in pts], size=5)
    title = "Repeated rounds: each round distilled from the teacher and the round before"
    fig.update_layout(
        title=title + (f" (stopped: {data.stop})" if data.stop else ""),
        xaxis={"title": "round", "type": "category"},
        yaxis={"title": "test accuracy (mean ± std)", "tickformat": _PCT},
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# Final stage: top-k candidates over seeds


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
        yaxis={"title": "validation accuracy (mean ± std)", "tickformat": _PCT, "range": [floor, 1.0]},
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# Trial timeline and concurrency


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


# ---------------------------------------------------------------------------------------------------


def _short_config(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in config.items())


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
