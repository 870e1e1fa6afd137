"""The words of the report: facts pulled from the run records, formatted for people.

Everything here is pure (records in, strings or small dataclasses out), shared by ``report.html`` and
``summary.md`` so both tell the same story.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports.figures import format_params, gain_curve_data, rounds_data
from reports.run import (
    COMPLETE,
    FAILED,
    HELPS,
    HURTS,
    STOPPED,
    VERDICTS,
    RunRecords,
    Trial,
    as_float,
    interval,
)
from runfolder import verdict as runfolder_verdict
from spaces import PARAMETERS

# The search space's parameters in the order a person reads them (architecture, loss, optimiser), and
# what each means: both from the one table of searched parameters.
PARAM_ORDER = tuple(PARAMETERS)
PARAM_MEANING = {name: parameter.meaning for name, parameter in PARAMETERS.items()}


@dataclass(frozen=True)
class TrialCounts:
    """How the search's trials ended."""

    completed: int
    stopped_early: int
    failed: int
    other: int = 0

    @property
    def total(self) -> int:
        """All trials counted."""
        return self.completed + self.stopped_early + self.failed + self.other


def trial_counts(trials: Sequence[Trial], summary: Mapping[str, Any] | None = None) -> TrialCounts:
    """Counts from the summary when it has them (the run's own final word), else from the trials."""
    counted = Counter(t.state for t in trials)
    other = sum(n for state, n in counted.items() if state not in (COMPLETE, STOPPED, FAILED))
    from_summary = (summary or {}).get("trials")
    if isinstance(from_summary, Mapping) and all(
        isinstance(from_summary.get(k), int) for k in ("completed", "stopped_early", "failed")
    ):
        return TrialCounts(
            completed=from_summary["completed"],
            stopped_early=from_summary["stopped_early"],
            failed=from_summary["failed"],
            other=other,
        )
    return TrialCounts(counted[COMPLETE], counted[STOPPED], counted[FAILED], other)


def format_accuracy(mean: float | None, std: float | None = None, n: int | None = None) -> str:
    """``93.4%``, or ``93.4% ± 0.3 pp (3 seeds)`` when measured over seeds."""
    if mean is None:
        return "n/a"
    text = f"{100 * mean:.1f}%"
    if std is not None:
        text += f" ± {100 * std:.1f} pp"
    if n is not None and n > 1:
        text += f" ({n} seeds)"
    return text


