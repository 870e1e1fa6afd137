"""The report's words: the KD verdict, the setup facts, counts, the best config and summary.md."""

from __future__ import annotations

from typing import Any

import pytest

from reports.run import Trial, load_run
from reports.text import (
    PARAM_MEANING,
    best_config,
    format_accuracy,
    format_duration,
    kd_result,
    ordered_params,
    searched_space,
    setup_facts,
    size_bound_text,
    summary_markdown,
    teacher_check,
    trial_counts,
    verdict_sentence,
)
from spaces import PARAMETERS
from tests.reports.conftest import DROP, RunFactory, edit_summary


def trial(i: int, state: str = "COMPLETE", **fields: Any) -> Trial:
    return Trial.from_record({"trial_id": f"t{i}", "number": i, "state": state, **fields})


RECIPE = {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 64, "augment": False}


def new_summary(gain: float, ci: list[float], verdict: str | None, **extra: Any) -> dict[str, Any]:
    """A hand-made summary in the current schema: paired 5-seed gain with its 95 % interval."""
    summary: dict[str, Any] = {
        "student": {"test_accuracy_mean": 0.95, "seeds": [0, 1, 2, 3, 4]},
        "baseline": {"test_accuracy_mean": 0.94, "recipe": RECIPE, "search": {"trials": 10, "best_val_accuracy": 0.97}},
        "kd_gain": gain,
        "kd_gain_ci95": ci,
        "kd_verdict": verdict,
        "kd_gain_per_seed": [1.1, 0.3, 0.9, 1.2, 0.65],
        "test_resolution_points": 0.278,
    }
    return {**summary, **extra}


def test_verdict_sentence_helps_says_gain_interval_seeds_and_resolution() -> None:
    assert verdict_sentence(new_summary(0.83, [0.12, 1.54], "helps")) == (
        "Distillation helps: the distilled student is +0.83 points more accurate on test than the same student "
        "trained alone with its own tuned recipe (95 % CI +0.12 to +1.54 over 5 paired seeds; one test image = "
        "0.28 points)."
    )


@pytest.mark.parametrize(
    "gain, ci, expected",
    [
        (0.2, [-0.4, 0.8], "the distilled student is +0.20 points more accurate on test"),
        (-0.3, [-0.9, 0.3], "the distilled student is 0.30 points less accurate on test"),
        (0.0, [-0.5, 0.5], "the distilled student is +0.00 points more accurate on test"),
    ],
)
def test_verdict_sentence_no_detectable_difference_says_the_interval_includes_zero(
    gain: float, ci: list[float], expected: str
) -> None:
    sentence = verdict_sentence(new_summary(gain, ci, "no detectable difference"))
    assert sentence.startswith("No detectable difference from distillation: ")
    assert expected in sentence
    assert f"the 95 % CI {ci[0]:+.2f} to {ci[1]:+.2f} over 5 paired seeds includes 0" in sentence
    assert "cannot tell distillation apart from training the student alone" in sentence
    assert "helps" not in sentence and "-0.00" not in sentence


def test_verdict_sentence_hurts_says_it_is_worse() -> None:
    sentence = verdict_sentence(new_summary(-0.83, [-1.54, -0.12], "hurts"))
    assert sentence == (
        "Distillation hurts: the distilled student is 0.83 points less accurate on test than the same student "
        "trained alone with its own tuned recipe (95 % CI -1.54 to -0.12 over 5 paired seeds; one test image = "
        "0.28 points); training it alone is better."
    )


@pytest.mark.parametrize(
    "ci, verdict",
    [([0.1, 2.0], "helps"), ([-2.0, -0.1], "hurts"), ([-0.5, 0.5], "no detectable difference"), ([2.0, 0.1], "helps")],
)
def test_missing_or_unknown_verdict_is_read_off_the_interval(ci: list[float], verdict: str) -> None:
    assert kd_result(new_summary(1.0, ci, None)).verdict == verdict
    assert kd_result(new_summary(1.0, ci, "maybe")).verdict == verdict
    assert kd_result(new_summary(1.0, ci, None)).ci95 == (min(ci), max(ci))


def test_old_run_without_an_interval_gives_the_gain_and_says_the_interval_is_unknown() -> None:
    old = {
        "student": {"test_accuracy_mean": 0.95, "seeds": [0, 1, 2]},
        "baseline": {"test_accuracy_mean": 0.94},
        "dataset": {"test": 270},
        "kd_gain": 1.22,
        "kd_gain_std": 0.72,
    }
    result = kd_result(old)
    assert (result.gain, result.ci95, result.verdict, result.seeds) == (1.22, None, None, 3)
    assert result.resolution == pytest.approx(100 / 270) and not result.own_recipe
    sentence = verdict_sentence(old)
    assert sentence.startswith("Distillation gain: the distilled student is +1.22 points more accurate on test")
    assert "trained without a teacher over 3 seeds" in sentence
    assert "95 % confidence interval of the gain is unknown" in sentence and "one test image = 0.37 points" in sentence
    assert "helps" not in sentence and "hurts" not in sentence


