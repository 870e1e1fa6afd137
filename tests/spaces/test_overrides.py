"""``--space FILE``: apply_overrides and load_space_file on real JSON and YAML files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from spaces import (
    ChoiceParam,
    FamilyBounds,
    FloatParam,
    IntParam,
    SearchSpace,
    SpaceError,
    apply_overrides,
    default_space,
    family_bounds,
    load_space_file,
    smoke_space,
    suggest_config,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

# The registered families a file may name, with their default bounds (the search layer reads them from
# the model registry; tests/spaces/test_space.py checks they are these).
REGISTERED = {name: family_bounds((1, 3), (2, 32)) for name in ("cnn", "resnet", "mobilenet")}


def _default() -> SearchSpace:
    return default_space(REGISTERED)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _sample(space: SearchSpace, n: int = 30, teacher_family: str | None = "cnn") -> list[dict[str, Any]]:
    """``n`` configs of the space from a real random-sampler study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(suggest_config(trial, space, teacher_family))
        study.tell(trial, 0.0)
    return configs


# --- what a file can change ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("space.yaml", "temperature: {low: 2, high: 8}\n"),
        ("space.yml", "temperature:\n  low: 2\n  high: 8\n"),
        ("space.json", '{"temperature": {"low": 2, "high": 8}}'),
        ("SPACE.JSON", '{"temperature": {"low": 2, "high": 8}}'),
    ],
)
def test_narrowing_a_range_from_each_file_kind(tmp_path: Path, name: str, text: str) -> None:
    space = load_space_file(_write(tmp_path, name, text), _default())
    assert space.temperature == FloatParam(2, 8, log=True)  # log kept from the default
    assert space.lr == _default().lr
    assert space.metadata == {"preset": "default", "overridden": ["temperature"]}
    assert all(2 <= config["temperature"] <= 8 for config in _sample(space))


def test_widening_ranges_and_families(tmp_path: Path) -> None:
    text = """
lr: {low: 0.0001, high: 1.0}
families:
  cnn: {depth: {high: 4}, width: {low: 4, high: 64, step: 4}}
  resnet: {}
  mobilenet:
"""
    base = smoke_space()  # cnn only: resnet and mobilenet come back with their registered bounds
    space = load_space_file(_write(tmp_path, "wide.yaml", text), base, REGISTERED)
    assert space.lr == FloatParam(0.0001, 1.0, log=True)
    assert list(space.families) == ["cnn", "resnet", "mobilenet"]
    assert space.families["cnn"] == FamilyBounds(depth=IntParam(1, 4), width=IntParam(4, 64, step=4))
    assert space.families["resnet"] == REGISTERED["resnet"]
    assert space.families["mobilenet"] == REGISTERED["mobilenet"]
    assert space.batch_size == base.batch_size
    configs = _sample(space, n=60)
    assert {config["family"] for config in configs} == {"cnn", "resnet", "mobilenet"}
    assert max(config["depth"] for config in configs if config["family"] == "cnn") > 2


def test_fixing_float_int_and_categorical_with_a_scalar(tmp_path: Path) -> None:
    text = "alpha: 0.5\nfeature_loss: none\ndistill_interval: 4\nfamilies: {resnet: {depth: 2, width: 12}}\n"
    space = load_space_file(_write(tmp_path, "fixed.yaml", text), _default())
    assert space.alpha == FloatParam(0.5, 0.5)
    assert space.feature_loss == ChoiceParam(("none",))
    assert space.distill_interval == ChoiceParam((4,))
    assert space.families == {"resnet": FamilyBounds(depth=IntParam(2, 2), width=IntParam(12, 12))}
    for config in _sample(space, n=10, teacher_family="resnet"):
        assert config["alpha"] == 0.5 and config["feature_loss"] == "none" and "beta" not in config
        assert (config["family"], config["depth"], config["width"], config["distill_interval"]) == ("resnet", 2, 12, 4)
        assert "init_from_teacher" in config


