"""A student family registered in one file (``tests/tuning/tiny_family.py``) is searchable end to end."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

import tuning.tuner
from tests.tuning.conftest import small_search
from trainers import models
from tuning import build_spec

MODULE = "tests.tuning.tiny_family"


@pytest.fixture
def tiny_family(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``tiny`` registered for this test only (the registries are restored after it), and the trainable
    that brings it to Ray's workers."""
    monkeypatch.setattr(models._registry, "_STUDENT_BUILDERS", dict(models._registry._STUDENT_BUILDERS))
    monkeypatch.setattr(models._registry, "_STUDENT_BOUNDS", dict(models._registry._STUDENT_BOUNDS))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    module = importlib.import_module(MODULE)
    monkeypatch.setattr(tuning.tuner, "run_trial", module.trial_with_tiny_family)
    return module


def test_the_default_space_searches_a_registered_family_with_its_bounds(tiny_family: ModuleType,
                                                                       tmp_path: Path) -> None:
    space = build_spec(results_dir=str(tmp_path)).space
    assert list(space.families) == ["cnn", "resnet", "mobilenet", "tiny"]
    tiny = space.families["tiny"]
    assert (tiny.depth.low, tiny.depth.high) == tiny_family.DEPTH
    assert (tiny.width.low, tiny.width.high) == tiny_family.WIDTH


@pytest.mark.usefixtures("ray_cluster")
def test_a_two_trial_search_restricted_to_a_registered_family(tiny_family: ModuleType, tmp_path: Path,
                                                              teacher_cache: Path, teacher_checkpoint: str) -> None:
    space_file = tmp_path / "space.yaml"
    space_file.write_text("families: [tiny]\n")
    outcome = small_search(teacher_cache, "tiny-family", budget=2, epochs=1, top_k=0,
                           teacher_checkpoint=teacher_checkpoint, space_file=str(space_file))
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert sum(summary["trials"].values()) == 2 and summary["trials"]["failed"] == 0
    records = json.loads((outcome.run_dir / "trials.json").read_text())
    assert len(records) == 2
    for record in records:
        config = record["config"]
        assert config["family"] == "tiny"
        assert tiny_family.DEPTH[0] <= config["depth"] <= tiny_family.DEPTH[1]
        assert tiny_family.WIDTH[0] <= config["width"] <= tiny_family.WIDTH[1]
        assert record["state"] in ("COMPLETE", "STOPPED") and record["val_accuracy"] > 0


def test_a_space_file_names_a_family_outside_the_default_search(tmp_path: Path) -> None:
    """The torchvision families stay out of the default space; a --space file may name them, with their bounds."""
    assert "mobilenet_v3_small" not in build_spec(results_dir=str(tmp_path)).space.families
    space_file = tmp_path / "space.yaml"
    space_file.write_text("families: [cnn, mobilenet_v3_small]\n")
    families = build_spec(results_dir=str(tmp_path), space_file=str(space_file)).space.families
    assert list(families) == ["cnn", "mobilenet_v3_small"]
    small = families["mobilenet_v3_small"]
    assert ((small.depth.low, small.depth.high), (small.width.low, small.width.high)) == (
        models.student_family_bounds(all_families=True)["mobilenet_v3_small"])


def test_every_family_that_help_names_is_a_families_value(capsys: pytest.CaptureFixture[str]) -> None:
    """--families takes each name --help lists (every registered family, default search or not), and all."""
    import re

    import search

    with pytest.raises(SystemExit):
        search.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"--families FAMILIES student families to search, separated by commas: (.*?), or all", text)
    assert listed is not None
    every = models.student_families(all_families=True)
    assert set(re.findall(r"[a-z][a-z0-9_]+", re.sub(r"\(.*?\)", "", listed.group(1)))) == set(every)
    for family in every:
        assert list(build_spec(families=family).space.families) == [family]
    assert list(build_spec(families="all").space.families) == every
    assert list(build_spec(families=" resnet_basic , cnn").space.families) == ["resnet_basic", "cnn"]
    assert build_spec(families="cnn").families == ("cnn",)
