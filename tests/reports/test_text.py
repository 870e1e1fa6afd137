"""The report's words: the KD-gain verdict, counts, the best config and summary.md."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reports.run import Trial, load_run
from reports.text import (
    best_config,
    format_accuracy,
    format_duration,
    kd_gain,
    kd_gain_sentence,
    ordered_params,
    searched_space,
    summary_markdown,
    trial_counts,
)
from tests.reports.conftest import RunFactory


def trial(i: int, state: str = "COMPLETE", **fields: Any) -> Trial:
    return Trial.from_record({"trial_id": f"t{i}", "number": i, "state": state, **fields})


@pytest.mark.parametrize(
    "gain, std, expected",
    [
        (1.2, 0.3, "Distillation helped: the distilled student is +1.20 ± 0.30 percentage points more accurate"),
        (0.2, 0.5, "Distillation helped only within the seed-to-seed spread"),
        (-0.8, 0.3, "Distillation did not help: the distilled student is 0.80 ± 0.30 percentage points less"),
        (-0.2, 0.5, "(within the seed-to-seed spread)"),
        (0.0, None, "Distillation made no difference"),
        (1.0, None, "Distillation helped: the distilled student is +1.00 percentage points"),
        (None, None, "unknown"),
    ],
)
def test_kd_gain_sentence_is_honest_about_the_sign(gain: float | None, std: float | None, expected: str) -> None:
    sentence = kd_gain_sentence(gain, std)
    assert expected in sentence
    if gain is not None and gain < 0:
        assert "helped" not in sentence


def test_kd_gain_prefers_summary_and_falls_back_to_means() -> None:
    assert kd_gain({"kd_gain": 1.5, "kd_gain_std": 0.2}) == (1.5, 0.2)
    summary = {
        "kd_gain": None,
        "student": {"test_accuracy_mean": 0.95, "test_accuracy_std": 0.003},
        "baseline": {"test_accuracy_mean": 0.96, "test_accuracy_std": 0.004},
    }
    gain, std = kd_gain(summary)
    assert gain == pytest.approx(-1.0) and std == pytest.approx(0.5)
    assert kd_gain(None) == (None, None) and kd_gain({"student": None, "baseline": None}) == (None, None)


def test_trial_counts_from_summary_or_trials() -> None:
    trials = [trial(0), trial(1, "STOPPED"), trial(2, "FAILED"), trial(3, "RUNNING"), trial(4)]
    counts = trial_counts(trials)
    assert (counts.completed, counts.stopped_early, counts.failed, counts.other, counts.total) == (2, 1, 1, 1, 5)
    from_summary = trial_counts(trials, {"trials": {"completed": 7, "stopped_early": 3, "failed": 2}})
    assert (from_summary.completed, from_summary.stopped_early, from_summary.failed) == (7, 3, 2)


def test_searched_space_shows_ranges_for_continuous_and_tallies_for_choices() -> None:
    trials = [
        trial(0, config={"family": "cnn", "lr": 0.01, "distill_interval": 2, "beta": 0.5}),
        trial(1, config={"family": "resnet", "lr": 0.001, "distill_interval": 2}),
        trial(2, config={"family": "cnn", "lr": 0.1, "distill_interval": 8, "zeta": True}),
    ]
    rows = {r.name: r for r in searched_space(trials)}
    assert [r.name for r in searched_space(trials)] == ["family", "beta", "lr", "distill_interval", "zeta"]
    assert rows["family"].values == "cnn (2), resnet (1)" and rows["family"].trials == 3
    assert rows["lr"].values == "0.001 to 0.1"
    assert rows["distill_interval"].values == "2 (2), 8 (1)"
    assert rows["beta"].trials == 1 and rows["beta"].meaning


def test_ordered_params_known_first_then_alphabetical() -> None:
    assert ordered_params({"zz": 1, "lr": 1, "family": 1, "aa": 1}) == ["family", "lr", "aa", "zz"]


def test_formatting_helpers() -> None:
    assert format_accuracy(None) == "n/a"
    assert format_accuracy(0.9345) == "93.5%"
    assert format_accuracy(0.9345, 0.004, 3) == "93.5% ± 0.4 pp (3 seeds)"
    assert [format_duration(s) for s in (None, 45, 750, 4 * 3600)] == ["n/a", "45 s", "12.5 min", "4.0 h"]


def test_best_config_from_summary_or_best_complete_trial(run_factory: RunFactory) -> None:
    full = load_run(run_factory())
    chosen = best_config(full)
    assert chosen is not None and chosen.trial_id == "t_0006" and "final stage" in chosen.source
    interrupted = load_run(run_factory(summary="missing"))
    chosen = best_config(interrupted)
    assert chosen is not None and chosen.trial_id == "t_0006" and "not re-trained" in chosen.source
    assert chosen.config == next(t.config for t in interrupted.trials if t.trial_id == "t_0006")


def test_summary_markdown_full_run(run_factory: RunFactory) -> None:
    md = summary_markdown(load_run(run_factory(name="r1")))
    assert md.startswith("# kdsearch run r1")
    assert "7 completed, 3 stopped early by ASHA, 2 failed" in md
    assert "| teacher | resnet-large | 2.35M | 98.2% |" in md
    assert "| distilled student (finetuned) |" in md and "95.3% ± 0.4 pp (3 seeds)" in md
    assert "Distillation helped" in md and "+1.22 ± 0.72" in md
    assert "report.html" in md


def test_summary_markdown_says_when_distillation_hurt(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["kd_gain"], summary["kd_gain_std"] = -0.9, 0.3
    (run_dir / "summary.json").write_text(json.dumps(summary))
    md = summary_markdown(load_run(run_dir))
    assert "Distillation did not help" in md and "0.90 ± 0.30 percentage points less accurate" in md


def test_summary_markdown_interrupted_run(run_factory: RunFactory) -> None:
    md = summary_markdown(load_run(run_factory(summary="missing")))
    assert "no summary.json" in md and "Best validation accuracy so far: 97.0%" in md
    assert "| teacher" not in md and "KD gain" not in md
