"""bench/compare_runs.py: two runs' students paired by seed, read from their summary.json files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.bench.scripts import load_bench_script

compare_runs = load_bench_script("compare_runs")

DATASET = {"name": "mnist", "train": 6000, "val": 2000, "test": 2000, "classes": 10,
           "class_counts": {"test": [200] * 10}}


def _summary(run: str, seeds: list[int], accuracies: list[float], teacher_arch: str = "cnn-large") -> dict:
    return {"run": run, "dataset": DATASET,
            "teacher": {"arch": teacher_arch, "params": 491434, "test_accuracy": 0.9925},
            "student": {"arch": "cnn depth 2 width 5", "params": 7605, "seeds": seeds, "test_accuracies": accuracies}}


def test_the_gain_pairs_the_shared_seeds_second_minus_first() -> None:
    direct = _summary("direct", [0, 1, 2, 3, 4], [0.980, 0.981, 0.982, 0.983, 0.984])
    # Seed 5 is the second run's alone, and its seeds come in another order: pairing goes by seed.
    assistant = _summary("assistant", [4, 3, 2, 1, 0, 5], [0.990, 0.988, 0.986, 0.984, 0.982, 0.5], "cnn")
    result = compare_runs.compare(direct, assistant)
    assert result["seeds"] == [0, 1, 2, 3, 4]
    assert result["gain"].per_seed == pytest.approx((0.2, 0.3, 0.4, 0.5, 0.6))
    assert result["gain"].gain == pytest.approx(0.4)
    # t(4) = 2.776, sd of (0.2 .. 0.6) = 0.1581: half-width 0.1963
    assert result["gain"].ci95 == pytest.approx((0.4 - 0.1963, 0.4 + 0.1963), abs=1e-3)
    assert result["gain"].verdict == "helps"
    lines = compare_runs.format_comparison(result)
    assert lines[-1] == ("second minus first, paired over seeds [0, 1, 2, 3, 4]: +0.40 points [+0.20, +0.60]: "
                         "helps (one test image = 0.05 points)")
    assert "taught by cnn (491,434 parameters, test 0.9925): test 0.9860 ± 0.0032" in lines[1]


def test_runs_on_other_splits_or_without_a_shared_seed_are_refused(tmp_path: Path, capsys) -> None:
    direct = _summary("direct", [0, 1], [0.98, 0.97])
    other = copy.deepcopy(direct)
    other["dataset"] = {**DATASET, "test": 1000}
    with pytest.raises(ValueError, match="not tested on the same split: their dataset test differ"):
        compare_runs.compare(direct, other)
    with pytest.raises(ValueError, match="share no final seed"):
        compare_runs.compare(direct, _summary("later", [7, 8], [0.98, 0.97]))

    for name, summary in (("a", direct), ("b", _summary("b", [1, 0], [0.99, 0.98]))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "second minus first, paired over seeds [0, 1]: +1.00 points [-11.71, +13.71]" in capsys.readouterr().out
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("compare_runs: ") and "missing" in error and len(error.strip().splitlines()) == 1
