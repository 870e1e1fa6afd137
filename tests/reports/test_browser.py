"""report.html in a real headless Chromium: every figure renders, offline, without script errors.

Chromium runs the page with its network off (file:// only) and dumps the DOM after the scripts ran;
a figure counts as rendered when plotly drew its ``svg.main-svg`` inside the figure's div. Script
errors land in ``<pre id="kdsearch-errors">`` through the hook the report installs first thing.

Skipped only when /usr/bin/chromium is missing outside CI; under CI (``CI`` set) a missing browser
fails (``.ci/install-tools`` installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports import build
from reports.build import figure_sections
from reports.run import load_run
from tests.reports.conftest import RunFactory

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing under CI: run .ci/install-tools first")
        pytest.skip(f"{CHROMIUM} is missing (install it with .ci/install-tools)")
    return CHROMIUM


def render(chromium: Path, page: Path, tmp_path: Path) -> str:
    """The DOM of ``page`` after its scripts ran, as Chromium serialises it."""
    cmd = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,900",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-2000:]
    return result.stdout


@dataclass
class FigureDiv:
    key: str
    main_svgs: int = 0
    plotly_divs: int = 0
    rendered_divs: int = 0
    error_bars: int = 0


class DomScan(HTMLParser):
    """Figure divs with what plotly drew in them, and the text of the error element."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[FigureDiv] = []
        self.errors = ""
        self._div_depth = 0
        self._figure_depth: int | None = None
        self._in_errors = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "div":
            self._div_depth += 1
            if "kd-figure" in classes:
                self.figures.append(FigureDiv(key=a.get("data-figure") or "?"))
                self._figure_depth = self._div_depth
        if self._figure_depth is not None:
            fig = self.figures[-1]
            fig.main_svgs += "main-svg" in classes
            fig.plotly_divs += "plotly-graph-div" in classes
            fig.rendered_divs += "js-plotly-plot" in classes  # plotly adds it once the plot is drawn
            fig.error_bars += "yerror" in classes  # one path per drawn vertical error bar
        if a.get("id") == "kdsearch-errors":
            self._in_errors = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            if self._figure_depth == self._div_depth:
                self._figure_depth = None
            self._div_depth -= 1
        if tag == "pre":
            self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._in_errors:
            self.errors += data


def scan(dom: str) -> DomScan:
    parser = DomScan()
    parser.feed(dom)
    parser.close()
    return parser


def assert_all_rendered(dom: str, expected: list[str]) -> None:
    result = scan(dom)
    assert result.errors.strip() == "", f"script errors in the page: {result.errors}"
    assert [f.key for f in result.figures] == expected
    for fig in result.figures:
        assert fig.plotly_divs == 1, fig
        assert fig.rendered_divs == 1 and fig.main_svgs >= 1, f"figure {fig.key} did not render: {fig}"
    assert sum(f.rendered_divs for f in result.figures) == len(result.figures)


def test_full_pareto_report_renders_every_figure(chromium: Path, run_factory: RunFactory, tmp_path: Path) -> None:
    run_dir = run_factory(objective="pareto")
    report = build(run_dir)
    expected = [s.key for s in figure_sections(load_run(run_dir)) if s.figure is not None]
    assert len(expected) == 12 and "gain_curve" in expected and "rounds" in expected
    assert_all_rendered(render(chromium, report, tmp_path), expected)


def test_gain_curve_renders_with_its_error_bars(chromium: Path, run_factory: RunFactory, tmp_path: Path) -> None:
    run_dir = run_factory()
    report = build(run_dir)
    expected = [s.key for s in figure_sections(load_run(run_dir)) if s.figure is not None]
    dom = render(chromium, report, tmp_path)
    assert_all_rendered(dom, expected)
    (gain,) = [f for f in scan(dom).figures if f.key == "gain_curve"]
    sizes = len(json.loads((run_dir / "summary.json").read_text())["gain_curve"])
    assert gain.error_bars == sizes  # one 95 % CI bar per student size
    assert gain.main_svgs >= 1


def test_old_run_report_renders_without_a_gain_curve(chromium: Path, run_factory: RunFactory, tmp_path: Path) -> None:
    run_dir = run_factory(schema="old")
    report = build(run_dir)
    expected = [s.key for s in figure_sections(load_run(run_dir)) if s.figure is not None]
    assert "gain_curve" not in expected and "comparison" in expected
    assert_all_rendered(render(chromium, report, tmp_path), expected)


def test_interrupted_report_renders(chromium: Path, run_factory: RunFactory, tmp_path: Path) -> None:
    run_dir = run_factory(summary="missing")
    report = build(run_dir)
    expected = [s.key for s in figure_sections(load_run(run_dir)) if s.figure is not None]
    assert expected and "comparison" not in expected
    assert_all_rendered(render(chromium, report, tmp_path), expected)


def test_the_error_hook_catches_script_errors(chromium: Path, run_factory: RunFactory, tmp_path: Path) -> None:
    # Guard the guard: a page whose script throws must show up as errors, else the checks above prove nothing.
    run_dir = run_factory(with_journal=False, summary="missing")
    (run_dir / "trials.json").write_text("[]")
    html = build(run_dir).read_text()
    broken = run_dir / "broken.html"
    broken.write_text(html.replace("</body>", "<script>undefinedFunctionCall();</script></body>"))
    assert "undefinedFunctionCall" in scan(render(chromium, broken, tmp_path)).errors
