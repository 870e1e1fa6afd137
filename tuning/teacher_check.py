"""Is the teacher worth learning from? A quick student trained alone, compared with it on validation.

A teacher that a student of the allowed size already matches on its own has little to teach: the
search still runs (the user decides), but the console, ``summary.json`` and the report say so at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from runfolder import TEACHER_CHECK_FILE, atomic_write_json, read_cache_entry
from spaces import SearchSpace
from trainers import DistillConfig, TeacherResult, TensorSplits, distill, student_parameter_count
from trainers.data import fingerprint
from tuning.gain_curve import arch_text
from tuning.stop_signal import check_stop, stop_requested

# Under the teacher cache folder: the check's students, trained alone (``trained_alone``).
CHECKS_FOLDER = "checks"


def largest_student(space: SearchSpace, data: TensorSplits) -> tuple[str, int, int]:
    """The (family, depth, width) with the most parameters that the space's first family allows."""
    family, bounds = next(iter(space.families.items()))
    channels, classes = data.info.input_shape[0], data.info.num_classes
    depths = range(bounds.depth.low, bounds.depth.high + 1, bounds.depth.step)
    candidates = [(depth, bounds.width_at(depth).high) for depth in depths]
    depth, width = max(candidates, key=lambda pair: student_parameter_count(family, *pair, channels, classes))
    return family, depth, width


def saved_check(run_dir: Path, teacher: TeacherResult) -> dict[str, Any] | None:
    """The check a resumed run made at its first start, when it was made on this same teacher.

    The check is deterministic (same flags, same seed, same teacher), so a rerun need not train its
    student again; a teacher whose validation accuracy differs (retrained, another checkpoint) is checked anew.
    """
    saved = read_cache_entry(run_dir / TEACHER_CHECK_FILE)  # None when unreadable: check again
    if saved is not None and saved.get("teacher_val_accuracy") == teacher.val_accuracy:
        return saved
    return None


def save_check(run_dir: Path, check: dict[str, Any]) -> None:
    """Keep the check with the run, for its reruns."""
    atomic_write_json(run_dir / TEACHER_CHECK_FILE, check)


def check_teacher(teacher: TeacherResult, space: SearchSpace, data: TensorSplits, epochs: int,
                  seed: int, cache_dir: Path | None = None) -> dict[str, Any]:
    """Train the space's largest first-family student alone and compare validation accuracies.

    Returns the ``teacher_check`` entry of ``summary.json``; ``matches`` is true when the student alone
    is at least as accurate as the teacher on validation. The student never sees the teacher, so its
    training is kept in ``cache_dir`` (when given) and read back by any later run on the same data
    (``trained_alone``).
    """
    family, depth, width = largest_student(space, data)
    config = DistillConfig(family=family, depth=depth, width=width, alpha=0.0, epochs=epochs, seed=seed)
    student_val, params = trained_alone(config, data, cache_dir)
    matches = student_val >= teacher.val_accuracy
    student = arch_text((family, depth, width))
    return {
        "student": student,
        "params": params,
        "epochs": epochs,
        "student_val_accuracy": student_val,
        "teacher_val_accuracy": teacher.val_accuracy,
        "matches": matches,
        "message": check_message(student, epochs, student_val, teacher.val_accuracy, matches),
    }


def trained_alone(config: DistillConfig, data: TensorSplits, cache_dir: Path | None) -> tuple[float, int]:
    """The validation accuracy and parameter count of ``config``'s student trained without a teacher.

    Kept as ``<cache_dir>/<key>.json``, the key a digest of everything the training depends on (the data's
    fingerprint, the configuration, the device and torch's version): the same key trains the same weights, so
    a run with a cached teacher does not train the check's student again. An unreadable entry is trained anew.
    """
    key = hashlib.sha256(repr((fingerprint(data), config, data.train_x.device.type, torch.__version__))
                         .encode()).hexdigest()[:16]
    path = cache_dir / f"{key}.json" if cache_dir is not None else None
    cached = read_cache_entry(path) if path is not None else None
    if cached is not None and isinstance(cached.get("val_accuracy"), float) and isinstance(cached.get("params"), int):
        return cached["val_accuracy"], cached["params"]
    # A signal while the run prepares (``tuning.stop_signal``) ends the training after its epoch: the unfinished
    # check is not kept, and ``check_stop`` stops the run.
    result = distill(config, data, stop_after=lambda _: stop_requested())
    check_stop()
    val_accuracy, params = float(result.last_val_accuracy), result.history[-1].params
    if path is not None:
        atomic_write_json(path, {"val_accuracy": val_accuracy, "params": params, "config": repr(config)})
    return val_accuracy, params


def check_message(student: str, epochs: int, student_val: float, teacher_val: float, matches: bool) -> str:
    """The check's one console line."""
    if matches:
        return (f"teacher check: WARNING a {student} student trained alone for {epochs} epochs already reaches "
                f"{student_val:.4f} validation accuracy, the teacher {teacher_val:.4f}: it has little to teach; "
                "consider a stronger teacher (--teacher, --teacher-epochs, --teacher-checkpoint)")
    return (f"teacher check: passed (teacher {teacher_val:.4f} validation accuracy; a {student} student "
            f"trained alone for {epochs} epochs reaches {student_val:.4f})")
