"""The KD verdict statistics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from runfolder._stats import (
    HELPS,
    HURTS,
    NO_DIFFERENCE,
    interval_words,
    paired_gain,
    pareto_front,
    resolution_points,
    t_quantile,
    verdict,
)


def test_t_quantiles_match_the_table() -> None:
    # Two-sided 95 % critical values of Student's t, from any statistics table.
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(9) == pytest.approx(2.262, abs=1e-3)


def test_paired_gain_by_hand() -> None:
    # Differences 1.0, 0.5, 1.5, 1.0, 0.5 points: mean 0.9, sample sd sqrt(0.175) = 0.41833,
    # half width 2.776445 * 0.41833 / sqrt(5) = 0.51942.
    student = [0.990, 0.985, 0.995, 0.990, 0.985]
    baseline = [0.980, 0.980, 0.980, 0.980, 0.980]
    result = paired_gain(student, baseline)
    assert result.gain == pytest.approx(0.9)
    assert result.per_seed == pytest.approx((1.0, 0.5, 1.5, 1.0, 0.5))
    assert result.ci95 == pytest.approx((0.9 - 0.51942, 0.9 + 0.51942), abs=1e-4)
    assert result.verdict == HELPS
    assert result.summary_fields() == {"kd_gain": result.gain, "kd_gain_ci95": list(result.ci95),
                                       "kd_verdict": HELPS, "kd_gain_per_seed": list(result.per_seed)}
    assert result.summary_fields("search") == {"search_gain": result.gain, "search_gain_ci95": list(result.ci95),
                                               "search_verdict": HELPS, "search_gain_per_seed": list(result.per_seed)}


def test_an_interval_that_contains_zero_is_no_detectable_difference() -> None:
    # Differences +1, -1, +2 points: mean 0.667, sd 1.5275, half width 4.3027 * 1.5275 / sqrt(3) = 3.7945.
    result = paired_gain([0.51, 0.49, 0.52], [0.50, 0.50, 0.50])
    assert result.gain == pytest.approx(2 / 3)
    assert result.ci95 == pytest.approx((2 / 3 - 3.7945, 2 / 3 + 3.7945), abs=1e-3)
    assert result.verdict == NO_DIFFERENCE


def test_a_consistent_loss_hurts() -> None:
    result = paired_gain([0.95, 0.96, 0.94], [0.97, 0.98, 0.97])
    assert result.ci95 is not None and result.ci95[1] < 0
    assert result.verdict == HURTS


def test_identical_differences_give_a_zero_width_interval() -> None:
    result = paired_gain([0.9, 0.8], [0.9, 0.8])
    assert result.ci95 == (0.0, 0.0)
    assert result.verdict == NO_DIFFERENCE


def test_one_seed_has_no_interval_and_no_verdict_of_difference() -> None:
    result = paired_gain([0.99], [0.95])
    assert result.gain == pytest.approx(4.0)
    assert result.ci95 is None and result.interval() is None
    assert result.verdict == NO_DIFFERENCE


def test_mismatched_or_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_gain([0.9, 0.8], [0.9])
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_gain([], [])


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.1, 2.0, HELPS), (-2.0, -0.1, HURTS), (-0.5, 0.5, NO_DIFFERENCE), (0.0, 1.0, NO_DIFFERENCE),
    (-1.0, 0.0, NO_DIFFERENCE)])
def test_verdict_from_the_interval(low: float, high: float, expected: str) -> None:
    assert verdict(low, high) == expected


def test_resolution_is_one_test_image_in_points() -> None:
    assert resolution_points(360) == pytest.approx(100 / 360)
    assert math.isclose(resolution_points(10_000), 0.01)


def test_pareto_front_keeps_only_non_dominated_points_in_size_order() -> None:
    points = [
        (0.90, 1000),  # 0: front
        (0.80, 500),  # 1: front (smaller)
        (0.85, 1200),  # 2: dominated by 0
        (0.95, 5000),  # 3: front (most accurate)
        (0.70, 800),  # 4: dominated by 1
        (0.90, 3000),  # 5: dominated by 0 (same accuracy, bigger)
    ]
    assert pareto_front(points) == [1, 0, 3]


def test_pareto_front_collapses_ties_and_handles_edge_cases() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(0.5, 10)]) == [0]
    # Exact duplicates: one representative. Same size, lower accuracy: dominated.
    assert pareto_front([(0.9, 100), (0.9, 100), (0.8, 100)]) == [0]
    # Strictly better in both: only the one point.
    assert pareto_front([(0.7, 200), (0.9, 100)]) == [1]


def test_pareto_front_matches_brute_force_definition() -> None:
    import random

    rng = random.Random(3)
    points = [(round(rng.random(), 2), rng.randint(1, 30)) for _ in range(60)]

    def dominated(p: tuple[float, int]) -> bool:
        return any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)

    expected = {p for p in points if not dominated(p)}
    assert {points[i] for i in pareto_front(points)} == expected


def test_interval_words_say_the_interval_and_the_smallest_detectable_gain() -> None:
    assert interval_words([0.28, 1.24]) == ("95% CI [+0.28, +1.24]", "these seeds detect gains above 0.48 points")
    assert interval_words((-0.0, 0.5))[0] == "95% CI [+0.00, +0.50]"  # never "-0.00"
    assert interval_words(None) == ("no interval from one seed", None)
