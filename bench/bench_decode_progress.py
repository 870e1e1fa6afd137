"""What keeping a decode's progress costs, and that a killed decode goes on to the same image cache.

    .venv/bin/python bench/make_large_folder.py /tmp/large-folder       # 100,000 64x64 RGB PNGs, about 2.5 min
    .venv/bin/python bench/bench_decode_progress.py --data-dir /tmp/large-folder

Each load is ``trainers.load_dataset("imagefolder", ROOT, cache_dir=CACHE)`` in a fresh process, timed around it.

(a) A whole decode into an empty cache.
(b) What the progress adds to it, measured on (a)'s finished cache on one core: the digest of every chunk's pixels
    (``trainers.data._decode._digest``, which the decoding processes compute after each chunk), and one save of
    the record as ``_Progress.done`` writes it (an fsync of the images file and the record); their share of (a)'s
    decode, whose CPU time is (a)'s wall time on every core.
(c) The same decode into another empty cache, its progress kept every ``--save-every-s`` (``SAVE_EVERY_S``; the
    default, 60 s, would keep nothing in a decode shorter than that), killed with its decoding processes
    (SIGKILL to its process group from within, as a batch system ends a job, right after its record first names
    ``--kill-at`` of the chunks), then loaded again: the second load's time, the images it went on from, and whether its
    ``images.npy`` has (a)'s sha256.

Prints a table and the verdict of (c); always exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainers.data import _decode  # noqa: E402
from trainers.data._store import PROGRESS_FILE  # noqa: E402

LOAD = """
import json, os, signal, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from trainers.data import _decode, load_dataset
_decode.SAVE_EVERY_S = {save_every_s!r}
done = _decode._Progress.done
def done_then_killed(self, *args):
    done(self, *args)
    kill_after = {kill_after!r}
    kept = len(json.loads(self.path.read_text())["chunks"]) if self.path.is_file() else 0
    if kill_after is not None and kept >= kill_after:
        os.killpg(0, signal.SIGKILL)  # the whole process group: this process and its decoders
_decode._Progress.done = done_then_killed
started = time.perf_counter()
load_dataset("imagefolder", {root!r}, cache_dir=Path({cache!r}), log=print)
print(f"loaded in {{time.perf_counter() - started:.3f}} s")
"""


def load(root: Path, cache: Path, save_every_s: float = _decode.SAVE_EVERY_S,
         kill_after: int | None = None) -> subprocess.Popen[str]:
    """A fresh process that loads ``root`` through ``cache``, in its own process group (its decoders with it),
    killed with them as soon as its progress record names ``kill_after`` chunks."""
    code = LOAD.format(repo=str(REPO), root=str(root), cache=str(cache), save_every_s=save_every_s,
                       kill_after=kill_after)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finished(process: subprocess.Popen[str]) -> tuple[float, list[str]]:
    """The load's own time and its output lines (raises if it failed)."""
    output, _ = process.communicate()
    lines = output.splitlines()
    if process.returncode != 0:
        raise RuntimeError(f"the load failed ({process.returncode}): {output[-2000:]}")
    [timed] = [line for line in lines if line.startswith("loaded in ")]
    return float(timed.split()[2]), lines


def entry_images(cache: Path) -> Path:
    [images] = [path for path in (cache / "data").glob("*/images.npy") if not path.parent.name.startswith(".")]
    return images


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def progress_cost(images_path: Path) -> dict[str, float]:
    """The digests of every chunk of a finished map, and one save of their record, timed on this process."""
    images = np.load(images_path, mmap_mode="r")
    tasks = [(row, "") for row in range(len(images))]
    chunks = [tasks[start:start + _decode.DECODE_CHUNK] for start in range(0, len(tasks), _decode.DECODE_CHUNK)]
    started = time.perf_counter()
    digests = [_decode._digest(images, chunk) for chunk in chunks]
    digest_s = time.perf_counter() - started
    progress = _decode._Progress(Path(tempfile.mkdtemp()) / PROGRESS_FILE, tasks, images.shape[1:], 0.0)
    progress.chunks = {index: [[], digest] for index, digest in enumerate(digests[:-1])}
    started = time.perf_counter()
    progress.done(len(chunks) - 1, [], digests[-1], images_path)
    save_s = time.perf_counter() - started
    return {"digest_s": digest_s, "save_s": save_s, "chunks": len(chunks),
            "record_kib": progress.path.stat().st_size / 1024}


def killed_and_gone_on(root: Path, cache: Path, kill_at: float, save_every_s: float,
                       chunks: int) -> dict[str, Any]:
    """(c): a load killed once its record names ``kill_at`` of ``chunks``, then a second load."""
    kill_after = max(1, math.ceil(kill_at * chunks))
    first = load(root, cache, save_every_s, kill_after)
    started = time.perf_counter()
    first.communicate()
    killed_s = time.perf_counter() - started
    if first.returncode != -signal.SIGKILL:
        return {"killed": False, "killed_s": killed_s}
    [record] = (cache / "data").glob(f".*.partial/{PROGRESS_FILE}")
    kept = len(json.loads(record.read_text())["chunks"])
    again_s, lines = finished(load(root, cache))
    going_on = [line for line in lines if "going on from" in line]
    return {"killed": True, "killed_s": killed_s, "kept_chunks": kept, "again_s": again_s,
            "going_on": going_on[0] if going_on else None, "digest": file_digest(entry_images(cache))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the image folder (bench/make_large_folder.py)")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of the chunks kept when (c) is killed")
    parser.add_argument("--save-every-s", type=float, default=2.0, help="(c)'s SAVE_EVERY_S")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        whole_cache, killed_cache = Path(scratch) / "whole", Path(scratch) / "killed"
        whole_s, _ = finished(load(args.data_dir, whole_cache))
        images_path = entry_images(whole_cache)
        shape = np.load(images_path, mmap_mode="r").shape
        cost = progress_cost(images_path)
        whole_digest = file_digest(images_path)
        result = killed_and_gone_on(args.data_dir, killed_cache, args.kill_at, args.save_every_s, cost["chunks"])
    cores = _decode.cores()
    decode_cpu_s = whole_s * cores
    print(f"{args.data_dir}: {shape[0]:,} images {tuple(shape[1:])}, {cost['chunks']:,} chunks of "
          f"{_decode.DECODE_CHUNK}, {cores} cores")
    print("whole decode s | digests s (one core) | digests / decode CPU | one save s | record KiB | "
          "save / SAVE_EVERY_S")
    print(f"{whole_s:.2f} | {cost['digest_s']:.3f} | {cost['digest_s'] / decode_cpu_s:.2%} | {cost['save_s']:.4f} | "
          f"{cost['record_kib']:.1f} | {cost['save_s'] / _decode.SAVE_EVERY_S:.3%}")
    if not result["killed"]:
        print(f"(c) the decode ended after {result['killed_s']:.1f} s before its record named {args.kill_at:.0%} "
              "of the chunks (a decode of fewer than PARALLEL_FROM images keeps no progress): lower --save-every-s "
              "or --kill-at")
        return
    print(f"(c) killed after {result['killed_s']:.1f} s with {result['kept_chunks']} chunks kept; loaded again in "
          f"{result['again_s']:.2f} s ({result['again_s'] / whole_s:.0%} of the whole decode): "
          f"{result['going_on'] or 'no line said it went on'}; "
          f"same images as the whole decode (sha256): {'yes' if result['digest'] == whole_digest else 'NO'}")


if __name__ == "__main__":
    main()
