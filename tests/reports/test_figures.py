"""The report's own figures: pure data builders on hand-made records, drawers smoke-tested."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import pytest

from reports.figures import (
    FAILED_COLOR,
    VERDICT_COLORS,
    accuracy_vs_params_data,
    comparison_data,
    concurrency_steps,
    draw_accuracy_vs_params,
    draw_comparison,
    draw_final_candidates,
    draw_gain_curve,
    draw_learning_curves,
    draw_rounds,
    draw_timeline,
    family_color,
    final_candidates_data,
    format_params,
    gain_curve_data,
    learning_curves_data,
    max_concurrency,
    rounds_data,
    timeline_data,
)
from reports.run import Trial


def trial(i: int, state: str = "COMPLETE", **fields: Any) -> Trial:
    """A hand-made trials.json record."""
    record: dict[str, Any] = {"trial_id": f"t{i}", "number": i, "state": state, "config": {"family": "cnn"}}
    record.update(fields)
    return Trial.from_record(record)


def curve(*accs: float, t0: float = 0.0) -> list[dict[str, Any]]:
    return [{"epoch": e, "val_accuracy": a, "params": 100, "time": t0 + e} for e, a in enumerate(accs, 1)]


# --- Pareto front ------------------------------------------------------------------------------------


def test_accuracy_vs_params_data_uses_trials_with_both_values_and_marks_front_and_winner() -> None:
    trials = [
        trial(0, best_val_accuracy=0.9, params=1000),
        trial(1, "STOPPED", best_val_accuracy=0.8, params=500, config={"family": "resnet"}),
        trial(2, best_val_accuracy=0.85, params=1200),
        trial(3, "FAILED", best_val_accuracy=0.99, params=1),  # failed: left out whatever it reported
        trial(4, curve=curve(0.6, 0.75)),  # accuracy and size from its curve
    ]
    data = accuracy_vs_params_data(trials, winner="t0")
    assert [p.trial_id for p in data.points] == ["t0", "t1", "t2", "t4"]
    assert [p.trial_id for p in data.front] == ["t4", "t1", "t0"]
    assert {p.trial_id for p in data.points if p.on_front} == {"t0", "t1", "t4"}
    assert [p.trial_id for p in data.points if p.winner] == ["t0"]
    assert data.points[1].family == "resnet" and data.points[1].state == "STOPPED"
    assert data.points[3].accuracy == 0.75 and data.points[3].size == 100


def test_a_latency_pareto_search_puts_latency_on_the_size_axis() -> None:
    trials = [
        trial(0, best_val_accuracy=0.9, params=1000, latency_ms=0.4),
        trial(1, best_val_accuracy=0.8, params=500, latency_ms=0.6),  # smaller, but slower
        trial(2, best_val_accuracy=0.95, params=2000),  # no latency recorded: not on this plane
    ]
    data = accuracy_vs_params_data(trials, winner="t0", measure="latency_ms")
    assert [(p.trial_id, p.size) for p in data.points] == [("t0", 0.4), ("t1", 0.6)]
    assert [p.trial_id for p in data.front] == ["t0"]  # t1 is beaten on both axes once size is latency
    assert accuracy_vs_params_data(trials, measure="params").front[-1].trial_id == "t2"
    assert draw_accuracy_vs_params(data).layout.xaxis.title.text == "latency at batch 1 (ms)"


def test_draw_accuracy_vs_params_smoke() -> None:
    data = accuracy_vs_params_data(
        [trial(0, best_val_accuracy=0.9, params=10), trial(1, "STOPPED", best_val_accuracy=0.8, params=5)], "t0"
    )
    fig = draw_accuracy_vs_params(data)
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert "Pareto front" in names and "chosen config" in names
    (cnn,) = [t for t in fig.data if t.name == "cnn"]
    assert list(cnn.marker.symbol) == ["circle", "circle-open"]


# --- learning curves ---------------------------------------------------------------------------------


def test_learning_curves_mark_stopped_and_failed_trials() -> None:
    trials = [
        trial(0, curve=curve(0.5, 0.6, 0.7)),
        trial(1, "STOPPED", curve=curve(0.4, 0.45), config={"family": "resnet"}),
        trial(2, "FAILED", curve=curve(0.3)),
        trial(3, "FAILED"),  # never reported an epoch: no line
    ]
    series = {s.trial_id: s for s in learning_curves_data(trials)}
    assert set(series) == {"t0", "t1", "t2"}
    done, stopped, failed = series["t0"], series["t1"], series["t2"]
    assert done.dash == "solid" and done.stop_marker is None and done.color == family_color("cnn")
    assert done.epochs == [1, 2, 3] and done.accuracies == [0.5, 0.6, 0.7]
    assert stopped.dash == "dash" and stopped.stop_marker == (2, 0.45) and stopped.color == family_color("resnet")
    assert failed.color == FAILED_COLOR and failed.dash == "dot" and failed.stop_marker is None


def test_learning_curves_sort_epochs_and_skip_missing_accuracies() -> None:
    points = [{"epoch": 2, "val_accuracy": 0.6}, {"epoch": 1, "val_accuracy": 0.5}, {"epoch": 3, "val_accuracy": None}]
    (s,) = learning_curves_data([trial(0, curve=points)])
    assert s.epochs == [1, 2] and s.accuracies == [0.5, 0.6]


def test_draw_learning_curves_smoke_one_line_per_trial_plus_legend_and_stop_markers() -> None:
    trials = [
        trial(0, curve=curve(0.5, 0.6)),
        trial(1, "STOPPED", curve=curve(0.4)),
        trial(2, "FAILED", curve=curve(0.2)),
    ]
    fig = draw_learning_curves(learning_curves_data(trials))
    per_trial = [t for t in fig.data if t.showlegend is False]
    assert len(per_trial) == 3
    (stops,) = [t for t in fig.data if t.name and t.name.startswith("stopped early")]
    assert stops.marker.symbol == "x" and list(stops.x) == [1]
    assert {t.name for t in fig.data if t.showlegend is not False} >= {"cnn", "failed"}


# --- teacher / baseline / student --------------------------------------------------------------------


def _entry(mean: float, std: float | None, accs: list[float], params: int) -> dict[str, Any]:
    return {
        "arch": "cnn-d2",
        "params": params,
        "test_accuracy_mean": mean,
        "test_accuracy_std": std,
        "test_accuracies": accs,
        "seeds": list(range(len(accs))),
    }


def test_comparison_data_takes_values_and_error_bars_from_summary() -> None:
    summary = {
        "teacher": {"arch": "resnet-large", "params": 2_000_000, "test_accuracy": 0.98},
        "baseline": _entry(0.94, 0.006, [0.935, 0.947, 0.94], 50_000),
        "student": _entry(0.953, 0.004, [0.95, 0.958, 0.952], 50_000),
    }
    bars = comparison_data(summary)
    assert [b.role for b in bars] == ["teacher", "baseline", "student"]
    teacher, baseline, student = bars
    assert teacher.mean == 0.98 and teacher.std is None and teacher.params == 2_000_000
    assert baseline.mean == 0.94 and baseline.std == 0.006 and baseline.accuracies == [0.935, 0.947, 0.94]
    assert student.mean == 0.953 and student.std == 0.004 and student.params == 50_000


def test_the_textbook_arm_is_a_bar_with_the_students_size_and_its_own_accuracies() -> None:
    summary = {
        "baseline": _entry(0.94, 0.006, [0.935, 0.947, 0.94], 50_000),
        "textbook": {"test_accuracy_mean": 0.948, "test_accuracy_std": 0.002, "test_accuracies": [0.946, 0.95, 0.948],
                     "seeds": [0, 1, 2]},
        "student": {**_entry(0.953, 0.004, [0.95, 0.958, 0.952], 50_000), "arch": "cnn depth 1 width 8"},
    }
    bars = comparison_data(summary)
    assert [b.role for b in bars] == ["baseline", "textbook", "student"]
    textbook = bars[1]
    assert (textbook.mean, textbook.std, textbook.accuracies) == (0.948, 0.002, [0.946, 0.95, 0.948])
    assert (textbook.params, textbook.arch) == (50_000, "cnn depth 1 width 8")
    assert len(draw_comparison(bars).data) == 2  # the bars, and the seeds as dots


@pytest.mark.parametrize(
    "summary, roles",
    [
        (None, []),
        ({}, []),
        ({"teacher": {"arch": "t", "test_accuracy": 0.9}, "student": None, "baseline": None}, ["teacher"]),
        ({"teacher": {"arch": "t"}, "student": _entry(0.9, None, [0.9], 10)}, ["student"]),
    ],
)
def test_comparison_data_only_includes_what_the_summary_measured(summary: Any, roles: list[str]) -> None:
    assert [b.role for b in comparison_data(summary)] == roles


def test_draw_comparison_smoke_error_bars_are_std() -> None:
    summary = {
        "teacher": {"arch": "t", "params": 10, "test_accuracy": 0.98},
        "baseline": _entry(0.94, 0.006, [0.935, 0.947, 0.94], 5),
        "student": _entry(0.95, None, [0.95], 5),
    }
    fig = draw_comparison(comparison_data(summary))
    bar = fig.data[0]
    assert list(bar.y) == [0.98, 0.94, 0.95]
    assert list(bar.error_y.array) == [0.0, 0.006, 0.0]
    assert "5 params" in bar.text[1]
    (seeds,) = fig.data[1:]
    assert list(seeds.y) == [0.935, 0.947, 0.94]  # single-seed bars get no dots


def test_final_candidates_data_ranks_and_marks_winner() -> None:
    summary = {
        "final": {
            "candidates": [
                {
                    "trial_id": "a",
                    "config": {"alpha": 0.5},
                    "val_accuracy_mean": 0.90,
                    "val_accuracy_std": 0.01,
                    "seeds": [0, 1],
                },
                {"trial_id": "b", "config": {}, "val_accuracy_mean": 0.93, "val_accuracy_std": None, "seeds": [0, 1]},
                {"trial_id": "c", "val_accuracy_mean": None},
            ],
            "winner": "b",
        }
    }
    bars = final_candidates_data(summary)
    assert [(b.trial_id, b.winner, b.seeds) for b in bars] == [("b", True, 2), ("a", False, 2)]
    assert final_candidates_data({"final": None}) == [] and final_candidates_data(None) == []
    fig = draw_final_candidates(bars)
    assert list(fig.data[0].y) == [0.93, 0.90] and list(fig.data[0].error_y.array) == [0.0, 0.01]


# --- where distillation pays ------------------------------------------------------------------------


def gain_entry(params: Any, gain: Any, ci: Any = None, verdict: Any = None, **extra: Any) -> dict[str, Any]:
    """One hand-made ``gain_curve`` entry."""
    return {
        "arch": f"cnn {params}",
        "params": params,
        "gain": gain,
        "gain_ci95": ci,
        "verdict": verdict,
        "kd_test_mean": 0.95,
        "baseline_test_mean": 0.94,
        "seeds": [0, 1, 2],
        **extra,
    }


def test_gain_curve_data_sorts_by_size_and_keeps_ci_and_verdicts() -> None:
    summary = {
        "teacher": {"test_accuracy": 0.99},
        "gain_curve": [
            gain_entry(8000, -0.8, [-1.2, -0.4], "hurts", teacher_fraction=0.008),
            gain_entry(500, 1.2, [0.1, 2.3], "helps", teacher_fraction=0.0005, kd_test_mean=0.9),
            gain_entry(2000, 0.2, [-0.3, 0.7], "no detectable difference"),
        ],
    }
    data = gain_curve_data(summary)
    assert data is not None and data.teacher_accuracy == 0.99
    assert [p.params for p in data.points] == [500, 2000, 8000]
    small, mid, large = data.points
    assert (small.gain, small.ci_low, small.ci_high, small.verdict) == (1.2, 0.1, 2.3, "helps")
    assert small.err_plus == pytest.approx(1.1) and small.err_minus == pytest.approx(1.1)
    assert small.teacher_fraction == 0.0005 and small.kd_mean == 0.9 and small.baseline_mean == 0.94
    assert small.seeds == 3 and small.arch == "cnn 500"
    assert mid.verdict == "no detectable difference" and mid.teacher_fraction is None
    assert large.verdict == "hurts" and large.err_plus == pytest.approx(0.4) and large.err_minus == pytest.approx(0.4)


def test_gain_curve_data_reads_missing_verdicts_off_the_ci_and_skips_unplaceable_entries() -> None:
    summary = {
        "gain_curve": [
            gain_entry(100, 1.0, [0.5, 1.5]),  # no verdict: above 0, helps
            gain_entry(200, -1.0, [-0.5, -1.5], "bogus"),  # reversed CI, unknown verdict: hurts
            gain_entry(300, 0.1, None),  # no CI: unknown, no error bar
            gain_entry(None, 1.0, [0.0, 2.0]),  # no size: cannot be placed
            gain_entry(400, None, [0.0, 2.0]),  # no gain
            gain_entry(0, 1.0, [0.0, 2.0]),  # not on a log axis
            "junk",
        ]
    }
    data = gain_curve_data(summary)
    assert data is not None and data.teacher_accuracy is None
    assert [(p.params, p.verdict) for p in data.points] == [(100, "helps"), (200, "hurts"), (300, "unknown")]
    assert (data.points[1].ci_low, data.points[1].ci_high) == (-1.5, -0.5)
    assert data.points[2].err_plus == 0.0 and data.points[2].err_minus == 0.0


@pytest.mark.parametrize("summary", [None, {}, {"gain_curve": None}, {"gain_curve": {"not": "a list"}}])
def test_gain_curve_data_is_none_without_a_gain_curve(summary: Any) -> None:
    assert gain_curve_data(summary) is None


def test_draw_gain_curve_error_bars_log_axis_and_teacher_line() -> None:
    summary = {
        "teacher": {"test_accuracy": 0.99},
        "gain_curve": [gain_entry(500, 1.2, [0.1, 2.3], "helps"), gain_entry(8000, -0.8, [-1.0, -0.4], "hurts")],
    }
    fig = draw_gain_curve(gain_curve_data(summary))  # type: ignore[arg-type]
    assert isinstance(fig, go.Figure)
    gain, helps, hurts, kd, alone, teacher = fig.data
    assert (helps.name, helps.marker.color, hurts.name) == ("helps", VERDICT_COLORS["helps"], "hurts")  # legend
    assert list(gain.x) == [500, 8000] and list(gain.y) == [1.2, -0.8]
    assert list(gain.error_y.array) == pytest.approx([1.1, 0.4])
    assert list(gain.error_y.arrayminus) == pytest.approx([1.1, 0.2])
    assert list(gain.marker.color) == [VERDICT_COLORS["helps"], VERDICT_COLORS["hurts"]]
    assert (kd.name, alone.name, teacher.name) == ("distilled student", "student alone (baseline)", "teacher")
    assert list(teacher.y) == [0.99, 0.99] and list(teacher.x) == [500, 8000]
    assert gain.yaxis == "y" and kd.yaxis == "y2" and teacher.yaxis == "y2"
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert "Where distillation pays" in fig.layout.title.text
    assert any(shape.y0 == 0 and shape.y1 == 0 for shape in fig.layout.shapes)  # the zero line
    no_teacher = draw_gain_curve(gain_curve_data({"gain_curve": summary["gain_curve"]}))  # type: ignore[arg-type]
    assert [t.name for t in no_teacher.data][-2:] == ["distilled student", "student alone (baseline)"]


# --- repeated rounds ---------------------------------------------------------------------------------


def round_entry(number: Any, mean: Any, gain: Any = None, ci: Any = None, verdict: Any = None) -> dict[str, Any]:
    """One hand-made ``rounds`` entry (round 1 has no gain)."""
    teachers = ["cnn-large"] if number == 1 else ["cnn-large", f"round {number} student"]
    seeds = [mean - 0.004, mean + 0.004] if mean is not None else []
    entry = {"round": number, "teachers": teachers, "test_accuracy_mean": mean, "test_accuracy_std": 0.004,
             "test_accuracies": seeds, "seeds": [0, 1]}
    if number != 1:
        entry.update(gain=gain, gain_ci95=ci, verdict=verdict)
    return entry


def test_rounds_data_orders_rounds_and_keeps_gains_verdicts_best_and_stop() -> None:
    summary = {
        "rounds": [round_entry(3, 0.955, -0.2, [-0.9, 0.5], "no detectable difference"), round_entry(1, 0.94),
                   round_entry(2, 0.957, 1.7, [0.8, 2.6], "helps")],
        "rounds_best": 2,
        "rounds_stop": "no detectable difference at round 3",
    }
    data = rounds_data(summary)
    assert data is not None and data.best == 2 and data.stop == "no detectable difference at round 3"
    assert [p.round for p in data.points] == [1, 2, 3]
    first, second, third = data.points
    assert (first.gain, first.verdict, first.teachers, first.mean) == (None, None, "cnn-large", 0.94)
    assert first.accuracies == pytest.approx([0.936, 0.944]) and first.std == 0.004
    assert (second.gain, second.ci_low, second.ci_high, second.verdict) == (1.7, 0.8, 2.6, "helps")
    assert second.teachers == "cnn-large + round 2 student"
    assert third.verdict == "no detectable difference"


def test_rounds_data_reads_missing_verdicts_off_the_ci_and_skips_unplaceable_entries() -> None:
    summary = {"rounds": [round_entry(1, 0.9), round_entry(2, 0.92, 2.0, [0.5, 3.5]), round_entry(3, 0.91, -1.0),
                          round_entry(None, 0.9), round_entry(4, None), "junk"]}
    data = rounds_data(summary)
    assert data is not None and data.best is None and data.stop is None
    assert [(p.round, p.verdict) for p in data.points] == [(1, None), (2, "helps"), (3, "unknown")]
    assert data.points[2].ci_low is None


@pytest.mark.parametrize("summary", [None, {}, {"rounds": None}, {"rounds": {"not": "a list"}}])
def test_rounds_data_is_none_without_rounds(summary: Any) -> None:
    assert rounds_data(summary) is None


def test_draw_rounds_error_bars_verdict_colours_seeds_and_the_exported_round() -> None:
    summary = {"rounds": [round_entry(1, 0.94), round_entry(2, 0.957, 1.7, [0.8, 2.6], "helps"),
                          round_entry(3, 0.955, -0.2, [-0.9, 0.5], "no detectable difference")],
               "rounds_best": 2, "rounds_stop": "no detectable difference at round 3"}
    fig = draw_rounds(rounds_data(summary))  # type: ignore[arg-type]
    assert isinstance(fig, go.Figure)
    means, seeds = fig.data
    assert list(means.x) == ["round 1", "round 2", "round 3"] and list(means.y) == [0.94, 0.957, 0.955]
    assert list(means.error_y.array) == [0.004] * 3
    assert list(means.marker.color)[1:] == [VERDICT_COLORS["helps"], VERDICT_COLORS["no detectable difference"]]
    assert list(means.marker.line.width) == [0, 3, 0]  # the exported round is outlined
    assert len(seeds.x) == 6 and seeds.name == "one seed"
    assert "exported to best/" in means.text[1] and "gain over round 1: +1.70 points" in means.text[1]
    assert fig.layout.title.text.endswith("(stopped: no detectable difference at round 3)")
    assert fig.layout.yaxis.tickformat == ".1%"


# --- timeline and concurrency ------------------------------------------------------------------------


def test_concurrency_counts_overlaps_with_half_open_intervals() -> None:
    intervals = [(0, 10), (2, 5), (5, 8), (10, 12), (3, 4)]
    # 0-2:1, 2-3:2, 3-4:3, 4-5:2, 5-8:2 (one ends, one starts at 5), 8-10:1, 10-12:1 (hand-over at 10)
    assert concurrency_steps(intervals) == [(0, 1), (2, 2), (3, 3), (4, 2), (5, 2), (8, 1), (10, 1), (12, 0)]
    assert max_concurrency(intervals) == 3


def test_concurrency_edge_cases() -> None:
    assert concurrency_steps([]) == [] and max_concurrency([]) == 0
    assert max_concurrency([(0, 1), (1, 2), (2, 3)]) == 1  # back to back on one slot
    assert max_concurrency([(0, 5)] * 4) == 4
    assert max_concurrency([(0, 0), (0, 0)]) == 0  # zero-length intervals never overlap
    assert max_concurrency([(5, 1)]) == 0  # end before start: ignored


def test_timeline_data_orders_by_start_relative_to_first_and_closes_open_trials() -> None:
    trials = [
        trial(0, start_time=110.0, end_time=120.0),
        trial(1, "STOPPED", start_time=100.0, end_time=105.0),
        trial(2, "RUNNING", start_time=104.0, curve=curve(0.5, 0.6, t0=104.0)),  # interrupted: last report 106
        trial(3, "FAILED", start_time=None),  # never started: not drawn
    ]
    data = timeline_data(trials)
    assert data.t0 == 100.0
    assert [(b.trial_id, b.start, b.end, b.open_ended) for b in data.bars] == [
        ("t1", 0.0, 5.0, False),
        ("t2", 4.0, 6.0, True),
        ("t0", 10.0, 20.0, False),
    ]
    assert data.max_concurrent == 2
    assert timeline_data([trial(0)]).bars == []


def test_draw_timeline_smoke() -> None:
    trials = [trial(0, start_time=0.0, end_time=700.0), trial(1, "FAILED", start_time=1.0, end_time=2.0)]
    fig = draw_timeline(timeline_data(trials))
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert {t.name for t in bars} == {"complete", "failed"}
    assert "at most 2 trials at once" in fig.layout.title.text
    assert "(min)" in fig.layout.xaxis2.title.text  # long runs switch to minutes
    assert list(fig.layout.yaxis.categoryarray) == ["#0 t0", "#1 t1"]


def test_the_timeline_says_where_each_trial_ran() -> None:
    trials = [trial(0, start_time=0.0, end_time=5.0, node_ip="10.0.0.1", node_id="aaaaaaaabbbb"),
              trial(1, start_time=1.0, end_time=4.0, node_ip="10.0.0.2", node_id="ccccccccdddd"),
              trial(2, start_time=2.0, end_time=3.0)]  # a run made before nodes were recorded
    data = timeline_data(trials)
    assert [b.node for b in data.bars] == ["10.0.0.1 (aaaaaaaa)", "10.0.0.2 (cccccccc)", None]
    fig = draw_timeline(data)
    assert "on 2 Ray nodes" in fig.layout.title.text
    bar = next(t for t in fig.data if isinstance(t, go.Bar))
    assert [row[1] for row in bar.customdata] == [
        "<br>on node 10.0.0.1 (aaaaaaaa)", "<br>on node 10.0.0.2 (cccccccc)", ""]
    assert "on 2 Ray nodes" not in draw_timeline(timeline_data(trials[2:])).layout.title.text


def test_format_params() -> None:
    assert [format_params(n) for n in (None, 950, 12_345, 1_234_567)] == ["n/a", "950", "12.3k", "1.23M"]
