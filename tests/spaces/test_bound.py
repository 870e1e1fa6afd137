"""The size bound: ``bound_space`` keeps exactly the students that fit, and the sampler proposes no other."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest

from spaces import (
    ChoiceParam,
    FamilyBounds,
    IntParam,
    SearchSpace,
    SizeBound,
    baseline_space,
    bound_space,
    bound_space_to,
    recipe_space,
    standard_point,
    suggest_config,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAMILIES = {
    "cnn": FamilyBounds(depth=IntParam(1, 3), width=IntParam(2, 32, step=2)),
    "wide": FamilyBounds(depth=IntParam(1, 2), width=IntParam(16, 64, step=16)),
}
SPACE = SearchSpace(families=FAMILIES)


def params_of(family: str, depth: int, width: int) -> int:
    """A stand-in count that, like the real families, grows with depth and width."""
    return depth * width * width * (10 if family == "wide" else 1)


def test_each_depth_keeps_the_widths_that_fit_and_nothing_else() -> None:
    bounded = bound_space(SPACE, params_of, max_params=400)
    cnn = bounded.families["cnn"]
    # depth 1: 20*20 = 400 fits, 22*22 does not; depth 2: 14*14*2 = 392; depth 3: 10*10*3 = 300 (12: 432)
    assert cnn.max_width == {1: 20, 2: 14, 3: 10}
    assert [cnn.width_at(depth).high for depth in (1, 2, 3)] == [20, 14, 10]
    assert "wide" not in bounded.families  # 16*16*10 = 2,560 already at its smallest
    assert bounded.metadata["max_params"] == 400


def test_depths_without_a_fitting_width_are_cut() -> None:
    bounded = bound_space(SPACE, params_of, max_params=10)  # depth 2: 2*2*2 = 8 fits; depth 3: 3*2*2 = 12 does not
    assert bounded.families["cnn"].depth == IntParam(1, 2)
    assert bounded.families["cnn"].max_width == {1: 2, 2: 2}


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0)],
                         ids=["random", "tpe"])
def test_no_proposed_student_is_over_the_bound(sampler: optuna.samplers.BaseSampler) -> None:
    bounded = bound_space(SPACE, params_of, max_params=700)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    sizes = []
    for _ in range(80):
        trial = study.ask()
        config = suggest_config(trial, bounded, teacher_family=None)
        sizes.append(params_of(config["family"], config["depth"], config["width"]))
        study.tell(trial, float(config["width"]))  # reward width: TPE pushes against the bound
    assert max(sizes) <= 700
    assert max(sizes) > 500  # the bound is reached, not just respected
    assert {params_of("cnn", 1, 2), params_of("cnn", 2, 2)} & set(sizes)  # and small students are proposed too


def test_a_bound_nothing_meets_names_the_smallest_student() -> None:
    with pytest.raises(ValueError, match=r"no student in the space has at most 3 parameters: the smallest, "
                                         r"cnn depth 1 width 2, has 4"):
        bound_space(SPACE, params_of, max_params=3)


def latency_of(family: str, depth: int, width: int) -> float:
    """A stand-in latency in ms: grows with depth and width, and is not proportional to the parameters."""
    return 0.1 * depth + 0.01 * width * (3 if family == "wide" else 1)


def test_every_bound_applies_and_the_costly_one_is_measured_only_under_the_cheap_one() -> None:
    timed: list[tuple[str, int, int]] = []

    def timed_latency(family: str, depth: int, width: int) -> float:
        timed.append((family, depth, width))
        return latency_of(family, depth, width)

    bounds = [SizeBound("params", 400, params_of, "parameters"), SizeBound("latency_ms", 0.305, timed_latency, "ms")]
    bounded = bound_space_to(SPACE, bounds)
    # depth 1: params allow 20, latency 0.1 + 0.01 w <= 0.305 allows 20; depth 2: params 14, latency 10; depth 3: none
    assert bounded.families["cnn"].max_width == {1: 20, 2: 10}
    assert bounded.families["cnn"].depth == IntParam(1, 2)
    assert bounded.metadata["max_params"] == 400 and bounded.metadata["max_latency_ms"] == 0.305
    assert all(params_of(*student) <= 400 for student in timed)  # never timed a student the parameters rule out
    assert len(timed) <= 3 * 5  # bisection: about log2(16 widths) per depth


def test_a_bound_nothing_meets_is_named_with_the_smallest_student_by_its_measure() -> None:
    bounds = [SizeBound("params", 10_000, params_of, "parameters"), SizeBound("latency_ms", 0.05, latency_of, "ms")]
    with pytest.raises(ValueError, match=r"no student in the space has at most 0.05 ms: the smallest, cnn depth 1 "
                                         r"width 2, has 0.12 ms"):
        bound_space_to(SPACE, bounds)
    # cnn is small but slow, wide is fast but large: each bound alone is met, both at once by no student
    jointly = [SizeBound("params", 500, lambda family, depth, width: 100 if family == "cnn" else 1000, "parameters"),
               SizeBound("latency_ms", 0.5, lambda family, depth, width: 1.0 if family == "cnn" else 0.1, "ms")]
    with pytest.raises(ValueError, match=r"meets every bound at once \(at most 500 parameters, at most 0.5 ms\)"):
        bound_space_to(SPACE, jointly)


def test_baseline_space_fixes_the_architecture_and_samples_no_kd_parameter() -> None:
    space = baseline_space(SPACE, "cnn", 2, 8, augment_choices=(False, True))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    configs = []
    for _ in range(20):
        trial = study.ask()
        configs.append(suggest_config(trial, space, teacher_family="cnn"))
        study.tell(trial, 0.5)
    for config in configs:
        assert (config["family"], config["depth"], config["width"], config["alpha"]) == ("cnn", 2, 8, 0.0)
        assert set(config) == {"family", "depth", "width", "alpha", "lr", "weight_decay", "batch_size", "augment"}
    assert {config["augment"] for config in configs} == {False, True}
    assert space.augment == ChoiceParam((False, True)) and not space.distills


def test_recipe_space_fixes_the_architecture_and_still_searches_every_kd_and_optimisation_parameter() -> None:
    base = SearchSpace(families=FAMILIES, augment=ChoiceParam((False, True)))
    space = recipe_space(base, "cnn", 2, 8)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    configs = []
    for _ in range(40):
        trial = study.ask()
        configs.append(suggest_config(trial, space, teacher_family="cnn"))
        study.tell(trial, 0.5)
    assert {(c["family"], c["depth"], c["width"]) for c in configs} == {("cnn", 2, 8)}
    searched = ("alpha", "temperature", "feature_loss", "lr", "weight_decay", "batch_size", "distill_interval",
                "init_from_teacher", "augment")
    for key in searched:
        assert len({c[key] for c in configs}) > 1, key
    assert len({c["beta"] for c in configs if "beta" in c}) > 1
    assert space.distills and space.lr == base.lr and space.alpha == base.alpha and space.augment == base.augment
    assert space.metadata == {"preset": "recipe"} and base.families == FAMILIES  # base unchanged


def test_augment_is_searched_only_when_the_space_asks() -> None:
    trial = optuna.create_study().ask()
    assert "augment" not in suggest_config(trial, SPACE, teacher_family=None)
    with pytest.raises(ValueError, match="augment must be true or false"):
        SearchSpace(families=FAMILIES, augment=ChoiceParam(("yes",)))


def test_mixed_log_scales_across_families_are_refused() -> None:
    mixed = {"cnn": FamilyBounds(depth=IntParam(1, 2), width=IntParam(4, 32, log=True)),
             "resnet": FamilyBounds(depth=IntParam(1, 2), width=IntParam(4, 32))}
    with pytest.raises(ValueError, match="width must be on a log scale for every family or for none"):
        SearchSpace(families=mixed)


def test_the_standard_point_is_the_usual_recipe_on_the_widest_fitting_depth_2_student() -> None:
    bounded = bound_space(SPACE, params_of, max_params=400)
    assert standard_point(bounded) == {"family": "cnn", "depth": 2, "width": 14, "alpha": 0.9, "temperature": 4.0,
                                       "feature_loss": "none", "distill_interval": 1, "init_from_teacher": False,
                                       "lr": 0.05, "weight_decay": 5e-4, "batch_size": 64}
    baseline = baseline_space(bounded, "cnn", 1, 6, augment_choices=(False, True))
    assert standard_point(baseline) == {"family": "cnn", "depth": 1, "width": 6, "lr": 0.05, "weight_decay": 5e-4,
                                        "batch_size": 64, "augment": False}


def test_the_standard_point_leaves_out_what_the_space_cannot_take() -> None:
    narrow = SearchSpace(families={"cnn": FamilyBounds(depth=IntParam(3, 3), width=IntParam(8, 16, step=8))},
                         alpha=ChoiceParam((0.5,)), batch_size=ChoiceParam((128,)))
    point = standard_point(narrow)
    assert (point["depth"], point["width"]) == (3, 16)
    assert "alpha" not in point and "batch_size" not in point and point["temperature"] == 4.0


def test_a_search_evaluates_the_standard_point_first() -> None:
    bounded = bound_space(SPACE, params_of, max_params=400)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(standard_point(bounded))
    first = suggest_config(study.ask(), bounded, teacher_family=None)
    assert first == {key: value for key, value in standard_point(bounded).items() if key != "init_from_teacher"}


def test_a_depth_past_a_gap_in_the_fitting_depths_is_left_out() -> None:
    """A measured latency need not grow with depth: the space keeps the consecutive fitting depths only, so
    every depth it offers has a width."""
    def bumpy(family: str, depth: int, width: int) -> float:
        return {1: 0.2, 2: 9.0, 3: 0.2}[depth] + 0.001 * width

    bounded = bound_space_to(SPACE, [SizeBound("latency_ms", 1.0, bumpy, "ms")])
    cnn = bounded.families["cnn"]
    assert cnn.depth == IntParam(1, 1) and cnn.max_width == {1: 32}
    late = bound_space_to(SPACE, [SizeBound("latency_ms", 1.0, lambda f, d, w: 9.0 if d == 1 else 0.1, "ms")])
    assert late.families["cnn"].depth == IntParam(2, 3)  # the lowest depth may be the one that does not fit
    for family in (cnn, late.families["cnn"]):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(20):
            suggest_config(study.ask(), replace(SPACE, families={"cnn": family}), teacher_family=None)
