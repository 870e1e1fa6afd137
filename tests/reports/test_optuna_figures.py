"""Optuna's visualisations behind guards: drawn when they fit, a reason when they do not."""

from __future__ import annotations

from collections.abc import Callable

import optuna
import plotly.graph_objects as go
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from reports import optuna_figures as OF
from reports.run import load_run
from tests.reports.conftest import RunFactory

ALL = [OF.optimization_history, OF.param_importances, OF.parallel_coordinate, OF.kd_response]


def study_with(params_list: list[dict[str, float]], values: list[float | None]) -> optuna.Study:
    """An in-memory single-objective study; a None value is a FAIL trial."""
    study = optuna.create_study(direction="maximize")
    dists = {"alpha": FloatDistribution(0, 1), "temperature": FloatDistribution(1, 20), "lr": FloatDistribution(0, 1)}
    for params, value in zip(params_list, values, strict=True):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL if value is None else optuna.trial.TrialState.COMPLETE,
                value=value,
                params=params,
                distributions={k: dists[k] for k in params},
            )
        )
    return study


@pytest.mark.parametrize("draw", ALL)
def test_every_optuna_figure_draws_on_a_real_run(run_factory: RunFactory, draw: Callable[..., go.Figure]) -> None:
    study = load_run(run_factory()).study
    assert study is not None
    fig = draw(study)
    assert isinstance(fig, go.Figure) and len(fig.data) > 0


def test_multi_objective_study_uses_accuracy_as_target(run_factory: RunFactory) -> None:
    study = load_run(run_factory(objective="pareto")).study
    assert study is not None and len(study.directions) == 2
    for draw in [*ALL, OF.pareto_front]:
        assert len(draw(study).data) > 0


def test_pareto_front_needs_two_objectives(run_factory: RunFactory) -> None:
    study = load_run(run_factory()).study
    with pytest.raises(OF.FigureUnavailable, match="two-objective"):
        OF.pareto_front(study)  # type: ignore[arg-type]


@pytest.mark.parametrize("draw", ALL)
def test_empty_study_gives_a_reason(draw: Callable[..., go.Figure]) -> None:
    with pytest.raises(OF.FigureUnavailable, match="completed trial"):
        draw(study_with([{"alpha": 0.1}], [None]))


def test_importances_need_two_trials_and_variation() -> None:
    with pytest.raises(OF.FigureUnavailable, match="at least 2"):
        OF.param_importances(study_with([{"alpha": 0.1}], [0.5]))
    same = [{"alpha": 0.1, "temperature": 4.0}] * 3
    with pytest.raises(OF.FigureUnavailable, match="varied"):
        OF.param_importances(study_with(same, [0.5, 0.6, 0.7]))
    # A param that varied but is missing from one trial is not enough either.
    partial = [{"alpha": 0.1, "lr": 0.1}, {"alpha": 0.1, "lr": 0.2}, {"alpha": 0.1}]
    with pytest.raises(OF.FigureUnavailable, match="varied"):
        OF.param_importances(study_with(partial, [0.5, 0.6, 0.7]))


def test_kd_response_plots_only_knobs_that_varied() -> None:
    study = study_with([{"alpha": 0.1, "temperature": 2.0}, {"alpha": 0.1, "temperature": 9.0}], [0.5, 0.6])
    fig = OF.kd_response(study)
    assert "temperature" in fig.layout.title.text and "alpha" not in fig.layout.title.text
    fixed = study_with([{"alpha": 0.1, "lr": 0.1}, {"alpha": 0.1, "lr": 0.2}], [0.5, 0.6])
    with pytest.raises(OF.FigureUnavailable, match="temperature, alpha, distill_interval"):
        OF.kd_response(fixed)


def test_guards_on_hand_made_trials() -> None:
    def ft(params: dict[str, object]) -> optuna.trial.FrozenTrial:
        dists = {k: CategoricalDistribution([v, "other"]) for k, v in params.items()}
        return optuna.trial.create_trial(value=0.5, params=params, distributions=dists)

    trials = [ft({"a": 1, "b": "x"}), ft({"a": 1, "b": "y", "c": True}), ft({"a": 1, "b": "x", "c": False})]
    assert OF.varying_params(trials) == ["b", "c"]
    assert OF.shared_params(trials) == ["a", "b"]
    assert OF.shared_params([]) == []
    study = study_with([{"alpha": 0.1}, {"alpha": 0.2}], [0.5, None])
    assert [t.number for t in OF.complete_trials(study)] == [0]
