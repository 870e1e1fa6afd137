"""bench/bench_data.py's pure parts: smaps_rollup, which processes a search's memory sums over, the verdict."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bench.scripts import load_bench_script

KB = 1024


def _bench() -> object:
    return load_bench_script("bench_data")


bench = _bench()

SMAPS_ROLLUP = """\
00400000-ffffffffff601000 ---p 00000000 00:00 0                          [rollup]
Rss:             5242880 kB
Pss:             1310720 kB
Pss_Anon:          20480 kB
Pss_Shmem:       1290240 kB
Shared_Clean:          0 kB
Anonymous:         20480 kB
"""


def test_smaps_rollup_fields_are_read_in_bytes() -> None:
    fields = bench.parse_smaps_rollup(SMAPS_ROLLUP)
    assert fields["Rss"] == 5242880 * KB and fields["Pss"] == 1310720 * KB and fields["Pss_Shmem"] == 1290240 * KB
    assert "00400000-ffffffffff601000 ---p 00000000 00" not in fields  # the address line is no field


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/smaps_rollup").exists(), reason="needs Linux's smaps_rollup")
def test_this_process_has_a_pss_no_larger_than_its_rss() -> None:
    rss, pss, pss_shmem = bench.read_process_memory(os.getpid())
    assert 0 < pss <= rss and 0 <= pss_shmem <= pss


def test_the_tree_is_the_root_its_descendants_and_its_reparented_processes() -> None:
    # 10 is search.py; 11 raylet, 12 gcs, 13 a worker of the raylet; 20 and 21 another user's; 30 was a
    # worker of the tree, re-parented to init (1) when its parent exited; 31 is a reused pid.
    parents = {1: 0, 10: 5, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20, 30: 1, 31: 1}
    started = dict.fromkeys(parents, 100.0) | {31: 200.0}
    first = bench.processes_to_count(parents, started, root=10, seen={})
    assert set(first) == {10, 11, 12, 13}
    later = bench.processes_to_count(parents, started, root=10, seen=first | {30: 100.0, 31: 150.0})
    assert set(later) == {10, 11, 12, 13, 30}
    # The root gone: its processes seen before still count, nothing else does.
    assert set(bench.processes_to_count({1: 0, 13: 1}, {1: 100.0, 13: 100.0}, root=10, seen=later)) == {13}


def test_roles_come_from_the_process_names_ray_gives() -> None:
    role = bench.process_role
    assert role(10, 10, "python", ["python", "search.py"]) == "driver"
    assert role(11, 10, "raylet", ["/x/ray/core/src/ray/raylet/raylet", "--node"]) == "raylet"
    assert role(12, 10, "gcs_server", ["/x/gcs_server"]) == "gcs"
    assert role(13, 10, "ray::ImplicitFunc", ["ray::ImplicitFunc.train"]) == "worker"
    assert role(14, 10, "python", ["python", "/x/ray/_private/workers/default_worker.py"]) == "worker"
    assert role(15, 10, "python", ["python", "-m", "ray.dashboard.agent"]) == "other"


def test_sums_are_per_role_and_overall() -> None:
    totals = bench.sum_memory([
        bench.ProcessMemory(1, "driver", rss=5, pss=4),
        bench.ProcessMemory(2, "worker", rss=7, pss=3, pss_shmem=2),
        bench.ProcessMemory(3, "worker", rss=7, pss=3, pss_shmem=2),
    ])
    assert (totals.rss, totals.pss, totals.pss_shmem) == (19, 10, 4)
    assert totals.by_role == {"driver": (1, 5, 4), "worker": (2, 14, 6)}


def test_the_verdict_is_the_peak_over_one_and_a_half_uint8_sizes_plus_rays_baseline() -> None:
    at_limit = bench.memory_verdict(peak=1_500 + 700, uint8_bytes=1_000, baseline_peak=700)
    assert at_limit.limit == 2_200 and at_limit.ratio == 1.0 and at_limit.passed
    over = bench.memory_verdict(peak=4_400, uint8_bytes=1_000, baseline_peak=700)
    assert over.ratio == 2.0 and not over.passed
