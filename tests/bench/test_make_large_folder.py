"""bench/make_large_folder.py writes 64x64 RGB digits that kdsearch's image-folder reader loads, the same
files whatever the number of worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trainers import load_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "make_large_folder.py"
# The reader splits 60/20/20 stratified: 50 images give validation and test one image of each of 10 classes.
IMAGES = 50


def _write(root: Path, workers: int) -> None:
    written = subprocess.run([sys.executable, str(SCRIPT), str(root), "--images", str(IMAGES), "--workers",
                              str(workers)], capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stderr


def test_the_folder_loads_as_64x64_rgb_digits_and_does_not_depend_on_the_workers(tmp_path: Path) -> None:
    _write(tmp_path / "two", workers=2)
    assert sorted(path.name for path in (tmp_path / "two").iterdir()) == [str(digit) for digit in range(10)]
    files = sorted((tmp_path / "two").rglob("*.png"))
    assert len(files) == IMAGES
    data = load_dataset("imagefolder", str(tmp_path / "two"))
    assert data.info.input_shape == (3, 64, 64) and data.info.num_classes == 10
    assert sum(data.sizes().values()) == IMAGES
    # Different images, not copies of a few originals.
    assert len({tuple(image.flatten().tolist()) for image in data.train_x}) == len(data.train_x)

    _write(tmp_path / "one", workers=1)
    assert all(path.read_bytes() == (tmp_path / "one" / path.relative_to(tmp_path / "two")).read_bytes()
               for path in files)
