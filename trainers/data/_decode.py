"""Decoding a user's images once, in parallel, into a uint8 (N, C, H, W) memory map.

Two passes over the files, each spread over every core: the first reads only the headers (mode and size,
so the store's channels and size are known before any pixel is decoded), the second decodes each image
into its row of the map. A file that cannot be read is left out with its reason and never stops the run;
`load_dataset` refuses a source that would lose more than `MAX_LOST_FRACTION` of its images.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

Log = Callable[[str], None]
MAX_LOST_FRACTION = 0.01
# Below this many files one process decodes them: starting workers would cost more than it saves.
PARALLEL_FROM = 512
PROGRESS_EVERY_S = 5.0

# Pillow modes with one grey band ("LA" and "La" add alpha, which is dropped); "I;16" and kin by prefix.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})

Probe = tuple[bool, int, int]  # (greyscale, width, height)


def cores() -> int:
    """The cores this process may use (its affinity, which a batch job or container sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def probe_files(files: Sequence[Path], log: Log | None, what: str) -> tuple[list[Probe | None], dict[int, str]]:
    """Each file's (greyscale, width, height) from its header alone, and the reasons of those that fail."""
    results = _in_chunks(_probe_chunk, [(index, str(path)) for index, path in enumerate(files)], (),
                         log, f"reading the headers of {len(files):,} images of {what}")
    probes: list[Probe | None] = [None] * len(files)
    failures: dict[int, str] = {}
    for index, probe, reason in results:
        if probe is None:
            failures[index] = reason
        else:
            probes[index] = probe
    return probes, failures


def common_shape(probes: Sequence[Probe | None], image_size: int | None) -> tuple[int, int, int]:
    """(C, H, W) of the store: 1 channel if every image is greyscale, else 3; ``image_size`` square if given,
    else the most common size, ties going to the larger (no detail is thrown away)."""
    present = [probe for probe in probes if probe is not None]
    channels = 1 if all(grey for grey, _, _ in present) else 3
    if image_size is not None:
        return channels, image_size, image_size
    counts = Counter((height, width) for _, width, height in present)
    height, width = max(counts, key=lambda hw: (counts[hw], hw[0] * hw[1], hw))
    return channels, height, width


def decode_files(files: Sequence[Path], rows: Sequence[int], images_path: Path, shape: tuple[int, int, int],
                 log: Log | None, what: str) -> dict[int, str]:
    """Decode ``files[i]`` into row ``rows[i]`` of the ``.npy`` map at ``images_path``; the failures' reasons,
    by row."""
    tasks = [(row, str(path)) for row, path in zip(rows, files, strict=True)]
    results = _in_chunks(_decode_chunk, tasks, (str(images_path), shape), log,
                         f"decoding {len(files):,} images of {what}")
    return {row: reason for row, reason in results}


def _in_chunks(work: Callable, tasks: list, extra: tuple, log: Log | None, doing: str) -> list:
    """``work(chunk, *extra)`` over chunks of ``tasks`` on every core, with a progress line and an ETA."""
    if len(tasks) < PARALLEL_FROM or cores() == 1:
        return list(work(tasks, *extra))
    workers = cores()
    size = max(64, len(tasks) // (workers * 16))
    chunks = [tasks[start:start + size] for start in range(0, len(tasks), size)]
    results: list = []
    started = last = time.perf_counter()
    done = 0
    # fork: the workers need nothing but Pillow and numpy, and start in milliseconds.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {pool.submit(work, chunk, *extra): len(chunk) for chunk in chunks}
        for future in as_completed(futures):
            results.extend(future.result())
            done += futures[future]
            now = time.perf_counter()
            if log is not None and (now - last >= PROGRESS_EVERY_S or done == len(tasks)) and now > started:
                rate = done / (now - started)
                left = (len(tasks) - done) / rate if rate > 0 else 0.0
                log(f"data: {doing}: {done:,}/{len(tasks):,} ({100 * done / len(tasks):.0f} %), "
                    f"{rate:,.0f} images/s, {_clock(left)} left")
                last = now
    return results


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


def _probe_chunk(tasks: list[tuple[int, str]]) -> list[tuple[int, Probe | None, str]]:
    from PIL import Image

    results = []
    for index, path in tasks:
        reason = _unusable(path)
        if reason is None:
            try:
                with Image.open(path) as image:
                    results.append((index, (image.mode in _GREY_MODES or image.mode.startswith("I"),
                                            *image.size), ""))
                    continue
            except Exception as error:  # noqa: BLE001 - Pillow raises many types for a damaged file
                reason = _reason(error)
        results.append((index, None, reason))
    return results


def _decode_chunk(tasks: list[tuple[int, str]], images_path: str,
                  shape: tuple[int, int, int]) -> list[tuple[int, str]]:
    images = np.load(images_path, mmap_mode="r+")
    channels, height, width = shape
    failures = []
    for row, path in tasks:
        try:
            pixels = _read_image(path, channels, (width, height))
        except Exception as error:  # noqa: BLE001 - a file that passed its header check can still be truncated
            failures.append((row, _reason(error)))
            continue
        images[row] = pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels
    images.flush()
    del images
    return failures


def _unusable(path: str) -> str | None:
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
    except OSError:
        return "missing"
    return None


def _reason(error: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not a readable image"
    detail = str(error).splitlines()[0] if str(error) else ""
    return f"corrupt ({type(error).__name__}{': ' + detail if detail else ''})"


def _read_image(path: str, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image as uint8 (H, W) or (H, W, 3) at ``size`` (W, H): decoded, grey or RGB, resized (bilinear)."""
    from PIL import Image

    with Image.open(path) as image:
        plain = _grey_or_rgb(image)
        if channels == 3 and plain.mode == "L":
            plain = plain.convert("RGB")
        if plain.size != size:
            plain = plain.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(plain, dtype=np.uint8)


def _grey_or_rgb(image: PILImage) -> PILImage:
    """`image` decoded as 8-bit "L" if it has one grey band, else as "RGB" (palette, CMYK, alpha, ...)."""
    from PIL import Image

    mode = image.mode
    if mode.startswith("I"):
        # 16-bit greyscale (PNG) has levels up to 65535, which convert("L") would clip at 255 rather than scale.
        levels = np.asarray(image, dtype=np.float64) / 257
        return Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8))
    if mode in ("L", "RGB"):
        image.load()
        return image
    return image.convert("L" if mode in _GREY_MODES else "RGB")
