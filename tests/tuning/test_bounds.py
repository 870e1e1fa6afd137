"""Size bounds: the flags' values, which bounds apply, and latencies measured once and cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuning.bounds import (
    BoundError,
    LatencyCache,
    StudentMeasures,
    check_bound_flags,
    pareto_measure,
    parse_max_flops,
    size_bounds,
)


@pytest.mark.parametrize(("text", "flops"), [("20000000", 20_000_000), ("2e7", 20_000_000), ("20M", 20_000_000),
                                             ("1.5G", 1_500_000_000), ("300k", 300_000), (" 7 m ", 7_000_000)])
def test_max_flops_takes_counts_exponents_and_suffixes(text: str, flops: int) -> None:
    assert parse_max_flops(text) == flops


@pytest.mark.parametrize("text", ["0", "-5M", "lots", "5X", "0.5", "inf", ""])
def test_max_flops_refuses_what_is_not_a_positive_count(text: str) -> None:
    with pytest.raises(BoundError, match="--max-flops must be a positive number of FLOPs"):
        parse_max_flops(text)


def test_another_bound_replaces_the_default_parameter_bound_but_not_a_given_one() -> None:
    alone = {"max_flops": "20M"}
    check_bound_flags(alone)
    assert alone == {"max_flops": 20_000_000, "max_params": "none"}
    given = {"max_latency_ms": 2, "max_params": " 5% "}
    check_bound_flags(given)
    assert given == {"max_latency_ms": 2.0, "max_params": "5%"}
    default: dict[str, Any] = {}
    check_bound_flags(default)
    assert default == {}  # the spec's default, 2 %, applies


def test_bounds_run_cheapest_first_and_pareto_trades_against_the_closest_to_deployment() -> None:
    measures = StudentMeasures(params=lambda *student: 1, flops=lambda *student: 2, latency_ms=lambda *student: 3)
    limits = {"max_params": None, "max_flops": 10, "max_latency_ms": 0.5}
    assert [bound.key for bound in size_bounds(limits, measures)] == ["flops", "latency_ms"]
    assert pareto_measure(limits) == "latency_ms"
    assert pareto_measure({"max_params": 5, "max_flops": 10}) == "flops"
    assert pareto_measure({"max_params": 5}) == "params"


def test_a_latency_is_measured_once_per_student_and_shape_and_a_damaged_entry_is_measured_again(
        tmp_path: Path) -> None:
    timings = iter([1.5, 2.5, 3.5])
    cache = LatencyCache(tmp_path / "latency", lambda arch: next(timings), "onnxruntime")
    arch = {"family": "cnn", "depth": 1, "width": 4}
    assert cache.latency_ms(arch, (1, 8, 8)) == 1.5
    assert cache.latency_ms(arch, (1, 8, 8)) == 1.5  # from the cache
    assert cache.measured == 1
    assert cache.latency_ms(arch, (1, 28, 28)) == 2.5  # another input size is another measurement
    [entry] = [path for path in (tmp_path / "latency").iterdir() if "1.5" in path.read_text()]
    assert '"runtime": "onnxruntime"' in entry.read_text() and '"cpu"' in entry.read_text()
    entry.write_text("{not json")
    assert cache.latency_ms(arch, (1, 8, 8)) == 3.5 and cache.measured == 3
    again = LatencyCache(tmp_path / "latency", lambda arch: pytest.fail("measured again"), "onnxruntime")
    assert again.latency_ms(arch, (1, 8, 8)) == 3.5 and again.measured == 0
