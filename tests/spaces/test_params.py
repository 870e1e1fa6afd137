"""FloatParam, IntParam and ChoiceParam: eager validation, and suggestions on a real Optuna trial."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from spaces import ChoiceParam, FloatParam, IntParam

optuna.logging.set_verbosity(optuna.logging.WARNING)

N_TRIALS = 40


def _trials(n: int = N_TRIALS, seed: int = 0) -> list[optuna.Trial]:
    """``n`` live trials of a real in-memory study (random sampler, so the whole range is visited)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.ask() for _ in range(n)]


# --- invalid parameters: ValueError naming the offending value ---------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        pytest.param({"low": 2.0, "high": 1.0}, "low (2.0) is greater than high (1.0)", id="low>high"),
        pytest.param({"low": 0.0, "high": 1.0, "log": True}, "low=0.0", id="log-low-zero"),
        pytest.param({"low": -1.0, "high": 1.0, "log": True}, "low=-1.0", id="log-low-negative"),
        pytest.param({"low": "a", "high": 1.0}, "'a'", id="str-low"),
        pytest.param({"low": 0.0, "high": None}, "None", id="none-high"),
        pytest.param({"low": [0.0], "high": 1.0}, "[0.0]", id="list-low"),
        pytest.param({"low": math.nan, "high": 1.0}, "nan", id="nan-low"),
        pytest.param({"low": 0.0, "high": math.inf}, "inf", id="inf-high"),
        pytest.param({"low": -math.inf, "high": 0.0}, "-inf", id="minus-inf-low"),
        pytest.param({"low": True, "high": 2.0}, "True", id="bool-low"),
    ],
)
def test_float_param_rejects_bad_bounds(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError) as info:
        FloatParam(**kwargs)  # type: ignore[arg-type]
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        pytest.param({"low": 3, "high": 1}, "low (3) is greater than high (1)", id="low>high"),
        pytest.param({"low": 0, "high": 4, "log": True}, "low=0", id="log-low-zero"),
        pytest.param({"low": 1, "high": 4, "step": 0}, "got 0", id="step-zero"),
        pytest.param({"low": 1, "high": 4, "step": -2}, "got -2", id="step-negative"),
        pytest.param({"low": 1.5, "high": 3}, "1.5", id="float-low"),
        pytest.param({"low": 1, "high": "3"}, "'3'", id="str-high"),
        pytest.param({"low": 1, "high": 4, "step": 1.0}, "1.0", id="float-step"),
        pytest.param({"low": True, "high": 3}, "True", id="bool-low"),
        pytest.param({"low": 0, "high": False}, "False", id="bool-high"),
        pytest.param({"low": 1, "high": 8, "step": True}, "True", id="bool-step"),
        pytest.param({"low": 1, "high": 8, "step": 2, "log": True}, "step 1", id="log-with-step"),
    ],
)
def test_int_param_rejects_bad_bounds(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError) as info:
        IntParam(**kwargs)  # type: ignore[arg-type]
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("choices", "named"),
    [
        pytest.param((), "empty", id="empty"),
        pytest.param((64, 64), "[64, 64]", id="duplicate-int"),
        pytest.param(("none", "hint", "none"), "'none'", id="duplicate-str"),
        pytest.param((None, None), "None", id="duplicate-none"),
    ],
)
def test_choice_param_rejects_bad_choices(choices: tuple[object, ...], named: str) -> None:
    with pytest.raises(ValueError) as info:
        ChoiceParam(choices)
    assert named in str(info.value)


def test_params_are_frozen_values() -> None:
    param = FloatParam(0.1, 1.0, log=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        param.low = 5.0  # type: ignore[misc]
    assert param == FloatParam(0.1, 1.0, log=True)
    assert IntParam(1, 4) == IntParam(1, 4, step=1, log=False)
    assert ChoiceParam((1, 2)) != ChoiceParam((2, 1))


# --- valid parameters on a real Optuna trial ----------------------------------------------------------


@pytest.mark.parametrize(
    "param",
    [FloatParam(0.0, 0.95), FloatParam(1e-5, 1e-3, log=True), FloatParam(-3, 7), FloatParam(2.5, 2.5)],
    ids=["linear", "log", "int-bounds", "fixed"],
)
def test_float_param_suggests_within_bounds(param: FloatParam) -> None:
    values = []
    for trial in _trials():
        value = param.suggest(trial, "x")
        assert isinstance(value, float)
        assert param.low <= value <= param.high
        assert trial.distributions["x"] == FloatDistribution(param.low, param.high, log=param.log)
        values.append(value)
    if param.low < param.high:
        assert len(set(values)) > N_TRIALS // 2
    if param.log:  # a log scale puts about half the draws in the lowest decade of 1e-5..1e-3
        assert sum(value < 1e-4 for value in values) >= N_TRIALS // 4


@pytest.mark.parametrize(
    "param",
    [IntParam(1, 4), IntParam(8, 24, step=8), IntParam(8, 256, log=True), IntParam(3, 3)],
    ids=["plain", "step", "log", "fixed"],
)
def test_int_param_suggests_within_bounds(param: IntParam) -> None:
    values = set()
    for trial in _trials():
        value = param.suggest(trial, "n")
        assert isinstance(value, int) and not isinstance(value, bool)
        assert param.low <= value <= param.high
        assert (value - param.low) % param.step == 0
        assert trial.distributions["n"] == IntDistribution(param.low, param.high, log=param.log, step=param.step)
        values.add(value)
    if param == IntParam(8, 24, step=8):
        assert values == {8, 16, 24}


@pytest.mark.parametrize(
    "param",
    [ChoiceParam(("none", "attention", "hint")), ChoiceParam((1, 2, 4, 8)), ChoiceParam((False, True)),
     ChoiceParam((64,))],
    ids=["str", "int", "bool", "single"],
)
def test_choice_param_suggests_a_choice(param: ChoiceParam) -> None:
    seen = set()
    for trial in _trials():
        value = param.suggest(trial, "c")
        assert value in param.choices
        assert type(value) in {type(choice) for choice in param.choices}
        assert trial.distributions["c"] == CategoricalDistribution(list(param.choices))
        seen.add(value)
    assert seen == set(param.choices)  # 40 random draws visit every one of at most 4 choices


def test_to_dict_describes_the_param() -> None:
    assert FloatParam(1.0, 20.0, log=True).to_dict() == {"low": 1.0, "high": 20.0, "log": True}
    assert IntParam(8, 24, step=8).to_dict() == {"low": 8, "high": 24, "step": 8, "log": False}
    assert ChoiceParam((64, 128)).to_dict() == {"choices": [64, 128]}