def test_choices_as_a_list_and_as_a_mapping(tmp_path: Path) -> None:
    data = {"batch_size": [32, 256], "distill_interval": {"choices": [1, 8]}, "init_from_teacher": [False]}
    space = load_space_file(_write(tmp_path, "choices.json", json.dumps(data)), _default())
    assert space.batch_size == ChoiceParam((32, 256))
    assert space.distill_interval == ChoiceParam((1, 8))
    configs = _sample(space, n=40, teacher_family="cnn")
    assert {config["batch_size"] for config in configs} == {32, 256}
    assert {config["distill_interval"] for config in configs} == {1, 8}
    assert {config.get("init_from_teacher") for config in configs} <= {False, None}


def test_a_numeric_parameter_can_become_categorical(tmp_path: Path) -> None:
    space = load_space_file(_write(tmp_path, "s.yaml", "alpha: [0.3, 0.7]\n"), _default())
    assert space.alpha == ChoiceParam((0.3, 0.7))
    assert {config["alpha"] for config in _sample(space)} == {0.3, 0.7}


def test_families_as_a_list_keep_their_default_bounds(tmp_path: Path) -> None:
    space = load_space_file(_write(tmp_path, "s.yml", "families: [resnet, cnn]\n"), _default())
    assert space.families == {"resnet": REGISTERED["resnet"], "cnn": REGISTERED["cnn"]}
    assert {config["family"] for config in _sample(space)} == {"resnet", "cnn"}


def test_an_integer_log_range_gets_step_one(tmp_path: Path) -> None:
    text = "families: {cnn: {width: {low: 4, high: 64, log: true}}}\n"
    space = load_space_file(_write(tmp_path, "s.yaml", text), _default())
    assert space.families["cnn"].width == IntParam(4, 64, step=1, log=True)


def test_an_empty_file_changes_nothing(tmp_path: Path) -> None:
    base = _default()
    assert load_space_file(_write(tmp_path, "empty.yaml", ""), base) == base
    assert load_space_file(_write(tmp_path, "empty.json", "{}"), base) == base


def test_apply_overrides_leaves_the_base_untouched() -> None:
    base = _default()
    space = apply_overrides(base, {"lr": {"high": 0.2}, "families": ["cnn"]})
    assert space.lr == FloatParam(0.01, 0.2, log=True)
    assert base.lr == FloatParam(0.01, 0.4, log=True)
    assert set(base.families) == set(REGISTERED)
    assert space.metadata["overridden"] == ["families", "lr"]


def test_the_readme_example_loads(tmp_path: Path) -> None:
    text = """
families:                  # a list keeps those families; a mapping also sets their bounds
  cnn: {depth: {low: 1, high: 2}, width: {low: 8, high: 32, step: 8}}
temperature: {low: 1, high: 10, log: true}
alpha: 0.5                 # a single value fixes a parameter
batch_size: [64, 128]      # a list sets the choices
"""
    space = load_space_file(_write(tmp_path, "readme.yaml", text), _default())
    for config in _sample(space):
        assert config["family"] == "cnn" and config["width"] in (8, 16, 24, 32)
        assert 1 <= config["temperature"] <= 10 and config["alpha"] == 0.5


# --- every error: SpaceError, one line, naming the file and the parameter --------------------------------


