"""What the run measured on test, in words: the KD gain and verdict, the result table and the gain curve.

``kd_result`` reads the distillation gain, its interval and verdict from ``summary.json``; ``kd_sentence`` and
``verdict_sentence`` tell it in one sentence; ``result_rows`` is the teacher / baseline / student table;
``finetune_sentence``, ``gain_curve_markdown`` and ``rounds_markdown`` tell the rest of the final stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reports.figures import format_params, gain_curve_data, rounds_data
from reports.run import HELPS, HURTS, VERDICTS, as_float, interval
from reports.text._format import (
    as_mapping,
    baseline_unsearched,
    format_accuracy,
    format_latency,
    format_points,
    percent,
    points_per_test_image,
    strip_prefix,
)
from runfolder import verdict as runfolder_verdict


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
    student, baseline = as_mapping(summary.get("student")), as_mapping(summary.get("baseline"))
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
        own_recipe=_baseline_tuned(baseline),
    )


def _baseline_tuned(baseline: Mapping[str, Any] | None) -> bool:
    """Whether the baseline had its own recipe search (``--baseline-budget 0`` gives it none)."""
    if not baseline or baseline_unsearched(baseline):
        return False
    return any(isinstance(baseline.get(key), Mapping) for key in ("recipe", "search"))


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
    gain = result.gain
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
            entry = {**(as_mapping(summary.get("student"))), **entry}
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
        share = percent(p.teacher_fraction) if p.teacher_fraction is not None else "n/a"
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
    assistant = as_mapping((summary or {}).get("teacher_assistant"))
    if assistant.get("how"):
        lines += [f"**Teacher assistant:** {strip_prefix(str(assistant['how']), '')}.", ""]
    return lines
