"""``bench/bench_teacher_progress.py`` prints each teacher's save cost and a stopped training's teacher equal."""

from __future__ import annotations

import pytest

from tests.bench.scripts import load_bench_script


def test_the_bench_prints_the_save_cost_and_the_same_teacher(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench_script("bench_teacher_progress")
    bench.main(["--max-train-samples", "200", "--teachers", "cnn-large", "--epochs", "4", "--stop-after", "2"])
    lines = capsys.readouterr().out.splitlines()
    [row] = [line for line in lines if line.startswith("cnn-large |")]
    epoch_s, save_s, mib = (float(cell) for cell in row.split(" | ")[2:5])
    assert epoch_s > 0 and save_s > 0 and mib > 1  # weights, momentum and the best epoch's weights: 3 x 1.9 MB
    [verdict] = [line for line in lines if line.startswith("(b)")]
    assert "stopped after epoch 2 and gone on with" in verdict
    assert verdict.endswith("same teacher (weight digests): yes")
