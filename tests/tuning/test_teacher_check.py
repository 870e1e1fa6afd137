"""The teacher check: a quick student trained alone, compared with the teacher on validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from spaces import smoke_space
from trainers import TeacherResult, TensorSplits, load_dataset
from trainers.models import build_student
from tuning.teacher_check import check_teacher, largest_student, save_check, saved_check


@pytest.fixture(scope="module")
def data() -> TensorSplits:
    torch.set_num_threads(1)
    return load_dataset("digits", max_train_samples=300)


def _teacher(val_accuracy: float) -> TeacherResult:
    model = build_student("cnn", 1, 4, 1, 10)
    return TeacherResult(model, "stand-in", "checkpoint", None, val_accuracy, 0.0, train_accuracy=1.0)


def test_the_check_uses_the_largest_student_the_space_allows(data: TensorSplits) -> None:
    assert largest_student(smoke_space(), data) == ("cnn", 1, 16)


def test_a_teacher_the_student_matches_is_flagged(data: TensorSplits) -> None:
    check = check_teacher(_teacher(val_accuracy=0.5), smoke_space(), data, epochs=3, seed=0)
    assert check["matches"] is True
    assert check["student_val_accuracy"] >= 0.5  # a real 3-epoch student on digits clears a 0.5 teacher
    assert check["message"].startswith("teacher check: WARNING a cnn depth 1 width 16 student trained alone")
    assert "\n" not in check["message"]


def test_a_teacher_ahead_of_the_student_passes(data: TensorSplits) -> None:
    check = check_teacher(_teacher(val_accuracy=1.0), smoke_space(), data, epochs=1, seed=0)
    assert check["student_val_accuracy"] < 1.0  # one epoch on 300 images does not reach a perfect score
    assert check["matches"] is False
    assert check["message"].startswith("teacher check: passed (teacher 1.0000 validation accuracy")
    assert {"student", "params", "epochs", "student_val_accuracy", "teacher_val_accuracy"} <= set(check)


def test_the_check_is_deterministic(data: TensorSplits) -> None:
    teacher = _teacher(val_accuracy=0.9)
    first = check_teacher(teacher, smoke_space(), data, epochs=2, seed=3)
    again = check_teacher(dataclasses.replace(teacher), smoke_space(), data, epochs=2, seed=3)
    assert first == again


def test_a_resumed_run_reuses_its_check_only_for_the_same_teacher(data: TensorSplits, tmp_path: Path) -> None:
    teacher = _teacher(val_accuracy=0.9)
    assert saved_check(tmp_path, teacher) is None  # a new run checks
    check = check_teacher(teacher, smoke_space(), data, epochs=1, seed=0)
    save_check(tmp_path, check)
    assert saved_check(tmp_path, teacher) == check  # the deterministic check is not trained again
    assert saved_check(tmp_path, _teacher(val_accuracy=0.8)) is None  # another teacher is checked anew
    (tmp_path / "teacher_check.json").write_text("{")  # cut mid-write by an older writer: checked anew
    assert saved_check(tmp_path, teacher) is None


def test_the_checks_student_is_trained_once_per_cache(data: TensorSplits, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with a cached teacher reads the check's student from the teacher cache instead of training it."""
    teacher = _teacher(val_accuracy=0.9)
    first = check_teacher(teacher, smoke_space(), data, epochs=1, seed=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert first == check_teacher(teacher, smoke_space(), data, epochs=1, seed=0)  # what training gives

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached student was trained again")

    monkeypatch.setattr("tuning.teacher_check.distill", no_training)
    again = check_teacher(_teacher(val_accuracy=0.5), smoke_space(), data, epochs=1, seed=0, cache_dir=tmp_path)
    assert again["student_val_accuracy"] == first["student_val_accuracy"] and again["params"] == first["params"]
    assert again["matches"] is (first["student_val_accuracy"] >= 0.5)  # compared with this teacher
    with pytest.raises(AssertionError, match="trained again"):  # another seed is another training
        check_teacher(teacher, smoke_space(), data, epochs=1, seed=1, cache_dir=tmp_path)
    monkeypatch.undo()
    entry = next(tmp_path.glob("*.json"))
    entry.write_text("{")  # cut mid-write: trained again, and the entry rewritten whole
    assert check_teacher(teacher, smoke_space(), data, epochs=1, seed=0, cache_dir=tmp_path) == first
    assert json.loads(entry.read_text())["val_accuracy"] == first["student_val_accuracy"]
