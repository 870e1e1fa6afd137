"""Optuna's own plotly visualisations of the run's study, each behind a guard.

Optuna raises (or draws an empty figure) when a study has too few trials, no parameter variation or
params missing from some trials; an interrupted run hits all of these. Each function here checks
first and raises ``FigureUnavailable`` with a short reason the report shows instead of the figure.

The guards are pure functions of the study's trials (``complete_trials``, ``varying_params``,
``shared_params``) so they are tested without drawing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from spaces import PARAMETERS

ACCURACY = "validation accuracy"
PARAMS = "student parameters"
# The distillation knobs whose response the report shows: the softmax temperature, the KL weight and
# how often the KD terms run (looked up in the parameter table, so a renamed parameter fails here at once).
KD_KNOBS = tuple(PARAMETERS[name].name for name in ("temperature", "alpha", "distill_interval"))


class FigureUnavailable(Exception):
    """The figure cannot be drawn for this study; the message says why, for the report."""


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Optuna-COMPLETE trials with a finite accuracy (objective 0). ASHA-stopped ones are included:
    the tuning code tells Optuna their partial accuracy as COMPLETE."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and t.values[0] is not None and math.isfinite(t.values[0])
    ]


def varying_params(trials: Sequence[FrozenTrial]) -> list[str]:
    """Parameters that take more than one value among ``trials``, in first-seen order."""
    seen: dict[str, set[str]] = {}
    for t in trials:
        for name, value in t.params.items():
            seen.setdefault(name, set()).add(repr(value))
    return [name for name, values in seen.items() if len(values) > 1]


def shared_params(trials: Sequence[FrozenTrial]) -> list[str]:
    """Parameters every trial has (conditional ones such as ``beta`` drop out), in first-seen order."""
    if not trials:
        return []
    names = list(trials[0].params)
    for t in trials[1:]:
        names = [n for n in names if n in t.params]
    return names


def _target(study: optuna.Study) -> dict[str, object]:
    # A multi-objective (pareto) study needs a scalar target for these plots: accuracy, objective 0.
    if len(study.directions) > 1:
        target: Callable[[FrozenTrial], float] = lambda t: float(t.values[0])  # noqa: E731
        return {"target": target, "target_name": ACCURACY}
    return {"target_name": ACCURACY}


def _require(trials: Sequence[FrozenTrial], n: int, what: str) -> None:
    if len(trials) < n:
        raise FigureUnavailable(
            f"{what} needs at least {n} completed trial{'s' if n > 1 else ''} in the Optuna study; "
            f"it has {len(trials)}."
        )


def _quiet(draw: Callable[[], go.Figure]) -> go.Figure:
    # Optuna warns about experimental features and custom targets; the report is not the place.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return draw()


def optimization_history(study: optuna.Study) -> go.Figure:
    """``optuna.visualization.plot_optimization_history`` of the validation accuracy."""
    _require(complete_trials(study), 1, "The optimization history")
    fig = _quiet(lambda: optuna.visualization.plot_optimization_history(study, **_target(study)))
    fig.update_layout(title="Optimization history: validation accuracy per trial")
    return fig


def param_importances(study: optuna.Study) -> go.Figure:
    """``optuna.visualization.plot_param_importances`` over the parameters all trials share."""
    trials = complete_trials(study)
    _require(trials, 2, "Parameter importance")
    varying = set(varying_params(trials))
    params = [p for p in shared_params(trials) if p in varying]
    if not params:
        raise FigureUnavailable(
            "Parameter importance needs a parameter that every completed trial has and that varied; none did."
        )
    fig = _quiet(lambda: optuna.visualization.plot_param_importances(study, params=params, **_target(study)))
    fig.update_layout(title="Which parameters mattered most for validation accuracy")
    return fig


def parallel_coordinate(study: optuna.Study) -> go.Figure:
    """``optuna.visualization.plot_parallel_coordinate`` over the parameters that varied."""
    trials = complete_trials(study)
    _require(trials, 2, "The parallel-coordinate plot")
    # Fixed params would only add flat axes; conditional ones (beta) are kept, Optuna draws their
    # absence as its own tick.
    params = varying_params(trials)
    if not params:
        raise FigureUnavailable("The parallel-coordinate plot needs at least one parameter that varied.")
    fig = _quiet(lambda: optuna.visualization.plot_parallel_coordinate(study, params=params, **_target(study)))
    fig.update_layout(title="Parallel coordinates: each line is one trial")
    return fig


def kd_response(study: optuna.Study, knobs: Sequence[str] = KD_KNOBS) -> go.Figure:
    """``optuna.visualization.plot_slice`` of accuracy against the distillation knobs that varied."""
    trials = complete_trials(study)
    _require(trials, 2, "The distillation-knob response")
    varying = set(varying_params(trials))
    params = [k for k in knobs if k in varying]
    if not params:
        raise FigureUnavailable(f"None of {', '.join(knobs)} varied across completed trials.")
    fig = _quiet(lambda: optuna.visualization.plot_slice(study, params=params, **_target(study)))
    fig.update_layout(title="Validation accuracy vs " + ", ".join(params))
    return fig


def pareto_front(study: optuna.Study, size_name: str = PARAMS) -> go.Figure:
    """``optuna.visualization.plot_pareto_front`` of accuracy (max) vs the student's size (min), ``size_name``
    naming its measure (parameters, FLOPs or latency)."""
    if len(study.directions) != 2:
        raise FigureUnavailable("Optuna's Pareto front needs the two-objective (pareto) search.")
    _require(complete_trials(study), 1, "The Pareto front")
    fig = _quiet(lambda: optuna.visualization.plot_pareto_front(study, target_names=[ACCURACY, size_name]))
    fig.update_layout(title="Optuna Pareto front: accuracy vs student size")
    return fig
