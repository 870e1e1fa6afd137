"""bench/bench_throughput.py's ceiling: how far any data path could lift a step over the plain loop's."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_throughput.py"


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_ceiling_is_the_plain_step_over_its_compute_alone() -> None:
    reachable_ratio = _bench().reachable_ratio  # type: ignore[attr-defined]
    # A plain step of 1 ms per image whose data path alone takes 0.25 ms: the model needs 0.75 ms.
    assert math.isclose(reachable_ratio(1000.0, 4000.0), 1 / 0.75)
    # A data path of two thirds of the step: a free one makes the step 3x faster, just the target.
    assert math.isclose(reachable_ratio(1000.0, 1500.0), 3.0)
    # A data path measured slower than the whole step (noise): no bound can be told.
    assert reachable_ratio(1000.0, 900.0) == math.inf
