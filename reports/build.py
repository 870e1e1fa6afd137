"""Build ``report.html`` and ``summary.md`` for a run folder.

The HTML is self-contained and works offline: plotly.js is embedded once in the page head and every
figure is a ``<div>`` plus a ``Plotly.newPlot`` call. Each figure is drawn behind its own guard, so a
figure that cannot be drawn (too few trials, an interrupted run) becomes a one-line note rather than
a failed report. Script errors in the page are caught into ``<pre id="kdsearch-errors">`` so a test
(or a curious reader) can see them.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import optuna
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

from reports import figures as F
from reports import optuna_figures as OF
from reports import pareto as P
from reports import search_gain as SG
from reports import text as T
from reports.run import RunRecords, load_run
from runfolder import REPORT_FILE, SUMMARY_MD_FILE, atomic_write_text

ERRORS_ID = "kdsearch-errors"
FIGURE_CLASS = "kd-figure"


@dataclass(frozen=True)
class Section:
    """One figure of the report: drawn (``figure``) or replaced by a ``note`` saying why not."""

    key: str
    title: str
    caption: str
    figure: go.Figure | None = None
    note: str | None = None


def build(run_dir: str | Path) -> Path:
    """Write ``report.html`` and ``summary.md`` into ``run_dir``; return the report's path.

    Raises ``reports.run.RunFolderError`` when ``run_dir`` is not a run folder. Both files are written
    atomically, so a reader never sees half a report, even when a rebuild is interrupted.
    """
    records = load_run(run_dir)
    sections = figure_sections(records)
    report = records.run_dir / REPORT_FILE
    atomic_write_text(report, render_html(records, sections))
    atomic_write_text(records.run_dir / SUMMARY_MD_FILE, T.summary_markdown(records, REPORT_FILE))
    return report


def figure_sections(records: RunRecords) -> list[Section]:
    """Every figure the report can show, in reading order, each drawn or explained."""
    summary = records.summary or {}
    final = summary.get("final") if isinstance(summary.get("final"), Mapping) else {}
    winner = str(final["winner"]) if final.get("winner") is not None else None
    study = records.study

    def own(draw: Callable[[], go.Figure | None], missing: str) -> Callable[[], go.Figure]:
        def run() -> go.Figure:
            fig = draw()
            if fig is None:
                raise OF.FigureUnavailable(missing)
            return fig

        return run

    def optuna_fig(draw: Callable[[optuna.Study], go.Figure]) -> Callable[[], go.Figure]:
        def run() -> go.Figure:
            if study is None:
                raise OF.FigureUnavailable("No readable optuna.journal in this run folder.")
            return draw(study)

        return run

    bars = F.comparison_data(records.summary)
    gain_curve = F.gain_curve_data(records.summary)
    gain_note = _gain_curve_note(summary, gain_curve)
    rounds = F.rounds_data(records.summary)
    candidates = F.final_candidates_data(records.summary)
    bound = summary.get("size_bound") if isinstance(summary.get("size_bound"), Mapping) else {}
    # A pareto search traded accuracy against the bound's measure (latency, FLOPs); other searches against size.
    measure = str(bound.get("pareto_measure") or "params") if summary.get("objective") == "pareto" else "params"
    measure = measure if measure in F.SIZE_AXES else "params"
    scatter = F.accuracy_vs_params_data(records.trials, winner, measure)
    curves = F.learning_curves_data(records.trials)
    timeline = F.timeline_data(records.trials)
    two_objectives = study is not None and len(study.directions) == 2

    specs: list[tuple[str, str, str, Callable[[], go.Figure]]] = [
        (
            "comparison",
            "Teacher vs baseline vs distilled student",
            "Test accuracy, mean over seeds with ± one standard deviation; dots are single seeds. The "
            "baseline is the same student architecture trained without a teacher.",
            own(
                lambda: F.draw_comparison(bars) if len(bars) >= 2 else None,
                "No test-set results for the student and baseline yet (the final stage did not run).",
            ),
        ),
        (
            "gain_curve",
            "Where distillation pays",
            "The same comparison repeated for students of several sizes, smallest first; at every size both "
            "students train with the baseline's tuned recipe and the distilled one adds the winner's KD terms, "
            "so the teacher's signal is the only difference. Top: the gain of the "
            "distilled student over the same student trained alone, in percentage points, with its 95 % "
            "confidence interval over paired seeds (green: helps, grey: no detectable difference, red: "
            "hurts). Bottom: both students' mean test accuracy, and the teacher's as a dashed line.",
            own(lambda: F.draw_gain_curve(gain_curve) if gain_curve and gain_curve.points else None, gain_note),
        ),
        (
            "rounds",
            "Repeated rounds of distillation",
            "Round 1 is the distilled student above; each later round is the same configuration re-initialised "
            "and distilled from the teacher and the previous round's student together (their logits averaged), "
            "over the same seeds. Test accuracy, mean ± one standard deviation, dots are single seeds; a "
            "marker's colour is that round's verdict over the round before (green: helps, grey: no detectable "
            "difference, red: hurts); the outlined round, best by validation, is the exported student.",
            own(lambda: F.draw_rounds(rounds) if rounds and len(rounds.points) > 1 else None, _rounds_note(rounds)),
        ),
        (
            "final",
            "Final stage candidates",
            "The best search configurations re-trained for the full epoch budget over several seeds; the "
            "winner (highest validation mean) was finetuned and tested.",
            own(
                lambda: F.draw_final_candidates(candidates) if candidates else None,
                "The final stage did not run.",
            ),
        ),
        (
            "accuracy_params",
            "Accuracy vs student size",
            "Each dot is a trial (open = stopped early by ASHA, so fewer epochs); the dotted staircase is "
            "the Pareto front: no other trial is both smaller and more accurate.",
            own(
                lambda: F.draw_accuracy_vs_params(scatter) if scatter.points else None,
                f"No trial reported both an accuracy and its {F.SIZE_AXES[measure]}.",
            ),
        ),
    ]
    if two_objectives:
        specs.append(
            (
                "optuna_pareto",
                "Pareto front (Optuna)",
                f"Optuna's view of the two objectives: validation accuracy (max) and {F.SIZE_AXES[measure]} (min).",
                optuna_fig(lambda study: OF.pareto_front(study, F.SIZE_AXES[measure])),
            )
        )
    specs += [
        (
            "history",
            "Optimization history (Optuna)",
            "Validation accuracy of each trial in the order they finished"
            + ("" if two_objectives else ", and the best so far")
            + "; stopped trials report the accuracy they had reached.",
            optuna_fig(OF.optimization_history),
        ),
        (
            "curves",
            "Learning curves",
            "Validation accuracy per epoch for every trial: solid ran to the end, dashed with an x was "
            "stopped early by ASHA, grey dotted failed.",
            own(
                lambda: F.draw_learning_curves(curves) if curves else None,
                "No trial reported an epoch yet (or trials.json is missing).",
            ),
        ),
        (
            "importances",
            "Parameter importances (Optuna)",
            "How much of the variation in validation accuracy each parameter explains, over the "
            "parameters every trial has.",
            optuna_fig(OF.param_importances),
        ),
        (
            "kd_response",
            "Distillation knobs (Optuna)",
            "Validation accuracy against the temperature, the KL weight alpha and the distillation "
            "interval; colour is the trial number.",
            optuna_fig(OF.kd_response),
        ),
        (
            "parallel",
            "Parallel coordinates (Optuna)",
            "Each line is a completed trial through its parameter values, coloured by the objective.",
            optuna_fig(OF.parallel_coordinate),
        ),
        (
            "timeline",
            "Trial timeline",
            f"When each trial ran, coloured by how it ended; at most {timeline.max_concurrent} trials ran "
            "at the same time.",
            own(
                lambda: F.draw_timeline(timeline) if timeline.bars else None,
                "No trial recorded a start time.",
            ),
        ),
    ]
    return [_draw_section(key, title, caption, draw) for key, title, caption, draw in specs]


def _gain_curve_note(summary: Mapping[str, object], data: F.GainCurveData | None) -> str:
    """Why the gain curve is not drawn."""
    if not isinstance(summary.get("student"), Mapping):
        return "The final stage did not run, so there is no gain curve."
    if data is None:
        return "The gain curve was not measured in this run (skipped with --gain-curve 0, or the run predates it)."
    return "The gain curve has no student size with both a parameter count and a gain."


def _rounds_note(data: F.RoundsData | None) -> str:
    """Why the rounds are not drawn."""
    if data is None:
        return "No repeated rounds in this run (the final stage did not run, or the run predates --rounds)."
    if len(data.points) <= 1:
        if data.stop in (None, "cap"):
            return "Only round 1 ran (--rounds 1)."
        return f"Only round 1 ran ({data.stop}): with --rounds auto a round follows only one whose verdict is helps."
    return "The rounds have no test accuracies to draw."


def _draw_section(key: str, title: str, caption: str, draw: Callable[[], go.Figure]) -> Section:
    try:
        return Section(key, title, caption, figure=draw())
    except OF.FigureUnavailable as exc:
        return Section(key, title, caption, note=str(exc))
    except Exception as exc:  # one broken figure must not cost the reader the rest of the report
        return Section(key, title, caption, note=f"This figure could not be drawn ({type(exc).__name__}: {exc}).")


def render_html(records: RunRecords, sections: list[Section]) -> str:
    """The full page: header, results, what was searched, then the figures."""
    ov = T.overview(records)
    c = ov.counts
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>kdsearch report: {e(ov.run)}</title>",
        f"<style>{_CSS}</style>",
        # Installed before plotly.js so errors while loading it are caught too.
        f"<script>{_ERROR_HOOK}</script>",
    ]
    if any(s.figure is not None for s in sections):
        parts.append(f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>')
    parts += [
        "</head><body>",
        f'<pre id="{ERRORS_ID}" hidden></pre>',
        f"<h1>kdsearch report: {e(ov.run)}</h1>",
    ]

    counts = f"{c.completed} completed, {c.stopped_early} stopped early by the ASHA scheduler, {c.failed} failed" + (
        f", {c.other} unfinished" if c.other else ""
    )
    parts.append(
        "<p class='lead'>This run searched for a small student network to learn from the teacher "
        f"<b>{e(ov.teacher)}</b> on <b>{e(ov.dataset)}</b> by knowledge distillation, tuning the student's "
        f"architecture and the distillation loss together. Budget: {e(ov.budget)}, optimising "
        f"{e(ov.objective)}. Trials: {e(counts)}." + (f" The run took {e(ov.took)}." if ov.took else "") + "</p>"
    )
    status = T.status_sentence(records)
    if status:
        parts.append(f"<p class='warn'>{e(status)}</p>")
    check = T.teacher_check(records.summary)
    if check is not None and check.matches:
        parts.append(f"<p class='warn teacher-check'><b>Teacher check.</b> {e(check.message)}</p>")
    if records.problems:
        parts.append("<ul class='problems'>" + "".join(f"<li>{e(p)}</li>" for p in records.problems) + "</ul>")

    parts.append("<h2>What won, and by how much</h2>")
    rows = T.result_rows(records.summary)
    if rows:
        parts.append(
            _table(
                ["model", "architecture", "params", "test accuracy", "FLOPs", "latency"],
                [[r.model, r.arch, r.params, r.accuracy, r.flops, r.latency] for r in rows],
            )
        )
    front = P.pareto_rows(records.summary)
    if front:
        parts.append("<h3>Pareto front: accuracy against size</h3>")
        parts.append(_table(P.HEADER, [[r.trial, r.arch, r.val_accuracy, r.test_accuracy, r.params, r.flops,
                                        r.latency] for r in front]))
    if records.summary is not None and isinstance(records.summary.get("student"), Mapping):
        verdict = T.kd_result(records.summary).verdict
        cls = {T.HELPS: "good", T.HURTS: "warn"}.get(verdict or "", "neutral")
        parts.append(
            f"<p class='{cls} verdict'><b>Does distillation help?</b> {e(T.verdict_sentence(records.summary))}</p>"
        )
        search = SG.search_sentence(records.summary)
        if search:
            parts.append(f"<p class='verdict'><b>Does the search pay?</b> {e(search)}</p>")
    else:
        best = T.best_so_far(records.trials)
        if best is not None:
            parts.append(
                f"<p>Best validation accuracy so far: <b>{e(T.format_accuracy(best.best_val_accuracy))}</b> "
                f"({e(best.label)}, {e(best.state.lower())}, {e(F.format_params(best.params))} params).</p>"
            )
    finetune = T.finetune_sentence(records.summary)
    if finetune:
        parts.append(f"<p>{e(finetune)}</p>")
    chosen = T.best_config(records)
    if chosen is not None:
        parts.append(f"<h3>Best configuration</h3><p>{e(chosen.source[0].upper() + chosen.source[1:])}.</p>")
        parts.append(
            _table(
                ["parameter", "value", "meaning"],
                [
                    [k, T.format_value(chosen.config[k]), T.PARAM_MEANING.get(k, "")]
                    for k in T.ordered_params(chosen.config)
                ],
            )
        )

    facts = T.setup_facts(records.summary)
    if facts:
        parts.append("<h2>Teacher and setup</h2>")
        parts.append(_table(["", "what this run used"], [[f.label, f.text] for f in facts]))

    parts.append("<h2>What was searched</h2>")
    spec = records.spec
    how = [f"{k}: {spec[k]}" for k in ("sampler", "scheduler", "epochs", "seed") if spec.get(k) is not None]
    if how:
        parts.append(f"<p>{e('; '.join(how))}. The values below are those the trials actually tried.</p>")
    space = T.searched_space(records.trials)
    if space:
        parts.append(
            _table(
                ["parameter", "meaning", "values tried (trials)", "trials"],
                [[p.name, p.meaning, p.values, str(p.trials)] for p in space],
            )
        )
    else:
        parts.append("<p>No trial configurations were recorded.</p>")

    parts.append("<h2>Figures</h2>")
    for s in sections:
        parts.append(f"<section><h3>{e(s.title)}</h3><p class='caption'>{e(s.caption)}</p>")
        if s.figure is not None:
            div = pio.to_html(
                s.figure,
                include_plotlyjs=False,
                full_html=False,
                div_id=f"fig-{s.key}",
                config={"displaylogo": False, "responsive": True},
            )
            parts.append(f'<div class="{FIGURE_CLASS}" data-figure="{e(s.key)}">{div}</div>')
        else:
            parts.append(f"<p class='note'>Not shown: {e(s.note or '')}</p>")
        parts.append("</section>")

    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(
        f"<footer>Generated {generated} from {e(str(records.run_dir.resolve()))} by "
        "<code>python -m reports</code>. Accuracies are fractions of correctly classified examples; "
        "'pp' means percentage points.</footer></body></html>"
    )
    return "\n".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_ERROR_HOOK = f"""
