"""The run's setup as labelled facts: the teacher, the teacher check, the size bound, augmentation and recipes.

``setup_facts`` gathers the lines the summary records (each from one ``*_text`` function here), shared by
``report.html``'s and ``summary.md``'s setup sections; ``tuning.prepare`` reuses two of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reports.figures import format_params
from reports.run import as_float
from reports.text._format import (
    as_mapping,
    baseline_unsearched,
    format_accuracy,
    format_value,
    percent,
    strip_prefix,
)

TEACHER_SOURCES = {
    "trained": "trained in this run",
    "cache": "reused from the teacher cache",
    "checkpoint": "loaded from a checkpoint",
    "torchvision": "a torchvision architecture with your weights",
    "timm": "a timm architecture with your weights",
    "factory": "built by your factory",
    "torchscript": "loaded from a TorchScript file",
    "torch.export": "loaded from a torch.export program",
    "pickled module": "loaded from a pickled module (--trust-checkpoint)",
}
STUDENT_AUGMENTATION = {
    "none": "students trained without augmentation",
    "crop": "students trained with crop",
    "crop+flip": "students trained with crop and horizontal flip",
    "flip": "students trained with horizontal flip",
    "searched": "students' augmentation chosen by the search",
}


@dataclass(frozen=True)
class Fact:
    """One labelled line of the run's setup."""

    label: str
    text: str


def setup_facts(summary: Mapping[str, Any] | None) -> list[Fact]:
    """Teacher, teacher check, size bound, augmentation and baseline recipe: those the summary records."""
    summary = summary or {}
    check = teacher_check(summary)
    facts = [
        Fact("teacher", teacher_text(summary)),
        Fact("teacher's view", teacher_view_text(as_mapping(as_mapping(summary.get("teacher")).get("preprocessing")))),
        Fact("teacher features", teacher_features_text(summary)),
        Fact("parameter distillation", str(as_mapping(summary.get("teacher")).get("init_from_teacher") or "")),
        Fact("teacher check", check.text if check else ""),
        Fact("size bound", size_bound_text(summary)),
        Fact("augmentation", augmentation_text(summary)),
        Fact("baseline recipe", baseline_recipe_text(summary)),
        Fact("recipe search", recipe_search_text(summary)),
    ]
    return [f for f in facts if f.text]


def teacher_view_text(view: Mapping[str, Any] | None) -> str:
    """How a user's teacher sees images, in words ("" for a kdsearch teacher, which sees the data's view)."""
    if not view:
        return ""
    size = view.get("input_size")
    data_channels = len(view.get("data_mean") or ())
    parts = [f"resized to {size[0]}x{size[1]} px" if size else "at the data's size"]
    if view.get("channels") and view["channels"] != data_channels:
        parts.append(f"{data_channels}-channel images repeated to {view['channels']} channels")
    if view.get("mean") is not None:
        parts.append(f"normalised with mean {_joined(view['mean'])} and std {_joined(view.get('std') or ())}")
    else:
        parts.append("the dataset's normalisation")
    return ", ".join(parts)


def teacher_features_text(summary: Mapping[str, Any]) -> str:
    """Which teacher layers the feature losses read, for a user's teacher."""
    teacher = as_mapping(summary.get("teacher"))
    if "feature_layers" not in teacher:
        return ""
    layers = teacher.get("feature_layers") or []
    if layers:
        return f"feature losses read layers {', '.join(map(str, layers))}"
    return "none named: the search left feature losses (attention, hint) out"


def _joined(values: Any) -> str:
    return ",".join(f"{float(value):g}" for value in values)


# A train-minus-validation gap this large, at 100 % train accuracy, is called memorisation.
MEMORISATION_GAP = 0.02


def teacher_text(summary: Mapping[str, Any] | None) -> str:
    """The teacher in one line: where it came from, its size, and train / validation / test accuracy.

    Train next to validation shows memorisation: a teacher at 100 % on its training images but well
    below on validation gives soft labels there that are close to the hard labels.
    """
    te = as_mapping((summary or {}).get("teacher"))
    if not te:
        return ""
    parts = [str(te.get("arch") or "unknown architecture")]
    if te.get("source"):
        parts.append(TEACHER_SOURCES.get(str(te["source"]), f"source: {te['source']}"))
    if as_float(te.get("params")) is not None:
        parts.append(f"{format_params(as_float(te.get('params')))} params")
    accs = [(split, as_float(te.get(f"{split}_accuracy"))) for split in ("train", "val", "test")]
    known = [f"{'validation' if split == 'val' else split} {format_accuracy(a)}" for split, a in accs if a is not None]
    text = ", ".join(parts)
    if known:
        text += "; accuracy: " + ", ".join(known)
    train, val = accs[0][1], accs[1][1]
    if train is not None and val is not None:
        text += f" (train minus validation: {100 * (train - val):.1f} points"
        memorised = train >= 0.999 and train - val >= MEMORISATION_GAP
        text += "; it has memorised its training set)" if memorised else ")"
    return text


@dataclass(frozen=True)
class TeacherCheck:
    """The teacher check: a small student trained alone, compared with the teacher on validation."""

    matches: bool
    text: str
    message: str


