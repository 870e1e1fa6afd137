"""``bench/bench_search.py``'s pure parts: the targets, Ray's task timeline, the run's compute floor, and the
CPU seconds by process."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_processes_are_sorted_into_roles_by_the_titles_ray_gives_them() -> None:
    assert bench.process_role({"ray::IDLE", "ray::ImplicitFunc.train"}) == "trial actors"
    assert bench.process_role({"ray::IDLE", "ray::train_seed"}) == "final-stage task workers"
    assert bench.process_role({"ray::finetune_seed"}) == "final-stage task workers"
    assert bench.process_role({"ray::IDLE"}) == "idle workers"
    assert bench.process_role({"/venv/lib/ray/core/src/ray/raylet/raylet --raylet_socket_name=x"}) == \
        "Ray's own processes"
    titles = {1: {"ray::ImplicitFunc.train"}, 2: {"ray::ImplicitFunc"}, 3: {"ray::IDLE"}, 4: set()}
    assert bench.cpu_by_role({1: 2.0, 2: 3.0, 3: 0.5, 4: 1.0}, titles) == {
        "trial actors": (2, 5.0), "idle workers": (1, 0.5), "Ray's own processes": (1, 1.0)}


def test_the_sampler_sees_a_child_s_cpu_seconds() -> None:
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(0.5)"
    with bench.ProcessCpu(period_s=0.05) as cpu:
        child = subprocess.Popen([sys.executable, "-c", burn])
        child.wait(timeout=30)
    assert cpu.cpu_seconds[child.pid] >= 0.5  # sampled while it slept after burning
    assert any("time.process_time" in title for title in cpu.titles[child.pid])
    assert cpu.driver_s >= 0


def test_descendants_follow_the_parent_links() -> None:
    table = {10: (1, "driver", 0.0), 11: (10, "raylet", 0.0), 12: (11, "ray::IDLE", 0.0), 13: (1, "other", 0.0)}
    assert sorted(bench.descendants(table, 10)) == [11, 12]
