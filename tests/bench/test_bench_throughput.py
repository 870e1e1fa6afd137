"""bench/bench_throughput.py's ceiling: how far any data path could lift a step over the plain loop's."""

from __future__ import annotations

import math

from tests.bench.scripts import load_bench_script


def _bench() -> object:
    return load_bench_script("bench_throughput")


def test_the_ceiling_is_the_plain_step_over_kdsearchs_compute_alone() -> None:
    reachable_ratio = _bench().reachable_ratio  # type: ignore[attr-defined]
    # Plain 1 ms per image; kdsearch 0.5 ms, of which its data path 0.1 ms: its compute is 0.4 ms.
    assert math.isclose(reachable_ratio(1000.0, 2000.0, 10000.0), 1 / 0.4)
    # kdsearch 0.5 ms, of which its data path 1/6 ms: a free one leaves 1/3 ms, just the 3x target.
    assert math.isclose(reachable_ratio(1000.0, 2000.0, 6000.0), 3.0)
    # A data path measured slower than kdsearch's whole step (noise): no bound can be told.
    assert reachable_ratio(1000.0, 2000.0, 1900.0) == math.inf
