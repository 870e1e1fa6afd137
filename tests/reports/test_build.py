"""build(): report.html and summary.md for full, pareto, interrupted and broken runs; the CLI."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import plotly.offline
import pytest

import runfolder._files
from reports import build
from reports.build import figure_sections
from reports.run import load_run
from tests.reports.conftest import RunFactory, edit_summary

# The package exports the function build(), which shadows the module of the same name.
B = importlib.import_module("reports.build")

REPO = Path(__file__).resolve().parents[2]
FIGURE_DIV = re.compile(r'<div class="kd-figure" data-figure="([a-z_]+)">')


def figure_keys(html: str) -> list[str]:
    return FIGURE_DIV.findall(html)


def test_full_run_report(built_run: Path) -> None:
    html = (built_run / "report.html").read_text()
    assert html.count("* plotly.js v") == 1  # plotly.js embedded exactly once
    page = html.replace(plotly.offline.get_plotlyjs(), "")  # what we wrote around the library
    assert "<script src=" not in page and "https://" not in page  # nothing to fetch: works offline
    assert figure_keys(html) == [
        "comparison",
        "gain_curve",
        "rounds",
        "final",
        "accuracy_params",
        "history",
        "curves",
        "importances",
        "kd_response",
        "parallel",
        "timeline",
    ]
    assert "Not shown:" not in html and "teacher-check" not in html
    for text in (
        "digits",
        "resnet-large",
        "7 completed, 3 stopped early",
        "2 failed",
        "<p class='good verdict'><b>Does distillation help?</b> Distillation helps: the distilled student is +0.98 "
        "points more accurate on test than the same student trained alone with its own tuned recipe (95 % CI "
        "+0.80 to +1.17 over 5 paired seeds; one test image = 0.28 points).</p>",
        "95.3% ± 0.3 pp (5 seeds)",
        "<h2>Teacher and setup</h2>",
        "<td>teacher</td><td>resnet-large, trained in this run, 2.35M params; accuracy: train 100.0%, validation "
        "98.9%, test 98.2%",
        "<td>teacher check</td><td>passed",
        "<td>size bound</td><td>students up to 235k params, 10% of the teacher&#x27;s 2.35M (requested: 10%)</td>",
        "<td>augmentation</td><td>dataset augmentation: crop (padding 1 px, no horizontal flip)",
        "<td>baseline recipe</td><td>lr 0.05, weight decay 0.0005, batch size 64, augmentation off; tuned by its "
        "own search of 10 trials (best validation accuracy 97.0%)</td>",
        "Where distillation pays",
        "Best configuration",
        "What was searched",
        "kdsearch-errors",
    ):
        assert text in html, text
    md = (built_run / "summary.md").read_text()
    assert "kdsearch run" in md and "report.html" in md


def test_pareto_run_adds_optunas_pareto_front(run_factory: RunFactory) -> None:
    html = build(run_factory(objective="pareto")).read_text()
    keys = figure_keys(html)
    assert "optuna_pareto" in keys and "gain_curve" in keys and len(keys) == 12
    assert "accuracy and student size" in html


@pytest.mark.parametrize("options", [{"summary": "missing"}, {"summary": "null_student"}])
def test_interrupted_run_still_builds(run_factory: RunFactory, options: dict[str, str]) -> None:
    run_dir = run_factory(**options)
    html = build(run_dir).read_text()
    keys = figure_keys(html)
    assert "comparison" not in keys and "final" not in keys and "gain_curve" not in keys
    assert {"history", "curves", "importances", "accuracy_params", "timeline"} <= set(keys)
    assert "no test-set results" in html.lower() and "Best validation accuracy so far" in html
    assert "Not shown: No test-set results for the student and baseline yet" in html
    assert "Not shown: The final stage did not run, so there is no gain curve." in html
    assert "Does distillation help" not in html
    assert (run_dir / "summary.md").is_file()


def test_run_with_only_a_journal(run_factory: RunFactory) -> None:
    run_dir = run_factory(with_trials=False, summary="missing")
    (run_dir / "spec.json").unlink()
    html = build(run_dir).read_text()
    assert "no trials.json" in html and {"history", "curves", "importances"} <= set(figure_keys(html))


def test_run_that_has_not_finished_a_trial(run_factory: RunFactory) -> None:
    run_dir = run_factory(with_journal=False, summary="missing")
    (run_dir / "trials.json").write_text("[]")
    html = build(run_dir).read_text()
    assert figure_keys(html) == [] and "* plotly.js v" not in html
    assert html.count("Not shown:") == len(figure_sections(load_run(run_dir)))


@pytest.mark.parametrize(
    "changes, css, start",
    [
        ({"kd_gain": -1.1, "kd_gain_ci95": [-1.8, -0.4], "kd_verdict": "hurts"}, "warn", "Distillation hurts"),
        (
            {"kd_gain": 0.3, "kd_gain_ci95": [-0.4, 1.0], "kd_verdict": "no detectable difference"},
            "neutral",
            "No detectable difference from distillation",
        ),
    ],
)
def test_report_is_honest_when_distillation_does_not_help(
    run_factory: RunFactory, changes: dict[str, object], css: str, start: str
) -> None:
    run_dir = run_factory()
    edit_summary(run_dir, **changes)
    html = build(run_dir).read_text()
    assert f"<p class='{css} verdict'><b>Does distillation help?</b> {start}" in html
    assert "Distillation helps" not in html


def test_old_run_builds_and_says_the_interval_is_unknown(run_factory: RunFactory) -> None:
    run_dir = run_factory(schema="old")
    html = build(run_dir).read_text()
    assert "<p class='neutral verdict'><b>Does distillation help?</b> Distillation gain: " in html
    assert "95 % confidence interval of the gain is unknown" in html
    assert "gain_curve" not in figure_keys(html) and "comparison" in figure_keys(html)
    assert "Not shown: The gain curve was not measured in this run" in html
    assert "<td>teacher</td>" in html and "<td>size bound</td>" not in html and "baseline recipe" not in html
    assert "Distillation gain:" in (run_dir / "summary.md").read_text()


def test_the_rounds_are_drawn_and_tabled(built_run: Path) -> None:
    html = (built_run / "report.html").read_text()
    assert "Repeated rounds of distillation" in html and 'data-figure="rounds"' in html
    markdown = (built_run / "summary.md").read_text()
    assert "**Repeated rounds** (each a fresh student distilled from the teacher and the round before; stopped: " \
           "no detectable difference at round 2; exported: round 1):" in markdown
    assert "| 2 | resnet-large + round 1 student | 95.4% ± 0.3 pp (5 seeds) | +0.10 (" in markdown


@pytest.mark.parametrize("rounds, stop, note", [
    (None, None, "No repeated rounds in this run"),
    ([{"round": 1, "test_accuracy_mean": 0.95}], "cap", "Only round 1 ran (--rounds 1)."),
    ([{"round": 1, "test_accuracy_mean": 0.95}], "kd_verdict no detectable difference, not helps",
     "Only round 1 ran (kd_verdict no detectable difference, not helps): with --rounds auto a round follows only"),
])
def test_a_run_without_extra_rounds_says_why(run_factory: RunFactory, rounds: object, stop: object,
                                             note: str) -> None:
    run_dir = run_factory()
    edit_summary(run_dir, rounds=rounds, rounds_stop=stop)
    html = build(run_dir).read_text()
    assert "rounds" not in figure_keys(html) and f"Not shown: {note}" in html
    assert "Repeated rounds" not in (run_dir / "summary.md").read_text()


def test_run_with_gain_curve_skipped(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    edit_summary(run_dir, gain_curve=None)
    html = build(run_dir).read_text()
    assert "gain_curve" not in figure_keys(html) and "Distillation helps" in html
    assert "Not shown: The gain curve was not measured in this run (skipped with --gain-curve 0" in html


def test_a_matching_teacher_check_is_shown_prominently(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    check = {"student": "cnn depth 1 width 16", "params": 26394, "epochs": 15, "student_val_accuracy": 0.99,
             "teacher_val_accuracy": 0.99, "matches": True,
             "message": "teacher check: a small student alone matches the teacher <99.0%>"}  # fmt: skip
    edit_summary(run_dir, teacher_check=check)
    html = build(run_dir).read_text()
    box = (
        "<p class='warn teacher-check'><b>Teacher check.</b> "
        "A small student alone matches the teacher &lt;99.0%&gt;</p>"
    )
    assert box in html and html.index(box) < html.index("<h2>What won")
    assert "<td>teacher check</td><td>the small student matches the teacher" in html


def test_user_text_is_escaped(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    spec = json.loads((run_dir / "spec.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["run"] = spec["run_name"] = "<script>alert(1)</script>"
    (run_dir / "spec.json").write_text(json.dumps(spec))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    html = build(run_dir).read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html


def test_a_broken_figure_becomes_a_note(run_factory: RunFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise ZeroDivisionError("synthetic")

    monkeypatch.setattr(B.F, "draw_timeline", boom)
    html = build(run_factory()).read_text()
    assert "timeline" not in figure_keys(html)
    assert "This figure could not be drawn (ZeroDivisionError: synthetic)" in html


def test_writes_are_atomic(run_factory: RunFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = run_factory()
    report = build(run_dir)
    before = report.read_text()
    assert oct(report.stat().st_mode & 0o777) == "0o644"

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(runfolder._files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        build(run_dir)
    monkeypatch.undo()
    assert report.read_text() == before
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    build(run_dir)  # and a rebuild over an existing report works
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "reports", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_rebuilds_a_report(run_factory: RunFactory) -> None:
    run_dir = run_factory(summary="missing")
    result = _cli(str(run_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run_dir / "report.html")
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.md").is_file()


def test_cli_bad_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _cli(str(tmp_path / "nope"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope: no such folder" in lines[0] and "results/<run>" in lines[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _cli(str(empty))
    assert result.returncode == 2 and "no trials.json, optuna.journal, summary.json" in result.stderr
