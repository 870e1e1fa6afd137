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

from reports import build, figure_sections, load_run
from tests.reports.conftest import RunFactory

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
        "final",
        "accuracy_params",
        "history",
        "curves",
        "importances",
        "kd_response",
        "parallel",
        "timeline",
    ]
    assert "Not shown:" not in html
    for text in (
        "digits",
        "resnet-large",
        "7 completed, 3 stopped early",
        "2 failed",
        "Distillation helped",
        "95.3% ± 0.4 pp (3 seeds)",
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
    assert "optuna_pareto" in keys and len(keys) == 10
    assert "accuracy and student size" in html


@pytest.mark.parametrize("options", [{"summary": "missing"}, {"summary": "null_student"}])
def test_interrupted_run_still_builds(run_factory: RunFactory, options: dict[str, str]) -> None:
    run_dir = run_factory(**options)
    html = build(run_dir).read_text()
    keys = figure_keys(html)
    assert "comparison" not in keys and "final" not in keys
    assert {"history", "curves", "importances", "accuracy_params", "timeline"} <= set(keys)
    assert "no test-set results" in html.lower() and "Best validation accuracy so far" in html
    assert "Not shown: No test-set results for the student and baseline yet" in html
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


def test_report_is_honest_when_distillation_hurt(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["kd_gain"], summary["kd_gain_std"] = -1.1, 0.4
    (run_dir / "summary.json").write_text(json.dumps(summary))
    html = build(run_dir).read_text()
    assert "<p class='warn'><b>Knowledge distillation gain.</b> Distillation did not help" in html


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

    monkeypatch.setattr(B.os, "replace", failing_replace)
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
