"""Is the teacher worth learning from? A quick student trained alone, compared with it on validation.

A teacher that a student of the allowed size already matches on its own has little to teach: the
search still runs (the user decides), but the console, ``summary.json`` and the report say so at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runfolder import TEACHER_CHECK_FILE, atomic_write_json, read_json
from spaces import SearchSpace
from trainers import DistillConfig, TeacherResult, TensorSplits, distill, student_parameter_count
from tuning.gain_curve import arch_text


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
    try:
        saved = read_json(run_dir / TEACHER_CHECK_FILE)
    except ValueError:  # unreadable: check again
        return None
    if isinstance(saved, dict) and saved.get("teacher_val_accuracy") == teacher.val_accuracy:
        return saved
    return None


def save_check(run_dir: Path, check: dict[str, Any]) -> None:
    """Keep the check with the run, for its reruns."""
    atomic_write_json(run_dir / TEACHER_CHECK_FILE, check)


def check_teacher(teacher: TeacherResult, space: SearchSpace, data: TensorSplits, epochs: int,
                  seed: int) -> dict[str, Any]:
    """Train the space's largest first-family student alone and compare validation accuracies.

    Returns the ``teacher_check`` entry of ``summary.json``; ``matches`` is true when the student alone
    is at least as accurate as the teacher on validation.
    """
    family, depth, width = largest_student(space, data)
    config = DistillConfig(family=family, depth=depth, width=width, alpha=0.0, epochs=epochs, seed=seed)
    result = distill(config, data)
    student_val = result.last_val_accuracy
    matches = student_val >= teacher.val_accuracy
    student = arch_text((family, depth, width))
    return {
        "student": student,
        "params": result.history[-1].params,
        "epochs": epochs,
        "student_val_accuracy": student_val,
        "teacher_val_accuracy": teacher.val_accuracy,
        "matches": matches,
        "message": check_message(student, epochs, student_val, teacher.val_accuracy, matches),
    }


def check_message(student: str, epochs: int, student_val: float, teacher_val: float, matches: bool) -> str:
    """The check's one console line."""
    if matches:
        return (f"teacher check: WARNING a {student} student trained alone for {epochs} epochs already reaches "
                f"{student_val:.4f} validation accuracy, the teacher {teacher_val:.4f}: it has little to teach; "
                "consider a stronger teacher (--teacher, --teacher-epochs, --teacher-checkpoint)")
    return (f"teacher check: passed (teacher {teacher_val:.4f} validation accuracy; a {student} student "
            f"trained alone for {epochs} epochs reaches {student_val:.4f})")
