"""``bench/bench_rungs.py``: Spearman's rho against hand values, ASHA's rungs, and the table from a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.scripts import load_bench_script

bench = load_bench_script("bench_rungs")


def test_spearman_matches_hand_values_with_ties() -> None:
    assert bench.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (0, 0, -1, 1): rho = 1 - 6 * 2 / (4 * 15)
    assert bench.spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)


def test_rungs_follow_the_scheduler() -> None:
    assert bench.rungs(15) == [3, 12]
    assert bench.rungs(4) == [1]


def test_the_table_reads_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curves = {"a": [0.1, 0.5, 0.9], "b": [0.2, 0.4, 0.8], "c": [0.3, 0.3, 0.7], "d": [0.0, 0.1, 0.2]}
    records = [{"trial_id": name, "state": "COMPLETE",
                "curve": [{"epoch": e + 1, "val_accuracy": acc} for e, acc in enumerate(accs)]}
               for name, accs in curves.items()]
    records.append({"trial_id": "stopped", "state": "STOPPED", "curve": [{"epoch": 1, "val_accuracy": 0.9}]})
    (tmp_path / "trials.json").write_text(json.dumps(records))
    (tmp_path / "spec.json").write_text(json.dumps({"epochs": 3}))
    [row] = bench.rung_table(records, 3)
    assert (row["rung"], row["trials"]) == (1, 4)
    assert row["spearman"] == pytest.approx(bench.spearman([0.1, 0.2, 0.3, 0.0], [0.9, 0.8, 0.7, 0.2]))
    bench.main(["--run-dir", str(tmp_path)])
    assert "1 | 4 |" in capsys.readouterr().out
