"""``bench/bench_decode_progress.py`` prints what a decode's progress costs and a killed decode's cache equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.scripts import load_bench_script
from tests.trainers.test_data import write_image_folder


def test_the_bench_prints_the_cost_and_the_same_images_after_a_kill(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "images"
    write_image_folder(root, per_class=200, shape=(16, 16, 3))  # 600 images: the process pool, 3 chunks
    bench = load_bench_script("bench_decode_progress")
    bench.main(["--data-dir", str(root), "--kill-at", "0.2", "--save-every-s", "0"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{root}: 600 images (3, 16, 16), 3 chunks of 256")
    whole_s, digest_s = (float(cell) for cell in lines[2].split(" | ")[:2])
    assert whole_s > 0 and digest_s > 0
    [verdict] = [line for line in lines if line.startswith("(c)")]
    assert "with 1 chunks kept" in verdict and "going on from 256 images decoded by an earlier attempt" in verdict
    assert verdict.endswith("same images as the whole decode (sha256): yes")
