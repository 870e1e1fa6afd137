"""The words of the report: facts pulled from the run records, formatted for people.

Everything here is pure (records in, strings or small dataclasses out), shared by ``report.html`` and
``summary.md`` so both tell the same story.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports.figures import format_params
from reports.run import COMPLETE, FAILED, STOPPED, RunRecords, Trial, as_float

# The search space's parameters in the order a person reads them (architecture, loss, optimiser).
PARAM_ORDER = (
    "family",
    "depth",
    "width",
    "alpha",
    "temperature",
    "feature_loss",
    "beta",
    "lr",
    "weight_decay",
    "batch_size",
    "distill_interval",
    "init_from_teacher",
)
PARAM_MEANING = {
    "family": "student architecture family",
    "depth": "student depth (blocks)",
    "width": "student width (base channels)",
    "alpha": "weight of the soft-label KL term (the rest goes to cross-entropy)",
    "temperature": "softmax temperature of the KL term",
    "feature_loss": "feature loss (attention transfer, FitNets hint, or none)",
    "beta": "weight of the feature loss",
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "batch_size": "batch size",
    "distill_interval": "KD terms run every k-th optimizer step",
    "init_from_teacher": "student starts from sliced teacher weights",
}


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


def kd_gain(summary: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    """The distillation gain in percentage points (student minus baseline test mean) and its std.

    Uses the summary's ``kd_gain``/``kd_gain_std``; when those are missing but both means are there,
    computes them (std of a difference of independent means: root of the summed variances).
    """
    summary = summary or {}
    gain, std = as_float(summary.get("kd_gain")), as_float(summary.get("kd_gain_std"))
    student, baseline = summary.get("student"), summary.get("baseline")
    if gain is None and isinstance(student, Mapping) and isinstance(baseline, Mapping):
        s_mean, b_mean = (
            as_float(student.get("test_accuracy_mean")),
            as_float(baseline.get("test_accuracy_mean")),
        )
        if s_mean is not None and b_mean is not None:
            gain = 100 * (s_mean - b_mean)
            s_std, b_std = (
                as_float(student.get("test_accuracy_std")),
                as_float(baseline.get("test_accuracy_std")),
            )
            if std is None and s_std is not None and b_std is not None:
                std = 100 * math.hypot(s_std, b_std)
    return gain, std


def kd_gain_sentence(gain: float | None, std: float | None) -> str:
    """Say plainly whether distillation helped, including when it did not or the gain is noise."""
    if gain is None:
        return (
            "The gain from distillation is unknown: the same student was not trained without a teacher "
            "(no baseline) in this run."
        )
    spread = f" ± {std:.2f}" if std is not None else ""
    within_noise = std is not None and abs(gain) <= std
    if gain > 0:
        verdict = (
            "Distillation helped only within the seed-to-seed spread, so it is not clearly better than "
            "training the student alone"
            if within_noise
            else "Distillation helped"
        )
        return (
            f"{verdict}: the distilled student is {gain:+.2f}{spread} percentage points more accurate on "
            "test than the same student trained without a teacher."
        )
    if gain < 0:
        noise = " (within the seed-to-seed spread)" if within_noise else ""
        return (
            f"Distillation did not help: the distilled student is {abs(gain):.2f}{spread} percentage points "
            f"less accurate on test than the same student trained without a teacher{noise}."
        )
    return (
        f"Distillation made no difference: the distilled student and the same student trained without a "
        f"teacher have the same test accuracy (0.00{spread} percentage points)."
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
    """Teacher, baseline and distilled student as table rows (only those the summary has)."""
    summary = summary or {}
    rows = []
    for key, label in (
        ("teacher", "teacher"),
        ("baseline", "baseline: student without a teacher"),
        ("student", "distilled student (finetuned)"),
    ):
        entry = summary.get(key)
        if not isinstance(entry, Mapping):
            continue
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
        rows.append(
            ResultRow(
                model=label,
                arch=str(entry.get("arch") or "n/a"),
                params=format_params(as_float(entry.get("params"))),
                accuracy=acc,
                flops=format_params(flops) if flops is not None else "n/a",
                latency=f"{latency:.2f} ms" if latency is not None else "n/a",
            )
        )
    return rows


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
    rows = result_rows(records.summary)
    if rows:
        lines += [
            "| model | architecture | params | test accuracy |",
            "|---|---|---|---|",
            *[f"| {r.model} | {r.arch} | {r.params} | {r.accuracy} |" for r in rows],
            "",
        ]
    if records.summary is not None and isinstance(records.summary.get("student"), Mapping):
        lines += [f"**KD gain:** {kd_gain_sentence(*kd_gain(records.summary))}", ""]
    else:
        best = best_so_far(records.trials)
        if best is not None:
            lines += [
                f"Best validation accuracy so far: {format_accuracy(best.best_val_accuracy)} ({best.label}, "
                f"{best.state.lower()}).",
                "",
            ]
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
