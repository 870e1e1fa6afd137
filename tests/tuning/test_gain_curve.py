"""Which student sizes the gain curve measures, and how a recipe moves to another architecture."""

from __future__ import annotations

from typing import Any

from tuning.gain_curve import (
    arch_of,
    curve_architectures,
    curve_recipes,
    spread_by_size,
    textbook_recipe,
    with_arch,
)

SIZES = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 50_000]


def test_spread_covers_smallest_to_largest_on_a_log_scale() -> None:
    # log-even targets between 1,000 and 50,000: 3,684 and 13,572 -> 4,000 and 16,000
    assert spread_by_size(SIZES, 4, keep=6) == [0, 2, 4, 6]


def test_the_kept_entry_is_always_chosen() -> None:
    assert spread_by_size(SIZES, 4, keep=3) == [0, 2, 3, 6]
    assert 3 in spread_by_size(SIZES, 2, keep=3)
    assert len(spread_by_size(SIZES, 2, keep=3)) == 2


def test_fewer_entries_than_asked_are_all_taken() -> None:
    assert spread_by_size([1_000, 2_000], 4, keep=1) == [0, 1]


def _record(family: str, depth: int, width: int, params: int) -> dict[str, Any]:
    return {"config": {"family": family, "depth": depth, "width": width, "alpha": 0.5}, "params": params}


def test_curve_architectures_are_distinct_sorted_and_include_the_winner() -> None:
    front = [_record("cnn", 1, 3, 1_100), _record("cnn", 1, 3, 1_100), _record("cnn", 1, 8, 6_900),
             _record("mobilenet", 1, 16, 21_800), _record("cnn", 2, 12, 42_400), _record("cnn", 1, 24, 51_000)]
    others = [_record("resnet", 1, 4, 5_100)]
    chosen = curve_architectures(front, others, ("mobilenet", 2, 8), 20_300, count=4)
    assert ("mobilenet", 2, 8) in chosen
    assert chosen[0] == ("cnn", 1, 3) and chosen[-1] == ("cnn", 1, 24)
    assert len(chosen) == len(set(chosen)) == 4
    assert ("resnet", 1, 4) not in chosen  # the front has enough sizes


def test_other_trials_fill_a_short_front() -> None:
    front = [_record("cnn", 2, 7, 15_000)]
    others = [_record("cnn", 1, 3, 1_100), _record("cnn", 1, 8, 6_900), _record("cnn", 2, 7, 15_000),
              _record("cnn", 1, 20, 36_000)]
    chosen = curve_architectures(front, others, ("cnn", 2, 7), 15_000, count=3)
    assert chosen == [("cnn", 1, 3), ("cnn", 2, 7), ("cnn", 1, 20)]


def test_curve_recipes_share_the_baseline_recipe_and_differ_by_the_kd_terms() -> None:
    kd = {"family": "resnet", "depth": 1, "width": 7, "alpha": 0.6, "temperature": 5.0, "feature_loss": "none",
          "lr": 0.02, "weight_decay": 2e-5, "batch_size": 128, "distill_interval": 1, "init_from_teacher": True}
    baseline = {"family": "resnet", "depth": 1, "width": 7, "alpha": 0.0, "lr": 0.25, "weight_decay": 1e-5,
                "batch_size": 64, "augment": False}
    distilled, alone = curve_recipes(kd, baseline, ("cnn", 1, 4), teacher_family="resnet")
    assert alone == {**baseline, "family": "cnn", "width": 4}
    assert distilled == {**alone, "alpha": 0.6, "temperature": 5.0, "feature_loss": "none", "distill_interval": 1}


def test_a_recipe_moves_to_another_architecture() -> None:
    config = {"family": "resnet", "depth": 1, "width": 8, "alpha": 0.7, "init_from_teacher": True}
    assert arch_of(config) == ("resnet", 1, 8)
    assert with_arch(config, ("resnet", 2, 4), teacher_family="resnet") == {**config, "depth": 2, "width": 4}
    moved = with_arch(config, ("cnn", 1, 8), teacher_family="resnet")
    assert moved == {"family": "cnn", "depth": 1, "width": 8, "alpha": 0.7}  # no teacher weights to inherit


def test_the_textbook_recipe_is_the_winners_student_on_the_baselines_optimisation_settings() -> None:
    winner = {"family": "resnet", "depth": 1, "width": 8, "alpha": 0.4, "temperature": 9.0, "feature_loss": "hint",
              "beta": 2.0, "distill_interval": 3, "init_from_teacher": True, "lr": 0.2, "weight_decay": 1e-5,
              "batch_size": 32, "augment": True}
    baseline = {"family": "resnet", "depth": 1, "width": 8, "alpha": 0.0, "lr": 0.03, "weight_decay": 2e-4,
                "batch_size": 128, "augment": False}
    assert textbook_recipe(winner, baseline) == {
        "family": "resnet", "depth": 1, "width": 8, "lr": 0.03, "weight_decay": 2e-4, "batch_size": 128,
        "alpha": 0.9, "temperature": 4.0, "feature_loss": "none", "beta": 0.0, "distill_interval": 1,
        "init_from_teacher": False}  # no augment: the dataset's default, not the baseline's choice