def format_value(value: Any) -> str:
    """A config value: floats to 4 significant digits, the rest as written."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float | None) -> str:
    """``45 s``, ``12.5 min``, ``3.2 h``."""
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class KdResult:
    """What the summary says distillation bought, in percentage points.

    ``gain`` and ``ci95`` are the final stage's paired statistic (``runfolder.paired_gain``), read, never
    recomputed. ``verdict`` is one of ``VERDICTS`` or ``None`` when it cannot be told (no interval).
    """

    gain: float | None
    ci95: tuple[float, float] | None = None
    verdict: str | None = None
    seeds: int | None = None
    resolution: float | None = None
    own_recipe: bool = False


def kd_result(summary: Mapping[str, Any] | None) -> KdResult:
    """The distillation gain, its interval and verdict from ``summary.json``, whatever its age.

    New runs carry ``kd_gain``, ``kd_gain_ci95`` and ``kd_verdict``; a verdict missing or unknown is
    read off the interval (``runfolder.verdict``). Runs made before the interval was recorded carry
    ``kd_gain`` alone and get no verdict.
    """
    summary = summary or {}
    student, baseline = _mapping(summary.get("student")), _mapping(summary.get("baseline"))
    gain = as_float(summary.get("kd_gain"))
    ci95 = interval(summary.get("kd_gain_ci95"))
    verdict = summary.get("kd_verdict") if summary.get("kd_verdict") in VERDICTS else None
    if verdict is None and ci95 is not None:
        verdict = runfolder_verdict(*ci95)
    per_seed = summary.get("kd_gain_per_seed")
    seeds = len(per_seed) if isinstance(per_seed, list) and per_seed else None
    if seeds is None and student and isinstance(student.get("seeds"), list):
        seeds = len(student["seeds"]) or None
    return KdResult(
        gain=gain,
        ci95=ci95,
        verdict=verdict if gain is not None else None,
        seeds=seeds,
        resolution=points_per_test_image(summary),
        own_recipe=bool(baseline) and any(isinstance(baseline.get(k), Mapping) for k in ("recipe", "search")),
    )


def points_per_test_image(summary: Mapping[str, Any] | None) -> float | None:
    """How many points one test image is worth: the summary's value, else 100 / the test split's size."""
    summary = summary or {}
    points = as_float(summary.get("test_resolution_points"))
    if points is not None:
        return points
    test_size = as_float(_mapping(summary.get("dataset")).get("test"))
    return 100 / test_size if test_size else None


def format_latency(milliseconds: float | None) -> str:
    """``0.052 ms``, ``1.3 ms``: three significant digits; ``n/a`` when unknown."""
    return f"{milliseconds:.3g} ms" if milliseconds is not None else "n/a"


def format_points(value: float, signed: bool = True) -> str:
    """Percentage points with two decimals: ``+0.83`` (signed) or ``0.83``; never ``-0.00``."""
    value += 0.0  # -0.0 -> 0.0
    return f"{value:+.2f}" if signed else f"{abs(value):.2f}"


def verdict_sentence(summary: Mapping[str, Any] | None) -> str:
    """The KD verdict as one plain sentence (report.html, summary.md and the console share it)."""
    return kd_sentence(kd_result(summary))


def kd_sentence(result: KdResult) -> str:
    """One sentence for a ``KdResult``: the verdict, the gain, its 95 % interval, seeds and resolution."""
    if result.gain is None:
        return (
            "The gain from distillation is unknown: the final stage did not train the distilled student and "
            "the same student without a teacher (no baseline) in this run."
        )
    alone = (
        "the same student trained alone with its own tuned recipe"
        if result.own_recipe
        else "the same student trained without a teacher"
    )
    gain = result.gain + 0.0
    direction = "more" if gain >= 0 else "less"
    diff = f"{format_points(gain, signed=gain >= 0)} points {direction} accurate on test than {alone}"
    seeds = f" over {result.seeds} paired seeds" if result.seeds else ""
    resolution = f"one test image = {result.resolution:.2f} points" if result.resolution is not None else None
    if result.ci95 is None:
        return _no_interval_sentence(result, diff, resolution)
    low, high = result.ci95
    ci = f"95 % CI {format_points(low)} to {format_points(high)}{seeds}"
    tail = f"{ci}; {resolution}" if resolution else ci
    if result.verdict == HELPS:
        return f"Distillation helps: the distilled student is {diff} ({tail})."
    if result.verdict == HURTS:
        return f"Distillation hurts: the distilled student is {diff} ({tail}); training it alone is better."
    return (
        f"No detectable difference from distillation: the distilled student is {diff}, but the {ci} includes 0, "
        "so this run cannot tell distillation apart from training the student alone"
        + (f" ({resolution})." if resolution else ".")
    )


def _no_interval_sentence(result: KdResult, diff: str, resolution: str | None) -> str:
    """Runs made before the 95 % interval was recorded: the gain and its old spread, and no verdict."""
    seeds = f" over {result.seeds} seeds" if result.seeds else ""
    return (
        f"Distillation gain: the distilled student is {diff}{seeds}. The 95 % confidence interval of the gain "
        "is unknown (this run did not record it), so whether the difference is more than seed-to-seed noise "
        "cannot be told" + (f"; {resolution}." if resolution else ".")
    )


@dataclass(frozen=True)
class BestConfig:
    """The configuration to report and where it came from."""

    config: dict[str, Any]
    source: str
    trial_id: str | None


def best_config(records: RunRecords) -> BestConfig | None:
    """The final stage's choice when the run got that far, else the best search trial so far."""
    summary = records.summary or {}
    final = summary.get("final") if isinstance(summary.get("final"), Mapping) else None
    winner = str(final["winner"]) if final and final.get("winner") is not None else None
    if isinstance(summary.get("best_config"), Mapping) and summary["best_config"]:
        source = (
            "chosen by the final stage (best validation mean over seeds)"
            if winner
            else "best configuration of the search"
        )
        return BestConfig(dict(summary["best_config"]), source, winner)
    ranked = [t for t in records.trials if t.best_val_accuracy is not None and t.state != FAILED]
    if not ranked:
        return None
    # Prefer trials that ran their full budget: a stopped trial's accuracy is from fewer epochs.
    best = max(ranked, key=lambda t: (t.state == COMPLETE, t.best_val_accuracy))
    return BestConfig(
        dict(best.config),
        f"best search trial so far: {best.label}, validation accuracy "
        f"{format_accuracy(best.best_val_accuracy)}, not re-trained over seeds",
        best.trial_id,
    )


