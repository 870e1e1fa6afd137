"""``summary.md``: the report's story in a few markdown lines, built from the other text modules."""

from __future__ import annotations

from collections.abc import Mapping

from reports.run import RunRecords
from reports.text._format import format_accuracy, format_value
from reports.text._results import gain_curve_markdown, result_rows, rounds_markdown, verdict_sentence
from reports.text._setup import setup_facts, teacher_check
from reports.text._trials import best_config, best_so_far, ordered_params, overview, status_sentence


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
