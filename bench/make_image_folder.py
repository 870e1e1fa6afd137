"""Write an image folder of 28x28 grayscale digits, the shape of a user's own MNIST-like data.

Issue 10's target 1 measures a search on such a folder (``--dataset imagefolder``). No data can be
downloaded here, so the images are made from scikit-learn's 1,797 digits: each 8x8 original is scaled
to 20x20, rotated by up to 12 degrees, placed at a random offset inside a 28x28 canvas and given a little
pixel noise, so the 10,000 images are all different and the task is harder than the 8x8 originals.

    .venv/bin/python bench/make_image_folder.py /tmp/digits-folder            # 10,000 PNGs, about 10 s
    .venv/bin/python bench/make_image_folder.py /tmp/small --images 500
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

SIZE = 28
DIGIT_SIZE = 20
MAX_ROTATION_DEGREES = 12.0
NOISE_STD = 12.0


def render(original: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 28x28 grayscale image of an 8x8 digit (pixel values 0-16)."""
    digit = Image.fromarray((original * (255 / 16)).astype(np.uint8), mode="L")
    digit = digit.resize((DIGIT_SIZE, DIGIT_SIZE), Image.Resampling.BILINEAR)
    digit = digit.rotate(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES),
                         resample=Image.Resampling.BILINEAR)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = rng.integers(0, SIZE - DIGIT_SIZE + 1, size=2)
    canvas[top:top + DIGIT_SIZE, left:left + DIGIT_SIZE] = np.asarray(digit, dtype=np.float32)
    canvas += rng.normal(0.0, NOISE_STD, canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="L")


def write_folder(root: Path, images: int, seed: int) -> None:
    """``root/<digit>/<index>.png``: ``images`` images, the classes in scikit-learn's proportions."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(digits.target), size=images)
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for index, pick in enumerate(picks):
        render(digits.images[pick], rng).save(root / str(digits.target[pick]) / f"{index:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder to write (one subfolder per class)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_folder(args.root, args.images, args.seed)
    print(f"wrote {args.images} images of {SIZE}x{SIZE} to {args.root}")


if __name__ == "__main__":
    main()
