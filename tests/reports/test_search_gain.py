"""The sentence answering "does the search pay?" from summary.json's search_gain."""

from __future__ import annotations

from typing import Any

from reports.search_gain import search_sentence


def _summary(**extra: Any) -> dict[str, Any]:
    return {"textbook": {"seeds": [0, 1, 2, 3, 4], "same_as_winner": False}, "test_resolution_points": 0.05,
            "search_gain": 0.62, "search_gain_ci95": [0.21, 1.03], "search_verdict": "helps", **extra}


def test_a_search_that_pays_says_so_with_its_interval_seeds_and_resolution() -> None:
    assert search_sentence(_summary()) == (
        "The search pays: the searched recipe is +0.62 points more accurate on test than the same student distilled "
        "with the textbook recipe (alpha 0.9, T 4, no feature loss) (95 % CI +0.21 to +1.03; over 5 paired seeds; "
        "these seeds detect gains above 0.41 points; one test image = 0.05 points).")


def test_no_difference_and_a_loss_are_said_plainly() -> None:
    none = search_sentence(_summary(search_gain=-0.1, search_gain_ci95=[-0.6, 0.4],
                                    search_verdict="no detectable difference"))
    assert none.startswith("No detectable difference between the searched and the textbook recipe: the searched "
                           "recipe is 0.10 points less accurate")
    worse = search_sentence(_summary(search_gain=-0.8, search_gain_ci95=[-1.2, -0.4], search_verdict="hurts"))
    assert worse.startswith("The search did not pay:") and worse.endswith("the textbook recipe is better.")


def test_a_winner_that_is_the_textbook_recipe_and_older_runs() -> None:
    same = search_sentence(_summary(textbook={"seeds": [0, 1], "same_as_winner": True}, search_gain=0.0))
    assert same is not None and "found nothing better than the textbook recipe" in same
    assert search_sentence({"kd_gain": 0.3}) is None  # a run made before the textbook arm
    assert search_sentence(None) is None


def test_the_results_table_has_a_textbook_row_with_the_students_size() -> None:
    from reports.text import result_rows

    student = {"arch": "cnn depth 1 width 8", "params": 7_605, "test_accuracy_mean": 0.983, "test_accuracy_std": 0.003,
               "seeds": [0, 1]}
    textbook = {"test_accuracy_mean": 0.975, "test_accuracy_std": 0.004, "seeds": [0, 1]}
    rows = result_rows({"student": student, "textbook": textbook})
    assert [row.model for row in rows] == ["same student, textbook KD recipe (alpha 0.9, T 4)",
                                           "distilled student (finetuned)"]
    assert (rows[0].arch, rows[0].params) == (rows[1].arch, rows[1].params) == ("cnn depth 1 width 8", "7.61k")
    assert rows[0].accuracy.startswith("97.5%")
