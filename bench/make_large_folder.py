"""Write a large image folder of 64x64 RGB digits on photographs, in parallel: issue 23's data at real size.

Issue 23 measures loading, caching and memory on a folder of 100,000 colour images, the size of a user's own
data. Nothing can be downloaded here, so the images are made from what ships with scikit-learn: each is a
random crop of one of the two photographs of ``load_sample_images()`` (china.jpg, flower.jpg), resized to
64x64, its colours permuted and scaled, with one of the 1,797 handwritten digits of ``load_digits()`` painted
over it in a contrasting colour (scaled to 45-75 % of the side, rotated by up to 20 degrees, placed at a random
offset). The class is the digit; classes are balanced (image i is digit i mod 10). Image i depends only on
``--seed`` and i, so any worker count writes the same files, and a smaller folder is the first images of a
larger one.

    .venv/bin/python bench/make_large_folder.py /tmp/large-folder                 # 100,000 PNGs, 844 MB, 2:25
    .venv/bin/python bench/make_large_folder.py /tmp/large-folder-25k --images 25000

(2 min 25 s on 2 shared cores, 690 images/s, 2026-12-05; it is CPU-bound: the PNG encoding and resizing.)
"""

from __future__ import annotations

import argparse
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10
MAX_ROTATION_DEGREES = 20.0
DIGIT_SHARE = (0.45, 0.75)  # the digit's side as a share of the image's
SMALLEST_CROP = 48  # px of the 427x640 photographs: below that a crop is a blur of one colour
# The painted digit's colour is at least this far (Euclidean, 0-255 RGB) from the background's mean colour.
MIN_CONTRAST = 120.0
CHUNK = 500  # images per task: enough to amortise the inter-process call, small enough to balance 2 cores

# Filled once per worker process by `_load_sources` (a Pool initializer): the digits and the photographs.
_digit_images: list[np.ndarray] = []  # per class, (n, 8, 8) float in 0..16
_photos: list[Image.Image] = []


def _load_sources() -> None:
    from sklearn.datasets import load_digits, load_sample_images

    digits = load_digits()
    _digit_images[:] = [digits.images[digits.target == label] for label in range(CLASSES)]
    _photos[:] = [Image.fromarray(photo) for photo in load_sample_images().images]


def render(index: int, seed: int, size: int) -> tuple[int, Image.Image]:
    """Image ``index`` of the folder and its class: a digit painted on a recoloured crop of a photograph."""
    rng = np.random.default_rng([seed, index])
    label = index % CLASSES
    background = _background(rng, size)
    mask = _digit_mask(_digit_images[label][rng.integers(len(_digit_images[label]))], rng, size)
    colour = _contrasting_colour(background.reshape(-1, 3).mean(axis=0), rng)
    opacity = mask[..., None] * rng.uniform(0.75, 1.0)
    pixels = background * (1.0 - opacity) + colour * opacity
    return label, Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of a photograph, resized to ``size``, colours permuted and scaled: (size, size, 3)."""
    photo = _photos[rng.integers(len(_photos))]
    side = int(rng.integers(SMALLEST_CROP, min(photo.size) + 1))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    pixels = np.asarray(crop, dtype=np.float32)[..., rng.permutation(3)]
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return np.clip(pixels * rng.uniform(0.6, 1.4, size=3), 0, 255)


def _digit_mask(original: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """The 8x8 digit scaled, rotated and placed in a (size, size) canvas: ink coverage in 0..1."""
    side = int(round(size * rng.uniform(*DIGIT_SHARE)))
    # A blank 1 px border: digits whose ink touches the 8x8 edge would otherwise be cut off square.
    padded = np.pad(original, 1)
    digit = Image.fromarray((padded * (255 / 16)).astype(np.uint8), mode="L")
    digit = digit.resize((side, side), Image.Resampling.BICUBIC)
    digit = digit.rotate(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES), resample=Image.Resampling.BILINEAR)
    canvas = np.zeros((size, size), dtype=np.float32)
    top, left = rng.integers(0, size - side + 1, size=2)
    canvas[top:top + side, left:left + side] = np.asarray(digit, dtype=np.float32) / 255
    return canvas


def _contrasting_colour(mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour at least `MIN_CONTRAST` from ``mean``; its complement when the draw is too close."""
    colour = rng.uniform(0, 255, size=3)
    if np.linalg.norm(colour - mean) < MIN_CONTRAST:
        colour = 255 - mean + rng.uniform(-30, 30, size=3)
    return np.clip(colour, 0, 255)


def _write_chunk(task: tuple[Path, range, int, int]) -> int:
    root, indices, seed, size = task
    for index in indices:
        label, image = render(index, seed, size)
        image.save(root / str(label) / f"{index:06d}.png")
    return len(indices)


def write_folder(root: Path, images: int, size: int = 64, seed: int = 0, workers: int | None = None) -> None:
    """``root/<digit>/<index>.png``: ``images`` RGB images of ``size`` x ``size``, written by ``workers`` processes."""
    for label in range(CLASSES):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    tasks = [(root, range(start, min(start + CHUNK, images)), seed, size) for start in range(0, images, CHUNK)]
    with Pool(workers or os.cpu_count() or 1, initializer=_load_sources) as pool:
        for _ in pool.imap_unordered(_write_chunk, tasks):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder to write (one subfolder per class)")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64, help="side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    args = parser.parse_args()
    if args.images < 1 or args.size < 8:
        parser.error("--images must be at least 1 and --size at least 8")
    started = time.perf_counter()
    write_folder(args.root, args.images, args.size, args.seed, args.workers)
    seconds = time.perf_counter() - started
    print(f"wrote {args.images:,} images of {args.size}x{args.size} RGB to {args.root} in {seconds:.1f} s "
          f"({args.images / seconds:,.0f} images/s)")


if __name__ == "__main__":
    main()
