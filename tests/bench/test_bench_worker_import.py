"""``bench/bench_worker_import.py`` times a Ray worker's import in fresh interpreters, two checkouts side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.scripts import load_bench_script

REPO = Path(__file__).resolve().parents[2]


def test_the_bench_times_a_worker_import_against_another_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench_script("bench_worker_import")
    assert bench.main(["--against", str(REPO), "--repeats", "1", "--module", "tuning.seed_runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("1 fresh imports per module")
    timed = [line for line in lines if line.startswith("import tuning.seed_runs ") and "CPU median" in line]
    assert len(timed) == 2 and all("loads none of" in line for line in timed)  # this checkout, and the same again
    [ratio] = [line for line in lines if "this / against" in line]
    assert ratio.startswith("import tuning.seed_runs ") and float(ratio.rsplit(" ", 1)[1]) > 0
    assert not [line for line in lines if "tuning.trainable" in line]  # --module named the one to time


def test_the_bench_refuses_a_folder_that_is_not_a_checkout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench_script("bench_worker_import")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--against", str(tmp_path)])
    assert exit_info.value.code == 2 and "is not a kdsearch checkout" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--module", "tuning.runner"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
