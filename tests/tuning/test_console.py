"""search.py's closing lines: the results table, one line per verdict, and the resolution caveat."""

from __future__ import annotations

from typing import Any

import search


def _summary(test_images: int, **extra: Any) -> dict[str, Any]:
    entry = {"test_accuracy_mean": 0.98, "test_accuracy_std": 0.002, "params": 2_000, "seeds": [0, 1, 2]}
    return {"dataset": {"test": test_images}, "teacher": {"arch": "cnn-large", "test_accuracy": 0.99, "params": 9_000},
            "baseline": dict(entry), "student": dict(entry), "test_resolution_points": 100 / test_images,
            "kd_gain": 0.5, "kd_gain_ci95": [0.1, 0.9], "kd_verdict": "helps", **extra}


def test_each_verdict_line_gives_the_resolution_and_the_smallest_detectable_gain() -> None:
    line = search.gain_line(_summary(2_000))
    assert line == ("kd_gain: +0.50 points, 95% CI [+0.10, +0.90] over 3 paired seeds: helps "
                    "(one test image = 0.05 points; these seeds detect gains above 0.40 points)")


def test_the_search_gain_and_the_textbook_arm_are_printed() -> None:
    textbook = {"test_accuracy_mean": 0.979, "test_accuracy_std": 0.001, "seeds": [0, 1, 2]}
    table = search.final_table(_summary(2_000, textbook=textbook, search_gain=-0.1, search_gain_ci95=[-0.5, 0.3],
                                        search_verdict="no detectable difference"))
    lines = table.splitlines()
    assert any(line.startswith("textbook KD recipe") and "0.9790 ± 0.0010" in line and "2,000" in line
               for line in lines)
    assert ("search_gain (searched minus textbook recipe): -0.10 points, 95% CI [-0.50, +0.30] over 3 paired seeds: "
            "no detectable difference (one test image = 0.05 points; these seeds detect gains above 0.40 points)"
            in lines)
    assert not any(line.startswith("note:") for line in lines)  # 2,000 test images resolve 0.05 points


def test_a_small_test_split_gets_one_caveat_naming_the_seed_flag() -> None:
    lines = search.final_table(_summary(360)).splitlines()
    caveats = [line for line in lines if line.startswith("note:")]
    assert caveats == ["note: 360 test images (one = 0.28 points) are too few to resolve the 0.1-1 point gains "
                       "distillation usually gives; more paired seeds narrow the intervals: --final-seeds 6 (now 3)"]


def test_a_winner_that_is_the_textbook_recipe_says_so_instead_of_a_zero_width_interval() -> None:
    summary = _summary(2_000, textbook={"test_accuracy_mean": 0.98, "test_accuracy_std": 0.002, "seeds": [0, 1, 2],
                                        "same_as_winner": True},
                       search_gain=0.0, search_gain_ci95=[0.0, 0.0], search_verdict="no detectable difference")
    assert search.gain_line(summary, "search") == (
        "search_gain (searched minus textbook recipe): 0 by construction: the winner is the textbook recipe on the "
        "baseline's settings, so the search found nothing better than it")


def test_the_student_is_shown_against_a_flops_or_latency_bound() -> None:
    summary = _summary(2_000)
    assert search.size_line(summary) is None  # a parameter bound only: the table's params column says it
    summary["student"] |= {"flops": 1_193_984, "onnx_latency_ms": 0.04536}
    summary["size_bound"] = {"max_params": None, "max_flops": 5_000_000, "max_latency_ms": 0.1}
    assert search.size_line(summary) == ("student size: 1,193,984 FLOPs (bound 5,000,000); 0.0454 ms with onnxruntime "
                                         "at batch 1 on one thread (bound 0.1 ms: within)")
    assert search.size_line(summary) in search.final_table(summary).splitlines()