def ordered_params(names: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Parameter names in reading order: the known ones first, then the rest alphabetically."""
    names = list(names)
    known = [p for p in PARAM_ORDER if p in names]
    return known + sorted(n for n in names if n not in PARAM_ORDER)


@dataclass(frozen=True)
class SearchedParam:
    """What one parameter ranged over across the trials."""

    name: str
    meaning: str
    values: str
    trials: int


def searched_space(trials: Sequence[Trial]) -> list[SearchedParam]:
    """Per parameter, the values tried: categories with counts, or the numeric range."""
    by_name: dict[str, list[Any]] = {}
    for t in trials:
        for name, value in t.config.items():
            by_name.setdefault(name, []).append(value)
    rows = []
    for name in ordered_params(by_name):
        values = by_name[name]
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        distinct = Counter(map(format_value, values))
        # Continuous values (lr, alpha, beta) read best as a range; a handful of choices as a tally.
        continuous = any(isinstance(v, float) and not v.is_integer() for v in numeric)
        if len(numeric) == len(values) and (continuous or len(distinct) > 8):
            desc = f"{format_value(min(numeric))} to {format_value(max(numeric))}"
        else:
            order = sorted(distinct, key=lambda v: _sort_key(v))
            desc = ", ".join(f"{v} ({distinct[v]})" for v in order)
        rows.append(SearchedParam(name, PARAM_MEANING.get(name, ""), desc, len(values)))
    return rows


@dataclass(frozen=True)
class Overview:
    """The header facts: what ran, on what, and how the trials ended."""

    run: str
    dataset: str
    teacher: str
    budget: str
    objective: str
    counts: TrialCounts
    finished: bool
    took: str | None


def overview(records: RunRecords) -> Overview:
    """Header facts from the summary, falling back to the spec for an interrupted run."""
    summary, spec = records.summary or {}, records.spec
    ds = summary.get("dataset") if isinstance(summary.get("dataset"), Mapping) else {}
    dataset = str(ds.get("name") or spec.get("dataset") or "unknown dataset")
    sizes = [f"{ds[k]} {k}" for k in ("train", "val", "test") if isinstance(ds.get(k), int)]
    if sizes:
        dataset += f" ({', '.join(sizes)} examples"
        dataset += f", {ds['classes']} classes)" if ds.get("classes") else ")"
    te = summary.get("teacher") if isinstance(summary.get("teacher"), Mapping) else {}
    teacher = str(te.get("arch") or spec.get("teacher") or "unknown teacher")
    details = []
    if te.get("params") is not None:
        details.append(f"{format_params(as_float(te.get('params')))} params")
    if as_float(te.get("test_accuracy")) is not None:
        details.append(f"{format_accuracy(as_float(te.get('test_accuracy')))} test accuracy")
    if details:
        teacher += f" ({', '.join(details)})"
    budget = summary.get("budget", spec.get("budget"))
    objective = str(summary.get("objective") or spec.get("objective") or "accuracy")
    timings = summary.get("timings") if isinstance(summary.get("timings"), Mapping) else {}
    took = None
    if as_float(timings.get("total_s")) is not None:
        took = format_duration(as_float(timings.get("total_s")))
        if as_float(timings.get("search_s")) is not None:
            took += f" (search: {format_duration(as_float(timings.get('search_s')))}"
            took += f" on {timings['slots']} parallel slots)" if timings.get("slots") else ")"
    return Overview(
        run=records.name,
        dataset=dataset,
        teacher=teacher,
        budget=f"{budget} trials" if budget is not None else "unknown budget",
        objective="validation accuracy and student size (Pareto)" if objective == "pareto" else "validation accuracy",
        counts=trial_counts(records.trials, records.summary),
        finished=bool(summary) and isinstance(summary.get("student"), Mapping),
        took=took,
    )


def status_sentence(records: RunRecords) -> str | None:
    """A warning when the run did not get to the end, naming what is missing."""
    if records.summary is None:
        return (
            "This run has no summary.json: it was interrupted or is still running. The report shows the "
            "search trials recorded so far; there are no test-set results yet."
        )
    if not isinstance(records.summary.get("student"), Mapping):
        return (
            "The final stage did not finish (no distilled student in summary.json): the report shows the "
            "search, but no test-set results for a student."
        )
    return None


@dataclass(frozen=True)
class ResultRow:
    """One row of the teacher / baseline / student table."""

    model: str
    arch: str
    params: str
    accuracy: str
    flops: str
    latency: str


def result_rows(summary: Mapping[str, Any] | None) -> list[ResultRow]:
    """Teacher, baseline, textbook arm and distilled student as table rows (only those the summary has)."""
    summary = summary or {}
    rows = []
    own_recipe = kd_result(summary).own_recipe
    for key, label in (
        ("teacher", "teacher"),
        (
            "baseline",
            "baseline: same student alone, own tuned recipe" if own_recipe else "baseline: student without a teacher",
        ),
        ("textbook", "same student, textbook KD recipe (alpha 0.9, T 4)"),
        ("student", "distilled student (finetuned)"),
    ):
        entry = summary.get(key)
        if not isinstance(entry, Mapping):
            continue
        if key == "textbook":  # the student's architecture, so its size and cost too
            entry = {**(_mapping(summary.get("student"))), **entry}
        if key == "teacher":
            acc = format_accuracy(as_float(entry.get("test_accuracy")))
        else:
            seeds = entry.get("seeds") or entry.get("test_accuracies") or []
            acc = format_accuracy(
                as_float(entry.get("test_accuracy_mean")),
                as_float(entry.get("test_accuracy_std")),
                len(seeds),
            )
        flops = as_float(entry.get("flops"))
        latency = as_float(entry.get("latency_ms"))
        onnx_latency = as_float(entry.get("onnx_latency_ms"))
        rows.append(
            ResultRow(
                model=label,
                arch=str(entry.get("arch") or "n/a"),
                params=format_params(as_float(entry.get("params"))),
                accuracy=acc,
                flops=format_params(flops) if flops is not None else "n/a",
                latency=(f"{format_latency(onnx_latency)} onnxruntime, " if onnx_latency is not None else "")
                + (f"{latency:.2f} ms torch" if onnx_latency is not None and latency is not None
                   else f"{latency:.2f} ms" if latency is not None else "n/a"),
            )
        )
    return rows


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
        Fact("teacher's view", teacher_view_text(_mapping(_mapping(summary.get("teacher")).get("preprocessing")))),
        Fact("teacher features", teacher_features_text(summary)),
        Fact("parameter distillation", str(_mapping(summary.get("teacher")).get("init_from_teacher") or "")),
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
    teacher = _mapping(summary.get("teacher"))
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
    te = _mapping((summary or {}).get("teacher"))
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
    check = _mapping((summary or {}).get("teacher_check"))
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
    message = _strip_prefix(str(check.get("message") or ""), "teacher check:")
    if matches:
        text = f"the small student matches the teacher: {evidence}."
        return TeacherCheck(True, text, message or text[0].upper() + text[1:])
    return TeacherCheck(False, f"passed (the teacher is better than a small student): {evidence}.", message)


def size_bound_text(summary: Mapping[str, Any] | None) -> str:
    """Every bound the students met: ``students up to 54.2k params, 5.0% of the teacher's 1.08M (requested: 5%)``,
    ``... 20M FLOPs``, ``... 0.5 ms at batch 1 (onnxruntime 1.32, one thread of <cpu>)``; empty when unknown."""
    summary = summary or {}
    bound = _mapping(summary.get("size_bound"))
    parts = []
    max_params = as_float(bound.get("max_params"))
    if max_params is not None:
        fraction = as_float(bound.get("teacher_fraction"))
        teacher_params = as_float(_mapping(summary.get("teacher")).get("params"))
        if fraction is None and teacher_params:
            fraction = max_params / teacher_params
        text = f"{format_params(max_params)} params"
        if fraction is not None:
            text += f", {_percent(fraction)} of the teacher"
            text += f"'s {format_params(teacher_params)}" if teacher_params else ""
        if bound.get("requested") not in (None, "none"):
            text += f" (requested: {bound['requested']})"
        parts.append(text)
    max_flops = as_float(bound.get("max_flops"))
    if max_flops is not None:
        parts.append(f"{format_params(max_flops)} FLOPs")
    max_latency = as_float(bound.get("max_latency_ms"))
    if max_latency is not None:
        latency = _mapping(bound.get("latency"))
        where = ", ".join(str(part) for part in (
            " ".join(str(latency[key]) for key in ("runtime", "runtime_version") if latency.get(key)),
            f"one thread of {latency['cpu']}" if latency.get("cpu") else "") if part)
        parts.append(f"{max_latency:g} ms at batch 1" + (f" ({where})" if where else ""))
    return "students up to " + "; ".join(parts) if parts else ""


def augmentation_text(summary: Mapping[str, Any] | None) -> str:
    """The dataset's augmentation, whether the teacher used it, and what the students used."""
    aug = _mapping((summary or {}).get("augmentation"))
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
    entry = _mapping((summary or {}).get("recipe_search"))
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
    baseline = _mapping((summary or {}).get("baseline"))
    recipe, search = _mapping(baseline.get("recipe")), _mapping(baseline.get("search"))
    parts = []
    names = (("lr", "lr"), ("weight_decay", "weight decay"), ("batch_size", "batch size"))
    parts += [f"{label} {format_value(recipe[key])}" for key, label in names if recipe.get(key) is not None]
    if recipe.get("augment") is not None:
        parts.append(f"augmentation {_on_off(recipe['augment'])}")
    text = ", ".join(parts)
    if search.get("trials") is not None:
        best = as_float(search.get("best_val_accuracy"))
        tuned = f"tuned by its own search of {search['trials']} trials"
        tuned += f" (best validation accuracy {format_accuracy(best)})" if best is not None else ""
        text = f"{text}; {tuned}" if text else tuned
    return text


def finetune_sentence(summary: Mapping[str, Any] | None) -> str | None:
    """What finetuning the winner did to its validation accuracy, and whether it was kept."""
    final = (summary or {}).get("final")
    ft = final.get("finetune") if isinstance(final, Mapping) else None
    if not isinstance(ft, Mapping) or as_float(ft.get("val_before")) is None or as_float(ft.get("val_after")) is None:
        return None
    before, after = as_float(ft["val_before"]), as_float(ft["val_after"])
    kept = "kept" if ft.get("kept") else "discarded (it did not improve validation accuracy)"
    return (
        f"Finetuning the winner moved its validation accuracy from {format_accuracy(before)} to "
        f"{format_accuracy(after)}; the finetuned weights were {kept}."
    )


def best_so_far(trials: Sequence[Trial]) -> Trial | None:
    """The trial with the highest validation accuracy, whatever its state."""
    ranked = [t for t in trials if t.best_val_accuracy is not None]
    return max(ranked, key=lambda t: t.best_val_accuracy) if ranked else None  # type: ignore[arg-type,return-value]


def gain_curve_markdown(summary: Mapping[str, Any] | None) -> list[str]:
    """The gain curve as a markdown table (smallest student first); no lines when the run has none."""
    data = gain_curve_data(summary)
    if data is None or not data.points:
        return []
    lines = [
        "**Where distillation pays** (gain of the distilled student over the same student trained alone, per size):",
        "",
        "| student | params | share of teacher | distilled test | alone test | gain, points (95 % CI) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in data.points:
        ci = f" ({format_points(p.ci_low)} to {format_points(p.ci_high)})" if p.ci_low is not None else ""
        share = _percent(p.teacher_fraction) if p.teacher_fraction is not None else "n/a"
        lines.append(
            f"| {p.arch} | {format_params(p.params)} | {share} | {format_accuracy(p.kd_mean)} | "
            f"{format_accuracy(p.baseline_mean)} | {format_points(p.gain)}{ci} | {p.verdict} |"
        )
    return [*lines, ""]


def rounds_markdown(summary: Mapping[str, Any] | None) -> list[str]:
    """The repeated rounds as a markdown table, and the teacher-assistant hint; no lines when neither is there."""
    data = rounds_data(summary)
    lines: list[str] = []
    if data is not None and len(data.points) > 1:
        lines += [
            "**Repeated rounds** (each a fresh student distilled from the teacher and the round before; "
            f"stopped: {data.stop}; exported: round {data.best}):",
            "",
            "| round | taught by | test accuracy | gain over the round before, points (95 % CI) | verdict |",
            "|---|---|---|---|---|",
        ]
        for p in data.points:
            ci = f" ({format_points(p.ci_low)} to {format_points(p.ci_high)})" if p.ci_low is not None else ""
            gain = f"{format_points(p.gain)}{ci}" if p.gain is not None else "n/a"
            lines.append(f"| {p.round} | {p.teachers} | {format_accuracy(p.mean, p.std, len(p.accuracies))} | "
                         f"{gain} | {p.verdict or 'n/a'} |")
        lines.append("")
    assistant = _mapping((summary or {}).get("teacher_assistant"))
    if assistant.get("how"):
        lines += [f"**Teacher assistant:** {_strip_prefix(str(assistant['how']), '')}.", ""]
    return lines


def summary_markdown(records: RunRecords, report_name: str = "report.html") -> str:
    """``summary.md``: the report's story in a few lines."""
    ov = overview(records)
    c = ov.counts
    lines = [
        f"# kdsearch run {ov.run}",
        "",
        f"Distilling **{ov.teacher}** on **{ov.dataset}**. Budget {ov.budget}, objective {ov.objective}: "
        f"{c.completed} completed, {c.stopped_early} stopped early by ASHA, {c.failed} failed"
        + (f", {c.other} unfinished" if c.other else "")
        + "."
        + (f" Took {ov.took}." if ov.took else ""),
        "",
    ]
    status = status_sentence(records)
    if status:
        lines += [f"> {status}", ""]
    check = teacher_check(records.summary)
    if check is not None and check.matches:
        lines += [f"> **Teacher check:** {check.message}", ""]
    rows = result_rows(records.summary)
    if rows:
        lines += [
            "| model | architecture | params | test accuracy |",
            "|---|---|---|---|",
            *[f"| {r.model} | {r.arch} | {r.params} | {r.accuracy} |" for r in rows],
            "",
        ]
    from reports.pareto import HEADER, pareto_rows  # it builds on this module's formatting

    front = pareto_rows(records.summary)
    if front:
        lines += ["**Pareto front: accuracy against size**", "", "| " + " | ".join(HEADER) + " |",
                  "|" + "---|" * len(HEADER),
                  *[f"| {r.trial} | {r.arch} | {r.val_accuracy} | {r.test_accuracy} | {r.params} | {r.flops} | "
                    f"{r.latency} |" for r in front], ""]
    if records.summary is not None and isinstance(records.summary.get("student"), Mapping):
        lines += [f"**Does distillation help?** {verdict_sentence(records.summary)}", ""]
        from reports.search_gain import search_sentence  # it builds on this module's formatting

        search = search_sentence(records.summary)
        lines += [f"**Does the search pay?** {search}", ""] if search else []
        lines += gain_curve_markdown(records.summary)
        lines += rounds_markdown(records.summary)
    else:
        best = best_so_far(records.trials)
        if best is not None:
            lines += [
                f"Best validation accuracy so far: {format_accuracy(best.best_val_accuracy)} ({best.label}, "
                f"{best.state.lower()}).",
                "",
            ]
    facts = setup_facts(records.summary)
    if facts:
        lines += ["## Setup", "", *[f"- **{f.label[0].upper() + f.label[1:]}:** {f.text}" for f in facts], ""]
    chosen = best_config(records)
    if chosen is not None:
        cfg = ", ".join(f"{k}={format_value(chosen.config[k])}" for k in ordered_params(chosen.config))
        lines += [f"**Best configuration**, {chosen.source}: {cfg}", ""]
    lines += [f"Full report with figures: [{report_name}]({report_name}) in {records.run_dir.resolve()}", ""]
    return "\n".join(lines)


def _sort_key(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _percent(fraction: float) -> str:
    """``5%``, ``0.17%``: enough digits to tell small fractions apart."""
    return f"{100 * fraction:.2g}%" if fraction < 0.01 else f"{100 * fraction:.3g}%"


def _on_off(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _strip_prefix(text: str, prefix: str) -> str:
    text = text.strip()
    if text.lower().startswith(prefix):
        text = text[len(prefix) :].strip()
    return text[:1].upper() + text[1:]
