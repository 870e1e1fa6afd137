"""Decoding a user's images once, in parallel, into a uint8 (N, C, H, W) memory map.

Two passes over the files, each spread over every core: the first reads only the headers (mode and size,
so the store's channels and size are known before any pixel is decoded), the second decodes each image
into its row of the map. A file that cannot be read is left out with its reason and never stops the run;
`load_dataset` refuses a source that would lose more than `MAX_LOST_FRACTION` of its images.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runfolder import atomic_write_json
from trainers.data._store import PROGRESS_FILE
from trainers.files import fsync_path

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

Log = Callable[[str], None]
MAX_LOST_FRACTION = 0.01
# Below this many files one process decodes them: starting workers would cost more than it saves.
PARALLEL_FROM = 512
PROGRESS_EVERY_S = 5.0
# Rows per decode chunk: fixed, so that a decode gone on with on a machine with other cores has the same chunks.
DECODE_CHUNK = 256
# How often the chunks decoded so far are recorded (a killed decode loses at most about this much).
SAVE_EVERY_S = 60.0

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
    tasks = [(index, str(path)) for index, path in enumerate(files)]
    results: list[tuple[int, Probe | None, str]] = []
    size = max(64, len(tasks) // (cores() * 16))  # any chunks do: a probe keeps no progress
    _in_chunks(_probe_chunk, [tasks[start:start + size] for start in range(0, len(tasks), size)], (), log,
               f"reading the headers of {len(files):,} images of {what}", lambda _, result: results.extend(result))
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


class DecodeStopped(Exception):
    """A stop request ended a decode after ``done`` of ``total`` images, kept in ``folder`` for the next load."""

    def __init__(self, done: int, total: int, folder: Path) -> None:
        super().__init__(f"data: decoding stopped after {done:,}/{total:,} images, kept in {folder}")
        self.done, self.total, self.folder = done, total, folder


def decode_files(files: Sequence[Path], rows: Sequence[int], images_path: Path, shape: tuple[int, int, int],
                 log: Log | None, what: str, save_every_s: float | None = None,
                 stop_requested: Callable[[], bool] | None = None) -> dict[int, str]:
    """Decode ``files[i]`` into row ``rows[i]`` of the ``.npy`` map at ``images_path``; the failures' reasons,
    by row.

    Chunks of ``DECODE_CHUNK`` rows finished are recorded beside the map (``PROGRESS_FILE``, with a digest of each
    chunk's pixels) at most every ``save_every_s`` (default ``SAVE_EVERY_S``): a decode killed or stopped goes on
    from them when called again on the same map (its rows and shape the same), and a chunk whose pixels fail their
    digest is decoded again. When ``stop_requested()`` turns true, the chunks being decoded are finished, the
    others not started, the record kept, and ``DecodeStopped`` raised."""
    tasks = [(row, str(path)) for row, path in zip(rows, files, strict=True)]
    chunks = [tasks[start:start + DECODE_CHUNK] for start in range(0, len(tasks), DECODE_CHUNK)]
    doing = f"decoding {len(files):,} images of {what}"
    progress = _Progress(images_path.with_name(PROGRESS_FILE), tasks, shape,
                         SAVE_EVERY_S if save_every_s is None else save_every_s)
    kept = progress.kept(images_path, chunks)
    if kept and log is not None:
        log(f"data: {doing}: going on from {sum(len(chunks[index]) for index in kept):,} images decoded by an "
            f"earlier attempt ({images_path.parent})")
    left = [index for index in range(len(chunks)) if index not in kept]
    failures: dict[int, str] = {row: reason for index in kept for row, reason in kept[index]}

    def done(index: int, result: tuple[list[tuple[int, str]], str]) -> None:
        chunk_failures, digest = result
        failures.update(chunk_failures)
        progress.done(index, chunk_failures, digest, images_path)

    stop = stop_requested or (lambda: False)
    _in_chunks(_decode_chunk, [chunks[index] for index in left], (str(images_path), shape), log, doing,
               lambda position, result: done(left[position], result), should_stop=stop)
    if len(progress.chunks) < len(chunks):
        progress.save(images_path)
        raise DecodeStopped(sum(len(chunks[index]) for index in progress.chunks), len(tasks), images_path.parent)
    return failures


class _Progress:
    """The chunks of one decode finished so far, with their failures and pixel digests, kept in ``path``."""

    def __init__(self, path: Path, tasks: list[tuple[int, str]], shape: tuple[int, int, int],
                 save_every_s: float) -> None:
        self.path, self.save_every_s = path, save_every_s
        # What the record is of: the same rows of the same map (the files' key names the folder already).
        described = json.dumps([[row for row, _ in tasks], list(shape), DECODE_CHUNK])
        self.of = hashlib.sha256(described.encode()).hexdigest()
        self.chunks: dict[int, list] = {}
        self.saved = time.monotonic()

    def kept(self, images_path: Path, chunks: list[list[tuple[int, str]]]) -> dict[int, list[tuple[int, str]]]:
        """The failures of each chunk an earlier decode of this map finished whose pixels still match its digest."""
        try:
            record = json.loads(self.path.read_text())
            if record.get("of") != self.of:
                return {}
            images = np.load(images_path, mmap_mode="r")
            kept = {}
            for index_text, (chunk_failures, digest) in record["chunks"].items():
                index = int(index_text)
                if 0 <= index < len(chunks) and _digest(images, chunks[index]) == digest:
                    kept[index] = [(int(row), str(reason)) for row, reason in chunk_failures]
                    self.chunks[index] = [chunk_failures, digest]
            return kept
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def done(self, index: int, chunk_failures: list[tuple[int, str]], digest: str, images_path: Path) -> None:
        self.chunks[index] = [chunk_failures, digest]
        if time.monotonic() - self.saved >= self.save_every_s:
            self.save(images_path)

    def save(self, images_path: Path) -> None:
        fsync_path(images_path)  # the chunks' pixels on disk before the record names them
        chunks = {str(index): value for index, value in self.chunks.items()}
        atomic_write_json(self.path, {"of": self.of, "chunks": chunks})
        self.saved = time.monotonic()


def _digest(images: np.ndarray, chunk: list[tuple[int, str]]) -> str:
    digest = hashlib.sha256()
    for row, _ in chunk:  # each row read in place from the map (a copy of the chunk would cost 3x the hash)
        digest.update(images[row].data)
    return digest.hexdigest()


def _in_chunks(work: Callable, chunks: list[list], extra: tuple, log: Log | None, doing: str,
               on_chunk: Callable[[int, Any], None], should_stop: Callable[[], bool] = lambda: False) -> None:
    """``work(chunk, *extra)`` over ``chunks`` on every core, with a progress line and an ETA; ``on_chunk(position,
    result)`` is called in this process as each finishes. Once ``should_stop()`` is true after a chunk, the chunks
    not started are dropped and those running are finished."""
    count = sum(map(len, chunks))
    if count < PARALLEL_FROM or cores() == 1:
        for position, chunk in enumerate(chunks):
            if should_stop():
                break
            on_chunk(position, work(chunk, *extra))
        return
    started = last = time.perf_counter()
    done = 0
    # fork: the workers need nothing but Pillow and numpy, and start in milliseconds.
    with ProcessPoolExecutor(cores(), mp_context=multiprocessing.get_context("fork"),
                             initializer=_leave_signals_to_the_parent) as pool:
        futures = {pool.submit(work, chunk, *extra): position for position, chunk in enumerate(chunks)}
        for future in as_completed(futures):
            if future.cancelled():
                continue
            position = futures[future]
            on_chunk(position, future.result())
            done += len(chunks[position])
            now = time.perf_counter()
            if log is not None and (now - last >= PROGRESS_EVERY_S or done == count) and now > started:
                rate = done / (now - started)
                left = (count - done) / rate if rate > 0 else 0.0
                log(f"data: {doing}: {done:,}/{count:,} ({100 * done / count:.0f} %), "
                    f"{rate:,.0f} images/s, {_clock(left)} left")
                last = now
            if should_stop():
                for pending in futures:
                    pending.cancel()  # those not started; a running chunk is finished and handled above


def _leave_signals_to_the_parent() -> None:
    """A decoding process ignores Ctrl-C, SIGTERM and SIGUSR1 (a terminal's or a batch system's signal reaches the
    whole process group): the parent decides, finishing or dropping the chunks, and ends the pool itself."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(number, signal.SIG_IGN)


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
                  shape: tuple[int, int, int]) -> tuple[list[tuple[int, str]], str]:
    """Decode a chunk into its rows of the map: its failures, and the digest of its rows' pixels."""
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
    digest = _digest(images, tasks)
    del images
    return failures, digest


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