ERRORS = [
    # (file name, text, fragments the message must contain)
    ("bad.yaml", "alpha: [0.1\n", ["malformed", "line 2"]),
    ("bad.yml", "alpha: {low: 0.1}\n  beta: 2\n", ["malformed", "line 2"]),
    ("bad.json", '{"alpha": }', ["malformed", "line 1 column 11"]),
    ("list.yaml", "- alpha\n- lr\n", ["expected a mapping", "list"]),
    ("list.json", "[1, 2]", ["expected a mapping", "list"]),
    ("scalar.yaml", "3\n", ["expected a mapping", "int"]),
    ("typo.yaml", "temprature: {low: 1, high: 5}\n", ["unknown parameter 'temprature'", "did you mean 'temperature'"]),
    ("family.yaml", "families: [cnn, resnett]\n", ["unknown student family 'resnett'", "did you mean 'resnet'"]),
    ("family-map.json", '{"families": {"mobilnet": {}}}', ["unknown student family 'mobilnet'", "'mobilenet'"]),
    ("no-families.yaml", "families: []\n", ["families:"]),
    ("nested-families.yaml", "families: [[cnn]]\n", ["families:"]),
    ("family-key.yaml", "families: {cnn: {dept: 2}}\n", ["families.cnn", "'dept'", "did you mean 'depth'"]),
    ("range-key.yaml", "lr: {low: 0.01, hgih: 0.1}\n", ["lr:", "unknown range key 'hgih'", "did you mean 'high'"]),
    ("low-high.yaml", "lr: {low: 0.5, high: 0.1}\n", ["lr:", "low (0.5) is greater than high (0.1)"]),
    ("int-low-high.json", '{"families": {"cnn": {"depth": {"low": 3, "high": 1}}}}',
     ["families.cnn.depth:", "low (3) is greater than high (1)"]),
    ("log.yaml", "weight_decay: {low: 0, high: 0.1}\n", ["weight_decay:", "low > 0", "low=0"]),
    ("log-explicit.yaml", "alpha: {low: 0.0, high: 0.9, log: true}\n", ["alpha:", "low > 0"]),
    ("log-flag.yaml", "lr: {log: maybe}\n", ["lr:", "'log'", "'maybe'"]),
    ("empty-choices.yaml", "batch_size: []\n", ["batch_size:", "empty"]),
    ("empty-choices-map.json", '{"batch_size": {"choices": []}}', ["batch_size:", "empty"]),
    ("dup-choices.yaml", "batch_size: [64, 64]\n", ["batch_size:", "distinct", "[64, 64]"]),
    ("choices-not-list.yaml", "batch_size: {choices: 64}\n", ["batch_size:", "'choices' must be a list"]),
    ("choices-mixed.yaml", "batch_size: {choices: [64], low: 1}\n", ["batch_size:", "'choices' cannot be combined"]),
    ("categorical-range.yaml", "batch_size: {low: 32, high: 128}\n", ["batch_size:", "categorical"]),
    ("step-float.yaml", "alpha: {low: 0.0, high: 0.9, step: 0.1}\n", ["alpha:", "'step'"]),
    ("int-float.yaml", "families: {cnn: {width: 12.5}}\n", ["families.cnn.width:", "12.5"]),
    ("not-a-number.yaml", "temperature: {low: warm}\n", ["temperature:", "'warm'"]),
    ("nan.yaml", "lr: {high: .nan}\n", ["lr:", "nan"]),
    ("feature-loss.yaml", "feature_loss: [none, hints]\n", ["feature_loss", "'hints'"]),
    ("interval.yaml", "distill_interval: [0, 2]\n", ["distill_interval", "got 0"]),
]


@pytest.mark.parametrize(("name", "text", "fragments"), ERRORS, ids=[case[0] for case in ERRORS])
def test_bad_files_raise_one_line_space_errors(tmp_path: Path, name: str, text: str, fragments: list[str]) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(SpaceError) as info:
        load_space_file(path, _default())
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, ValueError)


def test_a_missing_file_is_a_space_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(SpaceError, match="cannot be read") as info:
        load_space_file(path, _default())
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_directory_is_a_space_error(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="cannot be read"):
        load_space_file(tmp_path, _default())


def test_a_binary_file_is_a_space_error(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01 not text")
    with pytest.raises(SpaceError, match="UTF-8") as info:
        load_space_file(path, _default())
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["alpha"], "expected a mapping"),
        ({"nope": 1}, "unknown parameter 'nope'"),
        ({"families": "cnn"}, "families:"),
        ({"families": {"cnn": [1, 2]}}, "families.cnn"),
        ({"metadata": {}}, "unknown parameter 'metadata'"),
    ],
)
def test_apply_overrides_errors_name_the_parameter(overrides: Any, fragment: str) -> None:
    with pytest.raises(SpaceError, match=fragment.replace("(", r"\(")):
        apply_overrides(_default(), overrides)
