"""The uint8 cache of a user's images (issue 23): decoded once, opened again unchanged, decoded again when a
file changes; bad files left out and listed; split folders and CSV manifests read as given.

Loader-level: ``load_dataset(..., cache_dir=..., log=...)`` on tiny images. The same layouts run as real
searches in tests/tuning/test_data_layouts.py.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.trainers.test_data import write_image_folder, write_manifest
from trainers.data import DatasetError, DecodeStopped, TensorSplits, _sources, fingerprint, load_dataset
from trainers.data._tensors import channel_statistics

REPO = Path(__file__).resolve().parents[2]
SHAPE = (8, 8, 3)  # tiny colour images: decoding a few hundred takes well under a second


def load(root: Path, cache: Path, lines: list[str] | None = None, name: str = "imagefolder") -> TensorSplits:
    """``load_dataset`` of a user's layout through the cache at ``cache``, its log lines appended to ``lines``."""
    return load_dataset(name, str(root), cache_dir=cache, log=lines.append if lines is not None else None)


def entry_meta(splits: TensorSplits) -> dict[str, Any]:
    """The ``meta.json`` of the cache entry ``splits`` is mapped from."""
    assert splits.images_path is not None
    return json.loads((Path(splits.images_path).parent / "meta.json").read_text())


def row_of(splits: TensorSplits, root: Path, path: Path) -> int:
    """The store row holding ``path`` (the entry lists its files relative to the root)."""
    return entry_meta(splits)["files"].index(os.path.relpath(path, root))


def pixels_chw(path: Path) -> np.ndarray:
    """An RGB image file's pixels as uint8 (C, H, W), as the store keeps them."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def all_rows(splits: TensorSplits) -> set[int]:
    """Every store row some split uses."""
    return {int(row) for rows in (splits.train_rows, splits.val_rows, splits.test_rows) for row in rows}


# ---------------------------------------------------------------------------------------------------------
# The cache: opened when unchanged, decoded again (and said) when a file changed
# ---------------------------------------------------------------------------------------------------------


def test_an_unchanged_folder_is_opened_from_the_cache_without_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second load of an unchanged folder maps the first load's images.npy: the log says it was opened
    from the cache, the file is the same inode with the same mtime, no image is read, and the data are equal."""
    write_image_folder(tmp_path / "images", per_class=12, shape=SHAPE)
    first_lines: list[str] = []
    first = load(tmp_path / "images", tmp_path / "cache", first_lines)
    assert first.source["cache"] == "decoded"
    assert not any("opened from the uint8 cache" in line for line in first_lines)
    images = Path(first.images_path or "")
    before = images.stat()

    def no_decoding(*args: object) -> None:
        pytest.fail("an unchanged folder was decoded again")

    monkeypatch.setattr(_sources, "probe_files", no_decoding)
    monkeypatch.setattr(_sources, "decode_files", no_decoding, raising=False)
    lines: list[str] = []
    second = load(tmp_path / "images", tmp_path / "cache", lines)
    assert any(line.startswith(f"data: {tmp_path / 'images'} opened from the uint8 cache") for line in lines), lines
    assert not any("changed since it was cached" in line for line in lines)
    assert second.images_path == first.images_path and second.source["cache"] == "opened"
    after = images.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert fingerprint(second) == fingerprint(first)
    assert np.array_equal(second.images.numpy(), first.images.numpy())


def _modify(path: Path) -> None:
    """Rewrite ``path`` with other pixels, one second later (so its size or mtime changes on any file system)."""
    old = path.stat()
    with Image.open(path) as image:
        pixels = 255 - np.asarray(image)
    Image.fromarray(pixels).save(path)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("change", ["modified", "added", "removed"])