@pytest.mark.parametrize(
    "summary",
    [
        None,
        {},
        {"student": None, "baseline": None, "kd_gain": None, "kd_gain_ci95": None, "kd_verdict": None},
        {"student": None, "baseline": None, "kd_gain": None, "kd_gain_std": None},
    ],
)
def test_verdict_sentence_when_the_final_stage_did_not_run(summary: Any) -> None:
    result = kd_result(summary)
    assert result.gain is None and result.verdict is None
    sentence = verdict_sentence(summary)
    assert (
        sentence.startswith("The gain from distillation is unknown: the final stage did not")
        and "helps" not in sentence
    )


def test_kd_result_never_recomputes_the_gain_and_ignores_junk_intervals() -> None:
    summary = {
        "kd_gain": None,
        "kd_gain_ci95": ["nan", 1.0],
        "student": {"test_accuracy_mean": 0.95},
        "baseline": {"test_accuracy_mean": 0.96},
    }
    result = kd_result(summary)
    # The gain is the final stage's paired statistic: a summary without it has no gain to show.
    assert result.gain is None and result.ci95 is None and result.verdict is None
    assert kd_result({"kd_gain": 1.0, "kd_gain_ci95": [1.0]}).ci95 is None


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


def test_parameter_order_and_meanings_are_the_parameter_tables() -> None:
    assert ordered_params({"augment": 1, "zz": 1, "alpha": 1, "depth": 1}) == ["depth", "alpha", "augment", "zz"]
    assert PARAM_MEANING == {name: parameter.meaning for name, parameter in PARAMETERS.items()}
    rows = searched_space([trial(0, config={"augment": True, "temperature": 4.0})])
    assert [(row.name, row.meaning) for row in rows] == [("temperature", PARAMETERS["temperature"].meaning),
                                                         ("augment", PARAMETERS["augment"].meaning)]


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
    assert "| distilled student (finetuned) |" in md and "95.3% ± 0.3 pp (5 seeds)" in md
    assert "| baseline: same student alone, own tuned recipe |" in md
    assert (
        "**Does distillation help?** Distillation helps: the distilled student is +0.98 points more accurate on "
        "test than the same student trained alone with its own tuned recipe (95 % CI +0.80 to +1.17 over 5 "
        "paired seeds; one test image = 0.28 points)."
    ) in md
    assert "| cnn depth 1 width 4 | 2.2k | 0.094% | 93.2% | 91.3% | +1.82 (+1.43 to +2.21) | helps |" in md
    assert "| cnn depth 1 width 16 | 30.9k | 1.32% | 94.3% | 94.3% | -0.08 (-0.47 to +0.31) | no detectable" in md
    assert "| hurts |" in md
    assert "- **Teacher:** resnet-large, trained in this run, 2.35M params; accuracy: train 100.0%, validation " in md
    assert "- **Teacher check:** passed" in md and "> **Teacher check:**" not in md
    assert "- **Size bound:** students up to 235k params, 10% of the teacher's 2.35M (requested: 10%)" in md
    assert "- **Augmentation:** dataset augmentation: crop (padding 1 px, no horizontal flip)" in md
    assert "- **Baseline recipe:** lr 0.05, weight decay 0.0005, batch size 64, augmentation off; tuned by its " in md
    assert "own search of 10 trials (best validation accuracy 97.0%)" in md
    assert "report.html" in md