def teacher_check(summary: Mapping[str, Any] | None) -> TeacherCheck | None:
    """The check's outcome in words, or ``None`` when the summary has no teacher check.

    ``matches`` means the small student reached the teacher: the teacher has little to teach, and the
    report shows ``message`` prominently.
    """
    check = as_mapping((summary or {}).get("teacher_check"))
    if not check:
        return None
    matches = bool(check.get("matches"))
    student = str(check.get("student") or "small")
    params = f" ({format_params(as_float(check.get('params')))} params)" if check.get("params") is not None else ""
    epochs = f" for {check['epochs']} epochs" if check.get("epochs") is not None else ""
    evidence = (
        f"a {student} student{params} trained alone{epochs} reached "
        f"{format_accuracy(as_float(check.get('student_val_accuracy')))} validation accuracy, against the "
        f"teacher's {format_accuracy(as_float(check.get('teacher_val_accuracy')))}"
    )
    message = strip_prefix(str(check.get("message") or ""), "teacher check:")
    if matches:
        text = f"the small student matches the teacher: {evidence}."
        return TeacherCheck(True, text, message or text[0].upper() + text[1:])
    return TeacherCheck(False, f"passed (the teacher is better than a small student): {evidence}.", message)


def size_bound_text(summary: Mapping[str, Any] | None) -> str:
    """Every bound the students met: ``students up to 54.2k params, 5.0% of the teacher's 1.08M (requested: 5%)``,
    ``... 20M FLOPs``, ``... 0.5 ms at batch 1 (onnxruntime 1.32, one thread of <cpu>)``; empty when unknown."""
    summary = summary or {}
    bound = as_mapping(summary.get("size_bound"))
    parts = []
    max_params = as_float(bound.get("max_params"))
    if max_params is not None:
        fraction = as_float(bound.get("teacher_fraction"))
        teacher_params = as_float(as_mapping(summary.get("teacher")).get("params"))
        if fraction is None and teacher_params:
            fraction = max_params / teacher_params
        text = f"{format_params(max_params)} params"
        if fraction is not None:
            text += f", {percent(fraction)} of the teacher"
            text += f"'s {format_params(teacher_params)}" if teacher_params else ""
        if bound.get("requested") not in (None, "none"):
            text += f" (requested: {bound['requested']})"
        parts.append(text)
    max_flops = as_float(bound.get("max_flops"))
    if max_flops is not None:
        parts.append(f"{format_params(max_flops)} FLOPs")
    max_latency = as_float(bound.get("max_latency_ms"))
    if max_latency is not None:
        latency = as_mapping(bound.get("latency"))
        where = ", ".join(str(part) for part in (
            " ".join(str(latency[key]) for key in ("runtime", "runtime_version") if latency.get(key)),
            f"one thread of {latency['cpu']}" if latency.get("cpu") else "") if part)
        parts.append(f"{max_latency:g} ms at batch 1" + (f" ({where})" if where else ""))
    return "students up to " + "; ".join(parts) if parts else ""


def augmentation_text(summary: Mapping[str, Any] | None) -> str:
    """The dataset's augmentation, whether the teacher used it, and what the students used."""
    aug = as_mapping((summary or {}).get("augmentation"))
    if not aug:
        return ""
    dataset = str(aug.get("dataset") or "none")
    details = []
    if aug.get("crop_padding") is not None and "crop" in dataset:
        details.append(f"padding {aug['crop_padding']} px")
    if aug.get("horizontal_flip") is not None:
        details.append("horizontal flip" if aug["horizontal_flip"] else "no horizontal flip")
    parts = [f"dataset augmentation: {dataset}" + (f" ({', '.join(details)})" if details else "")]
    if aug.get("teacher") is not None:
        parts.append("teacher trained with it" if aug["teacher"] else "teacher trained without it")
    if aug.get("students") is not None:
        students = str(aug["students"])
        parts.append(STUDENT_AUGMENTATION.get(students, f"students: {students}"))
    return "; ".join(parts)


def recipe_search_text(summary: Mapping[str, Any] | None) -> str:
    """The recipe phase (``tuning.recipe_phase``): its trials on the re-check's architecture, its best validation
    accuracy against the main search's on that architecture, and whether it won when re-checked over the seeds."""
    entry = as_mapping((summary or {}).get("recipe_search"))
    if entry.get("trials") is None:
        return ""
    best, main = as_float(entry.get("best_val_accuracy")), as_float(entry.get("main_best_val_accuracy"))
    text = (f"{entry['trials']} trials of {entry['arch']}, best validation accuracy {format_accuracy(best)} "
            f"against {format_accuracy(main)} for the main search's best on it")
    if best is None:
        return text
    if entry.get("chosen"):
        return text + "; re-checked over the final seeds, it won: the final stage chose its configuration"
    return text + "; re-checked over the final seeds, it did not beat the re-check's choice"


def baseline_recipe_text(summary: Mapping[str, Any] | None) -> str:
    """The baseline's own recipe (lr, weight decay, batch size, augment) and the search that tuned it."""
    baseline = as_mapping((summary or {}).get("baseline"))
    recipe, search = as_mapping(baseline.get("recipe")), as_mapping(baseline.get("search"))
    parts = []
    names = (("lr", "lr"), ("weight_decay", "weight decay"), ("batch_size", "batch size"))
    parts += [f"{label} {format_value(recipe[key])}" for key, label in names if recipe.get(key) is not None]
    if recipe.get("augment") is not None:
        parts.append(f"augmentation {_on_off(recipe['augment'])}")
    text = ", ".join(parts)
    if baseline_unsearched(baseline):
        untuned = "the winner's own, not searched (--baseline-budget 0)"
        return f"{text}; {untuned}" if text else untuned
    if search.get("trials") is not None:
        best = as_float(search.get("best_val_accuracy"))
        tuned = f"tuned by its own search of {search['trials']} trials"
        tuned += f" (best validation accuracy {format_accuracy(best)})" if best is not None else ""
        text = f"{text}; {tuned}" if text else tuned
    return text


def _on_off(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