(function () {{
  function record(msg) {{
    var el = document.getElementById("{ERRORS_ID}");
    var line = String(msg) + "\\n";
    if (el) {{ el.textContent += line; el.hidden = false; }}
    else {{ (window.__kdsearchErrors = window.__kdsearchErrors || []).push(line); }}
  }}
  window.addEventListener("error", function (ev) {{
    record("error: " + (ev.message || ev) + " at " + (ev.filename || "") + ":" + (ev.lineno || ""));
  }});
  window.addEventListener("unhandledrejection", function (ev) {{
    record("unhandled rejection: " + (ev.reason && ev.reason.message || ev.reason));
  }});
  document.addEventListener("DOMContentLoaded", function () {{
    var early = window.__kdsearchErrors || [];
    var el = document.getElementById("{ERRORS_ID}");
    if (el && early.length) {{ el.textContent = early.join("") + el.textContent; el.hidden = false; }}
  }});
}})();
"""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.lead { font-size: 1.05em; } .caption { color: #555; margin-top: -.4em; }
.warn { background: #fff4e5; border-left: 4px solid #f58518; padding: .5em .8em; }
.good { background: #eaf5ea; border-left: 4px solid #2ca02c; padding: .5em .8em; }
.neutral { background: #f2f2f2; border-left: 4px solid #7f7f7f; padding: .5em .8em; }
.note { color: #777; font-style: italic; } .problems { color: #8a5a00; }
#kdsearch-errors { background: #fde8e8; color: #900; padding: .5em; }
footer { margin-top: 3em; color: #777; font-size: .9em; }
"""
