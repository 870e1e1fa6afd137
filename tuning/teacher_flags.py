"""The ``--teacher*`` flags of ``search.py``: checked against each other, parsed in place."""

from __future__ import annotations

import difflib
import importlib.util
import math
from pathlib import Path
from typing import Any

from trainers.teacher_sources import LIBRARIES, PREPROCESSING, TIMM_MISSING, TeacherSource, is_file_target, source_kind


class TeacherFlagError(ValueError):
    """A ``--teacher*`` flag that cannot be used; the message names it and the fix."""


def check_teacher_flags(flags: dict[str, Any]) -> None:
    """The ``--teacher*`` flags of ``build_spec`` agree with each other; numbers and lists are parsed in place.
    ``TeacherFlagError`` names the first problem."""
    teacher, checkpoint = flags.get("teacher"), flags.get("teacher_checkpoint")
    kind = source_kind(teacher) if teacher is not None else "registered"
    if teacher is not None and checkpoint is not None:
        raise TeacherFlagError(f"give either --teacher {teacher} or --teacher-checkpoint {checkpoint}, not both "
                               "(a checkpoint holds its whole model)")
    if kind == "timm" and importlib.util.find_spec("timm") is None:
        raise TeacherFlagError(f"--teacher {teacher}: {TIMM_MISSING}")
    if kind == "factory":
        target, _, function = teacher.rpartition(":")
        if is_file_target(target):  # a file: absolute, so every Ray worker finds the same one
            flags["teacher"] = f"{Path(target).expanduser().absolute()}:{function}"
    foreign = kind in (*LIBRARIES, "factory") or checkpoint is not None
    if "teacher_weights" in flags:
        if kind not in (*LIBRARIES, "factory"):
            raise TeacherFlagError("--teacher-weights needs --teacher torchvision:NAME, timm:NAME or module:function "
                                   "(the architecture the weights are for); a kdsearch teacher file is "
                                   "--teacher-checkpoint")
        if not Path(flags["teacher_weights"]).expanduser().is_file():
            raise TeacherFlagError(f"--teacher-weights {flags['teacher_weights']} does not exist; check the path")
    if flags.get("trust_checkpoint") and checkpoint is None:
        raise TeacherFlagError("--trust-checkpoint applies to a pickled --teacher-checkpoint only; drop it")
    preprocessing = flags.get("teacher_preprocessing", "dataset")
    if preprocessing not in PREPROCESSING:
        close = difflib.get_close_matches(preprocessing, PREPROCESSING, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TeacherFlagError(f"unknown --teacher-preprocessing '{preprocessing}'{hint}; choose from "
                               f"{', '.join(PREPROCESSING)}")
    if "teacher_input_size" in flags:
        size = flags["teacher_input_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TeacherFlagError(f"--teacher-input-size must be an integer of at least 1, got {size!r}")
    for name in ("teacher_mean", "teacher_std"):
        if name in flags:
            flags[name] = _numbers(flags[name], "--" + name.replace("_", "-"), positive=name == "teacher_std")
    if ("teacher_mean" in flags) != ("teacher_std" in flags):
        raise TeacherFlagError("give --teacher-mean and --teacher-std together (per channel, e.g. "
                               "--teacher-mean 0.485,0.456,0.406 --teacher-std 0.229,0.224,0.225)")
    if "teacher_features" in flags:
        layers = flags["teacher_features"]
        layers = tuple(layer.strip() for layer in layers.split(",")) if isinstance(layers, str) else tuple(layers)
        if not layers or not all(layers):
            raise TeacherFlagError(f"--teacher-features must be layer names separated by commas, e.g. layer2,layer3; "
                                   f"got {flags['teacher_features']!r}")
        flags["teacher_features"] = layers
    view = TeacherSource(input_size=flags.get("teacher_input_size"), mean=flags.get("teacher_mean"),
                         preprocessing=flags.get("teacher_preprocessing", "dataset"),
                         features=flags.get("teacher_features", ()))
    if view.sets_view and not foreign:
        raise TeacherFlagError("--teacher-input-size, --teacher-mean/--teacher-std, --teacher-preprocessing and "
                               "--teacher-features set how a user's teacher sees images; kdsearch's own teachers train "
                               "on the data's view (use them with --teacher torchvision:NAME, timm:NAME, "
                               "module:function or --teacher-checkpoint)")


def _numbers(value: Any, flag: str, positive: bool) -> tuple[float, ...]:
    """``0.485,0.456,0.406`` (or a sequence) as floats; ``TeacherFlagError`` naming ``flag`` otherwise."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        numbers = ()
    if not numbers or not all(math.isfinite(number) and (number > 0 or not positive) for number in numbers):
        need = "positive numbers" if positive else "numbers"
        raise TeacherFlagError(f"{flag} must be {need} separated by commas, one per channel (e.g. "
                               f"0.229,0.224,0.225), got {value!r}")
    return numbers
