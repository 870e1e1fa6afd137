"""``bench/bench_search.py``'s pure parts: the targets, Ray's task timeline, and the run's compute floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.scripts import load_bench_script

bench = load_bench_script("bench_search")


def test_the_wall_targets_are_the_performance_issue_s() -> None:
    assert bench.wall_target("digits", "cache") == 60.0
    assert bench.wall_target("digits", "trained") == 90.0
    assert bench.wall_target("imagefolder", "trained") == 600.0


def test_the_timeline_sums_the_final_stage_s_tasks() -> None:
    timeline = [{"ph": "X", "cat": "task::train_seed", "dur": 2_000_000},
                {"ph": "X", "cat": "task::train_seed", "dur": 500_000},
                {"ph": "X", "cat": "task::finetune_seed", "dur": 1_000_000},
                {"ph": "X", "cat": "task::other", "dur": 9_000_000},
                {"ph": "i", "cat": "task::train_seed", "dur": 9_000_000}]
    assert bench.final_stage_busy(timeline) == {"train_seed": (2, 2.5), "finetune_seed": (1, 1.0)}


def test_the_compute_floor_spreads_every_training_over_the_slots(tmp_path: Path) -> None:
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "trials.json").write_text(json.dumps([{"busy_s": 3.0}, {"busy_s": 1.0}]))
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "trials.json").write_text(json.dumps([{"busy_s": 2.0}, {"busy_s": None}]))
    busy = bench.sub_search_busy(tmp_path)
    assert busy == {"recipe": 4.0, "baseline": 2.0}
    assert bench.compute_floor(10.0, 20.0, busy, 14.0, 2) == pytest.approx(10.0 + (20 + 4 + 2 + 14) / 2)
    assert bench.sub_search_busy(tmp_path / "missing") == {}
