"""``bench/bench_recipe_surface.py``: the grid's configurations and the table's paired gains, by hand."""

from __future__ import annotations

import pytest

from tests.bench.scripts import load_bench_script

bench = load_bench_script("bench_recipe_surface")


def test_every_cell_is_the_textbook_recipe_at_its_alpha_and_temperature() -> None:
    winner = {"family": "cnn", "depth": 2, "width": 5, "alpha": 0.7, "temperature": 3.0, "feature_loss": "hint",
              "beta": 3.0, "lr": 0.1, "weight_decay": 1e-3, "batch_size": 32, "distill_interval": 2}
    baseline = {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 64, "augment": False}
    configs = bench.grid_configs(winner, baseline, [0.5, 0.9], [2.0, 4.0])
    assert sorted(configs) == [(0.5, 2.0), (0.5, 4.0), (0.9, 2.0), (0.9, 4.0)]
    for (alpha, temperature), config in configs.items():
        assert (config["alpha"], config["temperature"]) == (alpha, temperature)
        assert (config["family"], config["depth"], config["width"]) == ("cnn", 2, 5)
        assert (config["lr"], config["weight_decay"], config["batch_size"]) == (0.05, 5e-4, 64)  # the baseline's
        assert (config["feature_loss"], config["beta"], config["distill_interval"]) == ("none", 0.0, 1)


def test_rows_give_each_cells_paired_gain_over_the_reference() -> None:
    results = {(0.9, 4.0): {"val": [0.98, 0.97], "test": [0.980, 0.970]},
               (0.5, 2.0): {"val": [0.99, 0.98], "test": [0.990, 0.975]}}
    rows = bench.surface_rows(results, (0.9, 4.0))
    assert [(row["alpha"], row["temperature"]) for row in rows] == [(0.5, 2.0), (0.9, 4.0)]
    assert rows[0]["gain"] == pytest.approx(0.75)  # differences +1.0 and +0.5 points
    assert rows[0]["test_mean_std"][0] == pytest.approx(0.9825)
    assert rows[1]["gain"] == 0.0 and rows[1]["ci95"] == (0.0, 0.0)
