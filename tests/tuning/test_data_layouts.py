"""A user's images at real size, end to end (issue 23): real 2-trial searches on an image folder with bad
files, on split folders and on a CSV manifest with a split column; more than 1 % unreadable through
``search.py`` itself.

Each search: a cnn-large teacher trained for one epoch on tiny 8 x 8 images, two one-epoch trials, the final
stage skipped. The loader-level cases (cache hits, changed folders, manifest details) are in
tests/trainers/test_data_store.py.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.trainers.test_data import write_image_folder, write_manifest
from tests.trainers.test_data_store import SHAPE, write_bad_files, write_split_folders
from tests.tuning.conftest import SMALL
from trainers import TeacherRecipe, evaluate, get_teacher, load_dataset
from tuning import build_spec, run

pytestmark = pytest.mark.usefixtures("ray_cluster")

REPO = Path(__file__).resolve().parents[2]
QUICK = {"budget": 2, "epochs": 1, "top_k": 0, "teacher_epochs": 1}


def logged_search(results_dir: Path, run_name: str, **flags: Any) -> tuple[dict[str, Any], list[str]]:
    """A small real search (``SMALL`` + ``QUICK``); its summary.json and every line it logged."""
    lines: list[str] = []
    spec = build_spec(results_dir=str(results_dir), run_name=run_name, **{**SMALL, **QUICK, **flags})
    outcome = run(spec, log=lines.append)
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert sum(summary["trials"].values()) == 2 and summary["trials"]["failed"] == 0, summary["trials"]
    return summary, lines


def test_bad_files_are_left_out_of_a_real_search(tmp_path: Path, teacher_cache: Path) -> None:
    """An image folder with a truncated PNG, a zero-byte .png, garbage named .png and notes.txt among 330
    good images (3 of 333 lost: 0.9 %): the search runs, summary.json lists all four with their reasons, the
    splits add up to the 330 good images, and the teacher's test accuracy is its accuracy on exactly the good
    test images of the summary's test size."""
    root = tmp_path / "images"
    write_image_folder(root, per_class=110, shape=SHAPE)
    bad = write_bad_files(root)
    summary, lines = logged_search(teacher_cache, "bad-files", dataset="imagefolder", data_dir=str(root))
    dataset = summary["dataset"]
    assert [entry["path"] for entry in dataset["skipped"]] == [str(path) for path in bad]
    for entry, reason in zip(dataset["skipped"], bad.values(), strict=True):
        assert entry["reason"].startswith(reason), entry
    assert dataset["source"]["layout"] == "imagefolder" and dataset["source"]["images"] == 330
    assert dataset["train"] + dataset["val"] + dataset["test"] == 330
    sizes = [dataset[split] for split in ("train", "val", "test")]
    assert [sum(counts) for counts in dataset["class_counts"].values()] == sizes
    assert any(line.startswith(f"data: 4 file(s) of {root} left out: ") for line in lines), lines
    # The same data and teacher again (both from their caches): the summary's accuracy is on the good images.
    data = load_dataset("imagefolder", str(root), seed=0, max_train_samples=SMALL["max_train_samples"],
                        cache_dir=teacher_cache / "cache")
    assert data.source["cache"] == "opened" and len(data.test_y) == dataset["test"]
    teacher = get_teacher(summary["teacher"]["arch"], data, teacher_cache / "teachers",
                          TeacherRecipe(epochs=QUICK["teacher_epochs"], seed=0), log=lambda line: None)
    assert teacher.source == "cache"
    assert evaluate(teacher.model, data.test_x, data.test_y)[0] == summary["teacher"]["test_accuracy"]


def test_more_than_one_percent_unreadable_is_one_line_through_the_command(tmp_path: Path) -> None:
    """3 truncated PNGs among 120 images (2.4 %), which pass the header check and fail while decoding:
    ``search.py`` exits 2 with one line naming one of them, before Ray or a teacher starts, leaving no run
    folder and no cache entry."""
    root = tmp_path / "images"
    write_image_folder(root, per_class=40, shape=SHAPE)
    good = sorted((root / "cat").iterdir())[0].read_bytes()
    for index in range(3):
        (root / "fox" / f"truncated-{index}.png").write_bytes(good[: len(good) // 2])
    results = tmp_path / "results"
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "--smoke", "--dataset", "imagefolder", "--data-dir", str(root),
         "--results-dir", str(results), "--run-name", "bad"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    elapsed = time.perf_counter() - started
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2, process.stderr
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith(f"search.py: error: 3 of 123 images of {root} cannot be read (more than 1%)")
    assert f"{root / 'fox' / 'truncated-0.png'} (corrupt" in lines[0]
    assert "ray:" not in process.stdout and "teacher" not in process.stdout, process.stdout
    assert not (results / "bad").exists()
    entries = results / "cache" / "data"
    assert not entries.exists() or not [entry for entry in entries.iterdir() if entry.name != "sources"]
    # Loading torch and Ray dominates; a decode of 123 tiny images or a Ray start would add seconds, a teacher
    # minutes.
    assert elapsed < 60, elapsed


def test_split_folders_are_used_as_given_in_a_real_search(tmp_path: Path, teacher_cache: Path) -> None:
    """train/ val/ test/ folders: the search's splits are those folders, class by class, nothing held out."""
    write_split_folders(tmp_path / "images", {"train": 20, "val": 6, "test": 4})
    summary, lines = logged_search(teacher_cache, "split-folders", dataset="imagefolder",
                                   data_dir=str(tmp_path / "images"))
    dataset = summary["dataset"]
    assert dataset["source"]["layout"] == "split-folders" and dataset["skipped"] == []
    assert (dataset["train"], dataset["val"], dataset["test"]) == (60, 18, 12)
    assert dataset["class_counts"] == {"train": [20] * 3, "val": [6] * 3, "test": [4] * 3}
    assert not any("held out" in line for line in lines)


def test_manifest_split_column_is_used_as_given_in_a_real_search(tmp_path: Path, teacher_cache: Path) -> None:
    """A CSV manifest (relative paths, class-name labels, a split column, one listed file missing): the
    search's splits are the column's, and its classes the labels; the missing file (1 of 103, under 1 %) is
    left out and listed."""
    manifest = write_manifest(tmp_path / "data", per_class=34, shape=SHAPE[:2],
                              splits=("train", "train", "train", "val", "test"))
    with manifest.open("a") as handle:
        handle.write("images/cat/gone.png,cat,train\n")
    with manifest.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["path"] != "images/cat/gone.png"]
    given = {split: sum(row["split"] == split for row in rows) for split in ("train", "val", "test")}
    summary, lines = logged_search(teacher_cache, "manifest", dataset="csv", data_dir=str(manifest))
    dataset = summary["dataset"]
    assert dataset["name"] == "csv" and dataset["source"]["layout"] == "csv"
    assert dataset["skipped"] == [{"path": str(tmp_path / "data" / "images" / "cat" / "gone.png"), "reason": "missing"}]
    assert (dataset["train"], dataset["val"], dataset["test"]) == (given["train"], given["val"], given["test"])
    assert sum(given.values()) == 102
    assert dataset["classes"] == 3 and dataset["input_shape"] == [1, 8, 8]
    assert not any("held out" in line for line in lines)
