"""bench/make_image_folder.py writes a folder that kdsearch's image-folder reader loads as 28x28 greyscale digits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trainers import load_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "make_image_folder.py"


def test_the_folder_loads_as_28x28_greyscale_digits_of_10_classes(tmp_path: Path) -> None:
    written = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "digits"), "--images", "200"],
                             capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stderr
    assert sorted(path.name for path in (tmp_path / "digits").iterdir()) == [str(digit) for digit in range(10)]
    assert len(list((tmp_path / "digits").rglob("*.png"))) == 200
    data = load_dataset("imagefolder", str(tmp_path / "digits"))
    assert data.info.input_shape == (1, 28, 28) and data.info.num_classes == 10
    assert sum(data.sizes().values()) == 200
    # Different images, not 200 copies of a few originals.
    assert len({tuple(image.flatten().tolist()) for image in data.train_x[:]}) == len(data.train_x[:])
