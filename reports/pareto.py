"""The Pareto front of a ``--objective pareto`` search as a table: each member's size by every measure.

Pure: a summary in, rows out, shared by ``report.html``, ``summary.md`` and their tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reports.figures import format_params
from reports.run import as_float
from reports.text import format_accuracy, format_latency


@dataclass(frozen=True)
class ParetoRow:
    """One member of the front, every cell formatted."""

    trial: str
    arch: str
    val_accuracy: str
    test_accuracy: str
    params: str
    flops: str
    latency: str


HEADER = ["trial", "architecture", "validation accuracy", "test accuracy (re-trained)", "params", "FLOPs",
          "latency (onnxruntime)"]


def pareto_rows(summary: Mapping[str, Any] | None) -> list[ParetoRow]:
    """The front's members, smallest first, as the final stage measured them; empty when there is none."""
    members = (summary or {}).get("pareto") or []
    rows = []
    for member in members:
        if not isinstance(member, Mapping):
            continue
        config = member.get("config") if isinstance(member.get("config"), Mapping) else {}
        recheck = member.get("recheck") if isinstance(member.get("recheck"), Mapping) else {}
        flops, latency = as_float(member.get("flops")), as_float(member.get("latency_ms"))
        rows.append(ParetoRow(
            trial=str(member.get("trial_id") or "?"),
            arch=f"{config.get('family', '?')} depth {config.get('depth', '?')} width {config.get('width', '?')}",
            val_accuracy=format_accuracy(as_float(member.get("val_accuracy"))),
            test_accuracy=format_accuracy(as_float(recheck.get("test_accuracy"))) if recheck else "n/a",
            params=format_params(as_float(member.get("params"))),
            flops=format_params(flops) if flops is not None else "n/a",
            latency=format_latency(latency),
        ))
    return rows
