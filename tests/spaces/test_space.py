"""SearchSpace validation, presets, and the define-by-run ``suggest_config`` on real Optuna studies."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState, create_trial

from spaces import (
    FEATURE_LOSSES,
    PRESETS,
    ChoiceParam,
    FamilyBounds,
    FloatParam,
    IntParam,
    SearchSpace,
    apply_overrides,
    bound_space,
    default_space,
    family_bounds,
    smoke_space,
    suggest_config,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parents[2]
N_TRIALS = 30
# Distinct, non-overlapping bounds per family: a depth or width from the wrong family is caught.
FAMILIES = {
    "cnn": FamilyBounds(depth=IntParam(1, 2), width=IntParam(8, 24, step=8)),
    "resnet": FamilyBounds(depth=IntParam(3, 4), width=IntParam(28, 36, step=4)),
    "mobilenet": FamilyBounds(depth=IntParam(5, 7), width=IntParam(40, 48, step=2)),
}
# The model registry's three families with their default bounds, as the search layer passes them in.
REGISTERED = {name: family_bounds((1, 3), (2, 32)) for name in ("cnn", "resnet", "mobilenet")}
SAMPLERS = ("tpe", "tpe-multivariate", "random")
NAMES = ("family", "depth", "width", "alpha", "temperature", "feature_loss", "beta", "lr", "weight_decay",
         "batch_size", "distill_interval", "init_from_teacher")


def _default() -> SearchSpace:
    return default_space(REGISTERED)


def _space() -> SearchSpace:
    return SearchSpace(families=dict(FAMILIES))


def _sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "tpe-multivariate":  # what tuning/tuner.py uses
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)


def _objective(config: dict[str, Any]) -> float:
    """A deterministic score, so TPE gets past its random start-up trials the same way every time."""
    return config["alpha"] - 0.1 * config["depth"] + (0.2 if config["feature_loss"] == "hint" else 0.0)


def _search(kind: str, seed: int, space: SearchSpace, teacher_family: str | None,
            n: int = N_TRIALS) -> tuple[optuna.Study, list[dict[str, Any]]]:
    """Run ``n`` ask/tell trials of ``suggest_config`` on an in-memory study; return it and the configs."""
    study = optuna.create_study(direction="maximize", sampler=_sampler(kind, seed))
    configs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for _ in range(n):
            trial = study.ask()
            config = suggest_config(trial, space, teacher_family)
            study.tell(trial, _objective(config))
            configs.append(config)
    return study, configs


def _check_config(config: dict[str, Any], space: SearchSpace, teacher_family: str | None) -> None:
    """Every structural rule of the define-by-run space, for one sampled config."""
    family = config["family"]
    assert family in space.families
    bounds = space.families[family]
    for name, param in (("depth", bounds.depth), ("width", bounds.width)):
        assert isinstance(param, IntParam)
        assert param.low <= config[name] <= param.high, (name, config)
        assert (config[name] - param.low) % param.step == 0
    assert ("beta" in config) == (config["feature_loss"] != "none"), config
    expected_init = teacher_family is not None and family == teacher_family
    assert ("init_from_teacher" in config) == expected_init, config
    for name in ("alpha", "temperature", "beta", "lr", "weight_decay"):
        param = getattr(space, name)
        if name in config:
            assert isinstance(param, FloatParam)
            assert param.low <= config[name] <= param.high, (name, config)
    for name in ("feature_loss", "batch_size", "distill_interval", "init_from_teacher"):
        if name in config:
            assert config[name] in getattr(space, name).choices
    assert set(config) <= set(NAMES)


# --- suggest_config on real studies ---------------------------------------------------------------------


@pytest.mark.parametrize("teacher_family", ["cnn", "resnet", None])
@pytest.mark.parametrize("kind", SAMPLERS)
def test_sampled_configs_follow_the_conditional_structure(kind: str, teacher_family: str | None) -> None:
    space = _space()
    study, configs = _search(kind, seed=1, space=space, teacher_family=teacher_family)
    for config, trial in zip(configs, study.trials, strict=True):
        _check_config(config, space, teacher_family)
        assert trial.state == TrialState.COMPLETE
        assert trial.params == config  # Optuna recorded exactly the sampled parameters, no more
    assert len({config["family"] for config in configs}) >= 2


def test_random_sampling_visits_every_branch() -> None:
    space = _space()
    _, configs = _search("random", seed=3, space=space, teacher_family="mobilenet", n=60)
    assert {config["family"] for config in configs} == set(FAMILIES)
    assert {config["feature_loss"] for config in configs} == set(FEATURE_LOSSES)
    assert {config.get("init_from_teacher") for config in configs} == {None, False, True}
    for family, bounds in FAMILIES.items():
        depths = {config["depth"] for config in configs if config["family"] == family}
        assert depths <= set(range(bounds.depth.low, bounds.depth.high + 1))


@pytest.mark.parametrize("kind", SAMPLERS)
def test_same_seed_same_configs_other_seed_differs(kind: str) -> None:
    space = _space()
    _, first = _search(kind, seed=7, space=space, teacher_family="cnn", n=15)
    _, again = _search(kind, seed=7, space=space, teacher_family="cnn", n=15)
    _, other = _search(kind, seed=8, space=space, teacher_family="cnn", n=15)
    assert first == again
    assert first != other


def _every_kind_of_config(space: SearchSpace) -> list[tuple[dict[str, Any], str | None]]:
    """Hand-built configs covering each branch: every family x feature loss x teacher family (or none)."""
    cases = []
    for family, bounds in space.families.items():
        for feature_loss in FEATURE_LOSSES:
            for teacher_family in (family, "some-other-family", None):
                config: dict[str, Any] = {
                    "family": family, "depth": bounds.depth.high, "width": bounds.width.low, "alpha": 0.5,
                    "temperature": 4.0, "feature_loss": feature_loss, "lr": 0.1, "weight_decay": 1e-4,
                    "batch_size": 128, "distill_interval": 2,
                }
                if feature_loss != "none":
                    config["beta"] = 1.5
                if teacher_family == family:
                    config["init_from_teacher"] = True
                cases.append((config, teacher_family))
    return cases


def test_fixed_trial_replay_recovers_the_distributions_of_every_config_kind() -> None:
    """tuning/journal.py replays ``FixedTrial(config)`` through suggest_config to rebuild a trial."""
    space = _default()
    cases = _every_kind_of_config(space)
    assert any("beta" in c and "init_from_teacher" in c for c, _ in cases)
    study = optuna.create_study(direction="maximize")
    for config, teacher_family in cases:
        replay = FixedTrial(json.loads(json.dumps(config)))  # the records pass through trials.json
        assert suggest_config(replay, space, teacher_family) == config
        assert set(replay.distributions) == set(config)
        for name, distribution in replay.distributions.items():
            assert distribution._contains(distribution.to_internal_repr(config[name])), name
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.5], params=config,
                                     distributions=replay.distributions))
    assert len(study.trials) == len(cases)
    assert study.trials[0].params == cases[0][0]


@pytest.mark.parametrize("kind", SAMPLERS)
def test_fixed_trial_replay_matches_the_sampled_trials(kind: str) -> None:
    space = _default()
    study, configs = _search(kind, seed=5, space=space, teacher_family="resnet", n=20)
    assert any("beta" in config for config in configs)
    assert any("init_from_teacher" in config for config in configs)
    for config, trial in zip(configs, study.trials, strict=True):
        replay = FixedTrial(config)
        suggest_config(replay, space, "resnet")
        assert replay.distributions == trial.distributions
        assert {name: config[name] for name in replay.distributions} == trial.params


def test_replay_ignores_a_parameter_the_branch_does_not_sample() -> None:
    """A record may carry a key its branch no longer samples; the replay reports only the sampled ones."""
    config = {"family": "cnn", "depth": 1, "width": 8, "alpha": 0.1, "temperature": 2.0, "feature_loss": "none",
              "lr": 0.05, "weight_decay": 1e-4, "batch_size": 64, "distill_interval": 1, "beta": 3.0,
              "init_from_teacher": True}
    replay = FixedTrial(config)
    suggest_config(replay, _default(), teacher_family="resnet")
    assert "beta" not in replay.distributions and "init_from_teacher" not in replay.distributions


# --- SearchSpace validation ---------------------------------------------------------------------------


def test_a_space_without_families_is_rejected() -> None:
    with pytest.raises(ValueError, match="no student family"):
        SearchSpace(families={})


def test_unknown_feature_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="'hints'"):
        SearchSpace(families=dict(FAMILIES), feature_loss=ChoiceParam(("none", "hints")))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None], ids=repr)
def test_distill_interval_choices_must_be_integers_of_at_least_one(bad: object) -> None:
    with pytest.raises(ValueError, match="distill_interval") as info:
        SearchSpace(families=dict(FAMILIES), distill_interval=ChoiceParam((1, bad)))
    assert repr(bad) in str(info.value)


def test_valid_restrictions_are_accepted() -> None:
    space = SearchSpace(families=dict(FAMILIES), feature_loss=ChoiceParam(("attention",)),
                        distill_interval=ChoiceParam((16,)))
    _, configs = _search("random", seed=0, space=space, teacher_family=None, n=5)
    assert all(config["distill_interval"] == 16 and "beta" in config for config in configs)


@pytest.mark.parametrize("make", [_default, smoke_space, _space], ids=["default", "smoke", "custom"])
def test_to_dict_is_json_and_a_valid_override_file(make: Any) -> None:
    """The description is JSON-serialisable and, fed back as an override, rebuilds the same space."""
    space = make()
    described = json.loads(json.dumps(space.to_dict()))
    assert set(described) == {"families", *NAMES[3:]}
    assert set(described["families"]) == set(space.families)
    assert apply_overrides(space, described) == space


# --- presets ----------------------------------------------------------------------------------------------


def test_presets_are_valid_spaces() -> None:
    assert set(PRESETS) == {"default", "smoke"}
    for name, make in PRESETS.items():
        space = make(REGISTERED)
        assert isinstance(space, SearchSpace)
        assert space.metadata["preset"] == name
        _, configs = _search("random", seed=0, space=space, teacher_family="cnn", n=10)
        for config in configs:
            _check_config(config, space, "cnn")
    assert _default() == _default() and _default() is not _default()
    assert set(smoke_space().families) <= set(_default().families)
    assert smoke_space().batch_size == ChoiceParam((64,))


def test_default_families_are_the_registered_student_families_with_their_bounds() -> None:
    from trainers.models import student_families
    from tuning.spec import preset_space, registered_families

    assert list(registered_families()) == student_families()
    assert registered_families() == REGISTERED  # cnn, resnet, mobilenet: depth 1-3, width 2-32
    assert preset_space("default") == _default()
    assert preset_space("smoke") == smoke_space()


def test_the_default_space_under_the_default_bound_spans_0_1_to_2_percent_of_the_teacher() -> None:
    """With real parameter counts: every corner of the bounded default space fits 2 % of digits' default
    teacher (cnn-large), the smallest student is about 0.1 % of it, and the largest comes close to the bound."""
    from trainers.models import build_teacher, count_parameters, student_parameter_count

    teacher_params = count_parameters(build_teacher("cnn-large", 1, 10))
    bound = teacher_params // 50

    def params_of(family: str, depth: int, width: int) -> int:
        return student_parameter_count(family, depth, width, 1, 10)

    space = bound_space(_default(), params_of, bound)
    sizes = [params_of(family, depth, width)
             for family, bounds in space.families.items()
             for depth in range(bounds.depth.low, bounds.depth.high + 1)
             for width in (bounds.width.low, bounds.width_at(depth).high)]
    assert max(sizes) <= bound
    assert max(sizes) > 0.8 * bound
    assert min(sizes) / teacher_params < 0.0011


def test_spaces_imports_neither_torch_nor_ray() -> None:
    code = ("import sys, spaces; spaces.default_space({'cnn': spaces.family_bounds((1, 3), (2, 32))}); "
            "bad = sorted(m for m in ('torch', 'ray', 'torchvision') if m in sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