def test_a_changed_folder_is_decoded_again_and_said(change: str, tmp_path: Path) -> None:
    """After a file is modified, added or removed, the next load decodes the folder again, logs that it
    changed, holds the folder's current images (the new pixels of a modified file), and drops the stale entry."""
    root = tmp_path / "images"
    write_image_folder(root, per_class=12, shape=SHAPE)
    first = load(root, tmp_path / "cache")
    target = sorted((root / "dog").iterdir())[3]
    old_pixels, old_row = pixels_chw(target), row_of(first, root, target)
    if change == "modified":
        _modify(target)
    elif change == "added":
        Image.fromarray(np.full(SHAPE, 7, dtype=np.uint8)).save(root / "dog" / "new.png")
    else:
        target.unlink()
    lines: list[str] = []
    second = load(root, tmp_path / "cache", lines)
    assert f"data: {root} changed since it was cached (files added, removed or modified): decoding it again" in lines
    assert not any("opened from the uint8 cache" in line for line in lines)
    assert second.source["cache"] == "re-decoded" and second.images_path != first.images_path
    assert not Path(first.images_path or "").parent.exists()  # the stale entry is deleted
    count = {"modified": 36, "added": 37, "removed": 35}[change]
    assert sum(second.sizes().values()) == count == second.images.shape[0]
    if change == "modified":
        new_pixels = pixels_chw(target)
        assert not np.array_equal(new_pixels, old_pixels)
        assert np.array_equal(second.images[row_of(second, root, target)].numpy(), new_pixels)
        # The first load's map still reads the old pixels: its file was unlinked, not overwritten.
        assert np.array_equal(first.images[old_row].numpy(), old_pixels)
    elif change == "added":
        assert (second.images[row_of(second, root, root / "dog" / "new.png")] == 7).all()
    # A third load of the folder as it is now is a cache hit again.
    third_lines: list[str] = []
    third = load(root, tmp_path / "cache", third_lines)
    assert third.images_path == second.images_path
    assert any("opened from the uint8 cache" in line for line in third_lines)


def test_the_store_holds_the_files_pixels(tmp_path: Path) -> None:
    """Every row of the cached store is its file's pixels, exactly (no resize, no channel mix-up)."""
    root = tmp_path / "images"
    write_image_folder(root, per_class=4, shape=SHAPE)
    splits = load(root, tmp_path / "cache")
    for path in sorted(root.rglob("*.png")):
        assert np.array_equal(splits.images[row_of(splits, root, path)].numpy(), pixels_chw(path)), path


# ---------------------------------------------------------------------------------------------------------
# Bad files: left out and listed below 1 %, refused above
# ---------------------------------------------------------------------------------------------------------


