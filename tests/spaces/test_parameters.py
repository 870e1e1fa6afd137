"""The table of searched parameters: the trainer's limits, and the space refusing values outside them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from spaces import (
    FEATURE_LOSSES,
    PARAMETERS,
    ChoiceParam,
    FloatParam,
    IntParam,
    SearchSpace,
    family_bounds,
    space_parameters,
)

FAMILIES = {"cnn": family_bounds((1, 3), (2, 32))}


def test_the_table_defines_every_searched_parameter_once_in_reading_order() -> None:
    assert list(PARAMETERS) == ["family", "depth", "width", "alpha", "temperature", "feature_loss", "beta", "lr",
                                "weight_decay", "batch_size", "distill_interval", "init_from_teacher", "augment"]
    assert all(name == parameter.name for name, parameter in PARAMETERS.items())
    for parameter in PARAMETERS.values():
        assert parameter.meaning and "\n" not in parameter.meaning, parameter.name
    assert FEATURE_LOSSES == ("none", "attention", "hint")


def test_a_space_holds_a_distribution_for_every_parameter_of_the_table() -> None:
    per_family = {"family", "depth", "width"}
    space_fields = {f.name for f in fields(SearchSpace)} - {"families", "distills", "metadata"}
    assert space_fields == set(PARAMETERS) - per_family
    space = SearchSpace(families=FAMILIES, augment=ChoiceParam((False, True)))
    assert space_parameters(space) == [name for name in PARAMETERS if name not in per_family]


@pytest.mark.parametrize(
    ("name", "accepted", "refused", "limits"),
    [
        ("alpha", [0, 0.5, 1.0], [-0.01, 1.01, float("nan"), True, "0.5"], "a number in [0, 1]"),
        ("temperature", [1e-6, 20], [0, -1, float("inf")], "a number > 0"),
        ("beta", [0, 50.0], [-1e-9], "a number >= 0"),
        ("lr", [1e-9, 1], [0, -0.1], "a number > 0"),
        ("weight_decay", [0, 1e-3], [-1e-5], "a number >= 0"),
        ("batch_size", [1, 64], [0, 64.0, True], "an integer >= 1"),
        ("distill_interval", [1, 8], [0, -1, 1.5], "an integer >= 1"),
        ("depth", [1], [0], "an integer >= 1"),
        ("feature_loss", list(FEATURE_LOSSES), ["hints", 1, None], "one of none, attention, hint"),
        ("init_from_teacher", [False, True], [0, 1, "true"], "true or false"),
        ("augment", [False, True], [None, 1], "true or false"),
        ("family", ["cnn", "anything"], [1, None], "a name"),
    ],
)
def test_limits(name: str, accepted: list[Any], refused: list[Any], limits: str) -> None:
    parameter = PARAMETERS[name]
    assert parameter.limits == limits
    assert all(parameter.accepts(value) for value in accepted)
    for value in refused:
        assert not parameter.accepts(value), value
        with pytest.raises(ValueError, match=f"^{name} must be .*, got "):
            parameter.check(value)


# (parameter, distribution outside the trainer's limits, the message)
OUT_OF_LIMITS = [
    ("alpha", FloatParam(0.0, 2.0), "alpha must be a number in [0, 1], got high 2.0"),
    ("alpha", ChoiceParam((0.5, -0.5)), "alpha must be a number in [0, 1], got -0.5"),
    ("temperature", FloatParam(0.0, 4.0), "temperature must be a number > 0, got low 0.0"),
    ("temperature", FloatParam(-1.0, 4.0), "temperature must be a number > 0, got low -1.0"),
    ("lr", FloatParam(0.0, 0.1), "lr must be a number > 0, got low 0.0"),
    ("weight_decay", FloatParam(-1e-4, 0.0), "weight_decay must be a number >= 0, got low -0.0001"),
    ("beta", FloatParam(-1.0, 1.0), "beta must be a number >= 0, got low -1.0"),
    ("batch_size", ChoiceParam((0, 64)), "batch_size must be an integer >= 1, got 0"),
    ("batch_size", IntParam(0, 64), "batch_size must be an integer >= 1, got low 0"),
    ("distill_interval", ChoiceParam((0,)), "distill_interval must be an integer >= 1, got 0"),
    ("feature_loss", ChoiceParam(("none", "gram")), "feature_loss must be one of none, attention, hint, got 'gram'"),
    ("init_from_teacher", ChoiceParam((0, 1)), "init_from_teacher must be true or false, got 0"),
]


@pytest.mark.parametrize(("name", "param", "message"), OUT_OF_LIMITS, ids=[case[2] for case in OUT_OF_LIMITS])
def test_a_space_outside_the_trainers_limits_is_refused_when_built(name: str, param: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        SearchSpace(families=FAMILIES, **{name: param})
    assert str(raised.value) == message


def test_family_bounds_are_checked_against_the_depth_and_width_limits() -> None:
    with pytest.raises(ValueError, match=r"^families.cnn: width must be an integer >= 1, got low 0$"):
        SearchSpace(families={"cnn": family_bounds((1, 2), (0, 8))})


def test_the_limits_themselves_are_accepted() -> None:
    space = SearchSpace(families=FAMILIES, alpha=FloatParam(0.0, 1.0), beta=FloatParam(0.0, 1.0),
                        weight_decay=ChoiceParam((0.0,)), batch_size=ChoiceParam((1,)))
    assert space.alpha == FloatParam(0.0, 1.0)
