"""``bench/bench_sizing.py`` runs and prints one line per family, cold then warm."""

from __future__ import annotations

import pytest

from tests.bench.scripts import load_bench_script


def test_sizing_prints_each_family_and_times_nothing_on_a_warm_cache(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench_script("bench_sizing")
    bench.main(["--families", "cnn", "--max-latency-ms", "0.5", "--max-flops", "200k"])
    lines = capsys.readouterr().out.splitlines()
    [row] = [line for line in lines if line.startswith("cnn |")]
    params, flops, latency, warm, widest = row.split(" | ")[1:]
    assert int(latency.split("(")[1].rstrip(")")) > 0  # students timed on the cold cache
    assert warm.endswith("(0)")  # none on the warm one
    assert widest.startswith("d1 w")