def test_summary_markdown_says_when_distillation_hurt(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    edit_summary(run_dir, kd_gain=-0.9, kd_gain_ci95=[-1.5, -0.3], kd_verdict="hurts")
    md = summary_markdown(load_run(run_dir))
    assert "**Does distillation help?** Distillation hurts: the distilled student is 0.90 points less accurate" in md
    assert "Distillation helps" not in md


def test_summary_markdown_old_run(run_factory: RunFactory) -> None:
    md = summary_markdown(load_run(run_factory(schema="old")))
    assert "Distillation gain: the distilled student is +1.22 points more accurate" in md
    assert "95 % confidence interval of the gain is unknown" in md
    assert "Where distillation pays" not in md and "Teacher check" not in md and "Baseline recipe" not in md
    assert "- **Teacher:** resnet-large, 2.35M params; accuracy: test 98.2%" in md


def test_summary_markdown_final_stage_without_gain_curve(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    edit_summary(run_dir, gain_curve=None)
    md = summary_markdown(load_run(run_dir))
    assert "Distillation helps" in md and "Where distillation pays" not in md
    edit_summary(run_dir, gain_curve=DROP)
    assert "Where distillation pays" not in summary_markdown(load_run(run_dir))


def test_summary_markdown_shows_a_matching_teacher_check_prominently(run_factory: RunFactory) -> None:
    run_dir = run_factory()
    message = "teacher check: a cnn depth 1 width 16 student alone reaches the teacher (99.0% vs 99.0%)"
    check = {"student": "cnn depth 1 width 16", "params": 26394, "epochs": 15, "student_val_accuracy": 0.99,
             "teacher_val_accuracy": 0.99, "matches": True, "message": message}  # fmt: skip
    edit_summary(run_dir, teacher_check=check)
    md = summary_markdown(load_run(run_dir))
    top = md.index("| model |")
    assert md.index("> **Teacher check:** A cnn depth 1 width 16 student alone reaches the teacher") < top
    assert "- **Teacher check:** the small student matches the teacher" in md


def test_summary_markdown_interrupted_run(run_factory: RunFactory) -> None:
    md = summary_markdown(load_run(run_factory(summary="missing")))
    assert "no summary.json" in md and "Best validation accuracy so far: 97.0%" in md
    assert "| teacher" not in md and "Does distillation help" not in md and "## Setup" not in md


# --- setup facts -------------------------------------------------------------------------------------


def test_setup_facts_from_the_new_schema() -> None:
    summary = {
        "teacher": {"arch": "resnet-large", "source": "cache", "params": 1_084_010, "train_accuracy": 1.0,
                    "val_accuracy": 0.99, "test_accuracy": 0.985},
        "teacher_check": {"student": "cnn depth 1 width 16", "params": 26394, "epochs": 15,
                          "student_val_accuracy": 0.975, "teacher_val_accuracy": 0.99, "matches": False,
                          "message": "teacher check: passed"},
        "size_bound": {"max_params": 54200, "teacher_fraction": 0.05, "requested": "5%"},
        "augmentation": {"dataset": "crop", "crop_padding": 1, "horizontal_flip": False, "teacher": True,
                         "students": "crop+flip"},
        "baseline": {"recipe": RECIPE, "search": {"trials": 10, "best_val_accuracy": 0.97}},
    }  # fmt: skip
    facts = {f.label: f.text for f in setup_facts(summary)}
    assert list(facts) == ["teacher", "teacher check", "size bound", "augmentation", "baseline recipe"]
    assert facts["teacher"] == (
        "resnet-large, reused from the teacher cache, 1.08M params; accuracy: train 100.0%, validation 99.0%, "
        "test 98.5% (train minus validation: 1.0 points)"
    )
    memorising = {**summary, "teacher": {**summary["teacher"], "val_accuracy": 0.967}}
    assert {f.label: f.text for f in setup_facts(memorising)}["teacher"].endswith(
        "(train minus validation: 3.3 points; it has memorised its training set)")
    assert facts["teacher check"] == (
        "passed (the teacher is better than a small student): a cnn depth 1 width 16 student (26.4k params) "
        "trained alone for 15 epochs reached 97.5% validation accuracy, against the teacher's 99.0%."
    )
    assert facts["size bound"] == "students up to 54.2k params, 5% of the teacher's 1.08M (requested: 5%)"
    assert facts["augmentation"] == (
        "dataset augmentation: crop (padding 1 px, no horizontal flip); teacher trained with it; students trained "
        "with crop and horizontal flip"
    )
    assert facts["baseline recipe"] == (
        "lr 0.05, weight decay 0.0005, batch size 64, augmentation off; tuned by its own search of 10 trials "
        "(best validation accuracy 97.0%)"
    )


def test_setup_facts_degrade_for_old_and_partial_summaries() -> None:
    assert setup_facts(None) == [] and setup_facts({}) == []
    old = {"teacher": {"arch": "resnet-large", "params": 10, "test_accuracy": 0.9}, "baseline": {"arch": "cnn"}}
    assert [(f.label, f.text) for f in setup_facts(old)] == [
        ("teacher", "resnet-large, 10 params; accuracy: test 90.0%")
    ]
    partial = {
        "teacher": {"arch": "t", "params": 1000, "train_accuracy": 0.95, "val_accuracy": 0.9},
        "size_bound": {"max_params": 20},  # fraction computed from the teacher's size
        "teacher_check": None,
        "augmentation": {"dataset": "none", "students": "none"},
    }
    facts = {f.label: f.text for f in setup_facts(partial)}
    assert facts["teacher"].endswith("(train minus validation: 5.0 points)")
    assert facts["size bound"] == "students up to 20 params, 2% of the teacher's 1k"
    assert facts["augmentation"] == "dataset augmentation: none; students trained without augmentation"
    assert "teacher check" not in facts and "baseline recipe" not in facts


def test_the_size_bound_names_every_limit_and_where_latency_was_measured() -> None:
    summary = {"teacher": {"params": 1_000_000},
               "size_bound": {"max_params": None, "max_flops": 20_000_000, "max_latency_ms": 0.5, "requested": "none",
                              "latency": {"runtime": "onnxruntime", "runtime_version": "1.32.0", "cpu": "Some CPU"}}}
    assert size_bound_text(summary) == ("students up to 20M FLOPs; 0.5 ms at batch 1 (onnxruntime 1.32.0, one thread "
                                        "of Some CPU)")
    both = {**summary, "size_bound": {"max_params": 20_000, "requested": "2%", "max_flops": 1_500_000}}
    assert size_bound_text(both) == "students up to 20k params, 2% of the teacher's 1M (requested: 2%); 1.5M FLOPs"


def test_teacher_check_matching_uses_the_message_and_passing_says_so() -> None:
    check = {"student": "cnn depth 1 width 16", "student_val_accuracy": 0.99, "teacher_val_accuracy": 0.99}
    matching = teacher_check({"teacher_check": {**check, "matches": True, "message": "teacher check: too easy"}})
    assert matching is not None and matching.matches and matching.message == "Too easy"
    assert matching.text.startswith("the small student matches the teacher: a cnn depth 1 width 16 student trained")
    without_message = teacher_check({"teacher_check": {**check, "matches": True}})
    assert without_message is not None and without_message.message.startswith("The small student matches the teacher")
    passing = teacher_check({"teacher_check": {**check, "matches": False}})
    assert passing is not None and not passing.matches and passing.text.startswith("passed")
    assert teacher_check({"teacher_check": None}) is None and teacher_check(None) is None


def test_a_user_teachers_view_features_and_parameter_distillation_are_setup_facts() -> None:
    from reports.text import setup_facts

    view = {"data_mean": [0.3], "data_std": [0.37], "channels": 3, "input_size": [32, 32],
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "normalisation": "teacher"}
    summary = {"teacher": {"arch": "torchscript teacher.ts", "source": "torchscript", "preprocessing": view,
                           "feature_layers": [], "init_from_teacher": "not offered: the teacher is not a member"}}
    facts = {fact.label: fact.text for fact in setup_facts(summary)}
    assert facts["teacher's view"] == ("resized to 32x32 px, 1-channel images repeated to 3 channels, normalised "
                                       "with mean 0.485,0.456,0.406 and std 0.229,0.224,0.225")
    assert facts["teacher features"].startswith("none named: the search left feature losses")
    assert facts["parameter distillation"].startswith("not offered")
    assert "loaded from a TorchScript file" in facts["teacher"]
    kdsearch = {fact.label for fact in setup_facts({"teacher": {"arch": "cnn-large", "source": "cache"}})}
    assert not kdsearch & {"teacher's view", "teacher features"}


def test_a_baseline_without_its_own_search_is_not_called_tuned() -> None:
    untuned = {"student": {"test_accuracy_mean": 0.95, "seeds": [0]}, "kd_gain": 1.0, "kd_gain_ci95": [0.5, 1.5],
               "baseline": {"test_accuracy_mean": 0.94, "recipe": {"lr": 0.05, "weight_decay": 0.0005,
                                                                   "batch_size": 64, "augment": None},
                            "search": {"budget": 0, "trials": 0, "best_trial": None, "best_val_accuracy": None}}}
    assert not kd_result(untuned).own_recipe
    assert "trained without a teacher" in verdict_sentence(untuned)
    assert "own tuned recipe" not in verdict_sentence(untuned)
    facts = {fact.label: fact.text for fact in setup_facts(untuned)}
    assert facts["baseline recipe"] == ("lr 0.05, weight decay 0.0005, batch size 64; "
                                        "the winner's own, not searched (--baseline-budget 0)")
    tuned = {**untuned, "baseline": {**untuned["baseline"], "search": {"trials": 8, "best_val_accuracy": 0.97}}}
    assert kd_result(tuned).own_recipe
    assert "own tuned recipe" in verdict_sentence(tuned)