def write_bad_files(root: Path) -> dict[Path, str]:
    """A truncated PNG (its header reads, its pixels do not), a zero-byte .png, garbage named .png and a text
    file in the class folders of ``root``; returns each with the start of the reason it must be listed with."""
    good = sorted((root / "cat").iterdir())[0].read_bytes()
    bad = {root / "cat" / "truncated.png": "corrupt (OSError: image file is truncated",
           root / "dog" / "empty.png": "empty file",
           root / "fox" / "garbage.png": "not a readable image",
           root / "fox" / "notes.txt": "not an image file"}
    paths = list(bad)
    paths[0].write_bytes(good[: len(good) // 2])
    paths[1].write_bytes(b"")
    paths[2].write_bytes(b"\x89PNG but not really" * 4)
    paths[3].write_text("where these images came from\n")
    return bad


def test_bad_files_under_one_percent_are_left_out_and_listed(tmp_path: Path) -> None:
    """3 unreadable images of 333 (0.9 %) and a text file: the splits hold exactly the 330 good images, each
    bad file is listed with its reason (in ``skipped`` and in one log line), and none of their rows is used."""
    root = tmp_path / "images"
    write_image_folder(root, per_class=110, shape=SHAPE)
    bad = write_bad_files(root)
    lines: list[str] = []
    splits = load(root, tmp_path / "cache", lines)
    assert [path for path, _ in splits.skipped] == [str(path) for path in bad]
    for (_, reason), expected in zip(splits.skipped, bad.values(), strict=True):
        assert reason.startswith(expected), reason
    assert sum(splits.sizes().values()) == 330 and splits.source["images"] == 330
    assert splits.images.shape[0] == 333  # the unreadable rows stay in the file, unused
    unreadable = {row_of(splits, root, path) for path in list(bad)[:3]}
    assert len(unreadable) == 3 and not unreadable & all_rows(splits)
    assert len(all_rows(splits)) == 330
    (line,) = [line for line in lines if "left out" in line]
    assert line.startswith(f"data: 4 file(s) of {root} left out: ")
    assert all(str(path) in line for path in bad)
    # Opened from the cache, the same files are listed (the reasons live in the entry's meta.json).
    again = load(root, tmp_path / "cache")
    assert again.skipped == splits.skipped and again.source["cache"] == "opened"


def test_more_than_one_percent_unreadable_is_refused_and_leaves_no_entry(tmp_path: Path) -> None:
    """4 truncated PNGs of 124 (3 %): they pass the header check and fail while decoding; the load is a
    `DatasetError` naming one of them, and the decoded entry is deleted (nothing of an unusable source stays)."""
    root = tmp_path / "images"
    write_image_folder(root, per_class=40, shape=SHAPE)
    good = sorted((root / "cat").iterdir())[0].read_bytes()
    for index in range(4):
        (root / "dog" / f"truncated-{index}.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError) as error:
        load(root, tmp_path / "cache")
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert f"4 of 124 images of {root} cannot be read (more than 1%)" in message
    assert str(root / "dog" / "truncated-0.png") in message
    data = tmp_path / "cache" / "data"
    assert not [entry for entry in data.iterdir() if entry.name != "sources"], list(data.iterdir())


# ---------------------------------------------------------------------------------------------------------
# Split folders
# ---------------------------------------------------------------------------------------------------------


def write_split_folders(root: Path, counts: dict[str, int]) -> None:
    """``root/<split>/<class>/`` for each split, ``counts[split]`` tiny images per class."""
    for split, per_class in counts.items():
        write_image_folder(root / split, per_class=per_class, shape=SHAPE)


def test_split_folders_with_train_and_val_hold_test_out_of_train(tmp_path: Path) -> None:
    """train/ + val/ only: validation is the val/ folder exactly; test is 20 % of train/, stratified, taken
    out of training (no image in two splits), and the log says so."""
    write_split_folders(tmp_path / "images", {"train": 20, "val": 5})
    lines: list[str] = []
    splits = load(tmp_path / "images", tmp_path / "cache", lines)
    assert splits.source["layout"] == "split-folders"
    assert splits.sizes() == {"train": 48, "val": 15, "test": 12}
    assert splits.class_counts() == {"train": [16] * 3, "val": [5] * 3, "test": [4] * 3}
    files = entry_meta(splits)["files"]
    assert all(files[row].startswith("val/") for row in splits.val_rows.tolist())
    assert all(files[row].startswith("train/") for row in [*splits.train_rows.tolist(), *splits.test_rows.tolist()])
    assert len(all_rows(splits)) == 75
    assert ("data: no test split given: 12 images (20%) of the train split held out as test, stratified"
            in lines), lines


def test_split_folders_with_all_three_are_used_as_given(tmp_path: Path) -> None:
    """train/ val/ test/: each split is exactly its folder, nothing is held out, nothing is said about it."""
    write_split_folders(tmp_path / "images", {"train": 9, "val": 3, "test": 2})
    lines: list[str] = []
    splits = load(tmp_path / "images", tmp_path / "cache", lines)
    assert splits.sizes() == {"train": 27, "val": 9, "test": 6}
    files = entry_meta(splits)["files"]
    for split in ("train", "val", "test"):
        assert all(files[row].startswith(f"{split}/") for row in getattr(splits, f"{split}_rows").tolist())
    assert not any("held out" in line for line in lines)


# ---------------------------------------------------------------------------------------------------------
# CSV manifests
# ---------------------------------------------------------------------------------------------------------


def test_manifest_paths_are_relative_to_the_manifest_and_labels_are_class_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from another working folder, the manifest's relative paths still resolve (against its own folder);
    its labels become the class names, in sorted order, and each image keeps its label."""
    manifest = write_manifest(tmp_path / "data", per_class=10, shape=SHAPE[:2])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    splits = load(manifest, tmp_path / "cache", name="csv")
    assert splits.info.name == "csv" and splits.info.class_names == ("cat", "dog", "fox")
    assert splits.skipped == () and sum(splits.sizes().values()) == 30
    files = entry_meta(splits)["files"]
    for row, label in enumerate(splits.labels.tolist()):
        assert files[row].split("/")[1] == splits.info.class_names[label]


def test_manifest_numeric_labels_sort_as_numbers(tmp_path: Path) -> None:
    """Labels that are integers are classes in numeric order (10 after 9, not after 1)."""
    root = tmp_path / "data"
    write_image_folder(root / "images", classes=tuple(str(n) for n in range(11)), per_class=5, shape=SHAPE[:2])
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for path in sorted((root / "images").rglob("*.png")):
            writer.writerow([path.relative_to(root).as_posix(), path.parent.name])
    splits = load(manifest, tmp_path / "cache", name="csv")
    assert splits.info.class_names == tuple(str(n) for n in range(11))


def test_manifest_split_column_is_used_as_given(tmp_path: Path) -> None:
    """A ``split`` column: each row lands in its named split (sizes as given, no test held out)."""
    manifest = write_manifest(tmp_path / "data", per_class=10, shape=SHAPE[:2],
                              splits=("train", "train", "val", "test", "train"))
    lines: list[str] = []
    splits = load(manifest, tmp_path / "cache", lines, name="csv")
    assert splits.sizes() == {"train": 18, "val": 6, "test": 6}
    assert not any("held out" in line for line in lines)


def _manifest_with_missing(root: Path, per_class: int, missing: int) -> Path:
    manifest = write_manifest(root, per_class=per_class, shape=SHAPE[:2])
    with manifest.open("a", newline="") as handle:
        writer = csv.writer(handle)
        for index in range(missing):
            writer.writerow([f"images/cat/gone-{index}.png", "cat"])
    return manifest


def test_manifest_missing_file_under_one_percent_is_skipped_and_listed(tmp_path: Path) -> None:
    """One listed file that does not exist, of 121 (0.8 %): left out and listed as missing."""
    manifest = _manifest_with_missing(tmp_path / "data", per_class=40, missing=1)
    lines: list[str] = []
    splits = load(manifest, tmp_path / "cache", lines, name="csv")
    assert splits.skipped == ((str(tmp_path / "data" / "images" / "cat" / "gone-0.png"), "missing"),)
    assert sum(splits.sizes().values()) == 120
    assert any("left out" in line and "gone-0.png (missing)" in line for line in lines)


def test_manifest_missing_files_over_one_percent_are_refused(tmp_path: Path) -> None:
    """Two missing of 32 (6 %): a one-line `DatasetError` naming a missing file."""
    manifest = _manifest_with_missing(tmp_path / "data", per_class=10, missing=2)
    with pytest.raises(DatasetError, match=r"2 of 32 images .* cannot be read .*gone-0\.png \(missing\)"):
        load(manifest, tmp_path / "cache", name="csv")


@pytest.mark.parametrize("header, row, expected", [
    (["path", "class"], ["a.png", "cat"], "has no 'label' column (columns: path, class)"),
    (["file", "label"], ["a.png", "cat"], "has no 'path' column (columns: file, label)"),
    (["path", "label", "split"], ["a.png", "cat", "training"], "line 2: unknown split 'training'"),
])
def test_manifest_header_and_split_problems_are_one_line(tmp_path: Path, header: list[str], row: list[str],
                                                         expected: str) -> None:
    """A header without path or label names the columns it found; an unknown split names its line."""
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, row, ["b.png", "dog", *row[2:]]])
    with pytest.raises(DatasetError) as error:
        load(manifest, tmp_path / "cache", name="csv")
    assert expected in str(error.value) and len(str(error.value).splitlines()) == 1


def test_parallel_decoding_puts_every_image_in_its_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process-pool path (used from `PARALLEL_FROM` files on, forced here for 60 files over 2 workers):
    every row holds its own file's pixels, a file failing in a worker is listed, and progress is logged."""
    from trainers.data import _decode

    monkeypatch.setattr(_decode, "PARALLEL_FROM", 1)
    monkeypatch.setattr(_decode, "cores", lambda: 2)
    root = tmp_path / "images"
    write_image_folder(root, per_class=20, shape=SHAPE)
    good = sorted((root / "fox").iterdir())[0].read_bytes()
    (root / "fox" / "truncated.png").write_bytes(good[: len(good) // 2])
    monkeypatch.setattr(_sources, "MAX_LOST_FRACTION", 0.05)  # 1 of 61: allowed here, to see it listed
    lines: list[str] = []
    splits = load(root, tmp_path / "cache", lines)
    assert [(Path(path).name, reason.split(":")[0]) for path, reason in splits.skipped] == [
        ("truncated.png", "corrupt (OSError")]
    for path in sorted(root.rglob("*.png")):
        if path.name != "truncated.png":
            assert np.array_equal(splits.images[row_of(splits, root, path)].numpy(), pixels_chw(path)), path
    assert any(line.startswith(f"data: decoding 61 images of {root}: 61/61 (100 %)") for line in lines), lines


class _RecordingStore:
    """A stand-in uint8 store of large images that records how many rows each read asks for (its pixels are a
    zero image broadcast, so the store itself costs no memory)."""

    def __init__(self, rows: int, shape: tuple[int, int, int]) -> None:
        self.shape = (rows, *shape)
        self.reads: list[int] = []

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        self.reads.append(len(index))
        return torch.zeros((1, *self.shape[1:]), dtype=torch.uint8).expand(len(index), *self.shape[1:])


def test_channel_statistics_read_large_images_in_bounded_chunks() -> None:
    """The train split's statistics are accumulated chunk by chunk in float64; for 224 x 224 colour images a
    chunk must stay tens of MB (not 4,096 images, which would be 4.9 GB of float64), and every row is read."""
    store = _RecordingStore(120, (3, 224, 224))
    mean, std = channel_statistics(store, np.arange(120), 255.0)  # type: ignore[arg-type]
    assert sum(store.reads) == 120
    assert max(store.reads) * 3 * 224 * 224 * 8 <= 64 * 2**20, store.reads
    assert mean == (0.0, 0.0, 0.0) and std == pytest.approx((1e-6,) * 3)


def test_channel_statistics_match_a_direct_computation(tmp_path: Path) -> None:
    """Chunked statistics equal those of the whole train split computed at once."""
    write_image_folder(tmp_path / "images", per_class=12, shape=SHAPE)
    splits = load(tmp_path / "images", tmp_path / "cache")
    train = splits.images[splits.train_rows].to(torch.float64) / 255
    assert splits.mean == pytest.approx(tuple(train.mean(dim=(0, 2, 3)).tolist()), abs=1e-9)
    assert splits.std == pytest.approx(tuple(train.std(dim=(0, 2, 3)).tolist()), abs=1e-9)


# A decode on the process pool keeping its progress after every chunk of 8 images, killed with its decoding processes
# (SIGKILL to its process group, as a batch system ends a job) right after its record first names a chunk.
KILLED_DECODE = """
import json, os, signal, sys
from pathlib import Path
from trainers.data import _decode, load_dataset
_decode.PARALLEL_FROM, _decode.DECODE_CHUNK, _decode.SAVE_EVERY_S = 1, 8, 0.0
_decode.cores = lambda: 2
done = _decode._Progress.done
def done_then_killed(self, *args):
    done(self, *args)
    if self.path.is_file() and json.loads(self.path.read_text())["chunks"]:
        os.killpg(0, signal.SIGKILL)
_decode._Progress.done = done_then_killed
load_dataset("imagefolder", sys.argv[1], cache_dir=Path(sys.argv[2]))
"""


def _killed_decode(root: Path, cache: Path) -> Path:
    """A decode of ``root`` into ``cache`` killed once it has kept a chunk; its partial folder."""
    decode = subprocess.run([sys.executable, "-c", KILLED_DECODE, str(root), str(cache)], cwd=REPO,
                            start_new_session=True, capture_output=True, text=True, timeout=120)
    assert decode.returncode == -signal.SIGKILL, decode.stderr
    [progress] = (cache / "data").glob(".*.partial/decoded.json")
    return progress.parent


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from trainers.data import _decode

    monkeypatch.setattr(_decode, "DECODE_CHUNK", 8)
    read, reads = _decode._read_image, []
    monkeypatch.setattr(_decode, "_read_image", lambda path, *args: reads.append(path) or read(path, *args))
    return reads


def test_a_killed_decode_goes_on_from_the_chunks_it_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "images"
    write_image_folder(root, per_class=20, shape=SHAPE)
    partial = _killed_decode(root, tmp_path / "cache")
    kept = len(json.loads((partial / "decoded.json").read_text())["chunks"])
    assert 1 <= kept < 8  # 60 images: chunks of 8
    reads = _counting_reads(monkeypatch)
    lines: list[str] = []
    splits = load(root, tmp_path / "cache", lines)
    assert len(reads) == 60 - 8 * kept  # only the chunks not kept are decoded
    assert any(f"going on from {8 * kept} images decoded by an earlier attempt" in line for line in lines), lines
    fresh = load(root, tmp_path / "fresh")
    assert torch.equal(splits.images, fresh.images) and entry_meta(splits)["files"] == entry_meta(fresh)["files"]
    assert [path.name for path in (tmp_path / "cache" / "data").iterdir() if path.name.startswith(".")] == []


def test_a_kept_chunk_whose_pixels_changed_is_decoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "images"
    write_image_folder(root, per_class=20, shape=SHAPE)
    partial = _killed_decode(root, tmp_path / "cache")
    chunks = json.loads((partial / "decoded.json").read_text())["chunks"]
    images = np.load(partial / "images.npy", mmap_mode="r+")
    first_kept = int(min(chunks, key=int))
    images[first_kept * 8] ^= 1  # a bit of the chunk's first image: its digest fails
    images.flush()
    del images
    reads = _counting_reads(monkeypatch)
    splits = load(root, tmp_path / "cache")
    assert len(reads) == 60 - 8 * (len(chunks) - 1)
    assert torch.equal(splits.images, load(root, tmp_path / "fresh").images)


@pytest.mark.parametrize("pool", [False, True])
def test_a_stop_request_ends_a_decode_after_its_chunks_in_progress_and_the_next_load_goes_on(
        pool: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainers.data import _decode

    root = tmp_path / "images"
    write_image_folder(root, per_class=20, shape=SHAPE)
    reads = _counting_reads(monkeypatch)  # in this process only: the pool's workers count in their own copies
    if pool:
        monkeypatch.setattr(_decode, "PARALLEL_FROM", 1)
        monkeypatch.setattr(_decode, "cores", lambda: 2)
        read = _decode._read_image  # slowed, so that chunks are still waiting when the stop comes
        monkeypatch.setattr(_decode, "_read_image", lambda *args: time.sleep(0.01) or read(*args))
    kept: list[int] = []
    with pytest.raises(DecodeStopped, match=r"data: decoding stopped after \d+/60 images, kept in ") as stopped:
        load_dataset("imagefolder", str(root), cache_dir=tmp_path / "cache",
                     stop_requested=lambda: kept.append(1) is None and len(kept) > 1)  # true after the first chunk
    partial = stopped.value.folder
    assert partial.name.endswith(".partial") and 8 <= stopped.value.done < 60 and stopped.value.done % 8 == 0
    assert len(json.loads((partial / "decoded.json").read_text())["chunks"]) == stopped.value.done // 8
    reads.clear()
    monkeypatch.setattr(_decode, "PARALLEL_FROM", 512)  # the rest in this process, where its reads are counted
    lines: list[str] = []
    splits = load(root, tmp_path / "cache", lines)
    assert len(reads) == 60 - stopped.value.done
    assert any(f"going on from {stopped.value.done} images decoded by an earlier attempt" in line for line in lines)
    assert torch.equal(splits.images, load(root, tmp_path / "fresh").images)


def test_a_stopped_decode_of_a_folder_that_then_changed_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "images"
    write_image_folder(root, per_class=20, shape=SHAPE)
    _counting_reads(monkeypatch)
    calls: list[int] = []
    with pytest.raises(DecodeStopped) as stopped:
        load_dataset("imagefolder", str(root), cache_dir=tmp_path / "cache",
                     stop_requested=lambda: calls.append(1) is None and len(calls) > 1)
    assert stopped.value.folder.is_dir()
    _modify(sorted((root / "cat").iterdir())[0])
    splits = load(root, tmp_path / "cache")
    assert sorted(path.name for path in (tmp_path / "cache" / "data").iterdir()) == sorted(
        ["sources", Path(splits.images_path).parent.name])
