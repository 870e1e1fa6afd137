"""The Pareto front's table: every member with its size by each measure the final stage recorded."""

from __future__ import annotations

from reports.pareto import pareto_rows


def test_each_member_shows_params_flops_latency_and_its_recheck() -> None:
    summary = {"pareto": [
        {"trial_id": "a", "val_accuracy": 0.95, "params": 1200, "flops": 250_000, "latency_ms": 0.0523,
         "config": {"family": "mobilenet_v3_small", "depth": 2, "width": 8},
         "recheck": {"seed": 0, "val_accuracy": 0.96, "test_accuracy": 0.955}},
        {"trial_id": "b", "val_accuracy": 0.97, "params": 5000, "config": {"family": "cnn", "depth": 1, "width": 8}},
        "not a member",
    ]}
    first, second = pareto_rows(summary)
    assert (first.trial, first.arch, first.params, first.flops, first.latency) == (
        "a", "mobilenet_v3_small depth 2 width 8", "1.2k", "250k", "0.0523 ms")
    assert first.val_accuracy == "95.0%" and first.test_accuracy == "95.5%"
    assert (second.flops, second.latency, second.test_accuracy) == ("n/a", "n/a", "n/a")
    assert pareto_rows({}) == [] and pareto_rows(None) == []
