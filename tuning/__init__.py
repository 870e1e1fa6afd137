"""How the search runs: Ray Tune + Optuna over ``trainers`` trials, resume, and the final stage.

``search.py`` builds a ``SearchSpec`` with ``build_spec`` and calls ``run``.

The public names are imported on first use (PEP 562). Every Ray worker, a trial actor or a final-stage task
worker, imports ``tuning.trainable`` or ``tuning.seed_runs`` in a fresh process before its first trial or task,
and importing this package eagerly would make each of them import ``tuning.runner`` too, and with it Optuna,
plotly and the report: 0.1-0.8 s of a core per worker for modules it never uses (BENCHMARKS.md, "What a
Ray worker imports").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuning.disk_full import ResultsDiskFull
    from tuning.runner import RunOutcome, SearchFailed, SearchInterrupted, run
    from tuning.spec import SearchSpec, UserError, build_spec

_MODULE_OF = {"ResultsDiskFull": "tuning.disk_full", "RunOutcome": "tuning.runner", "SearchFailed": "tuning.runner",
              "SearchInterrupted": "tuning.runner", "run": "tuning.runner", "SearchSpec": "tuning.spec",
              "UserError": "tuning.spec", "build_spec": "tuning.spec"}

__all__ = ["DRIVER_ONLY_MODULES", "WORKER_MODULES", "ResultsDiskFull", "RunOutcome", "SearchFailed",
           "SearchInterrupted", "SearchSpec", "UserError", "build_spec", "run"]

# What a Ray worker imports to run kdsearch's code (a trial actor, a final-stage task worker), and the modules
# it must leave to the driver (checked by tests/test_layers.py, timed by bench/bench_worker_import.py).
WORKER_MODULES = ("tuning.trainable", "tuning.seed_runs")
DRIVER_ONLY_MODULES = ("optuna", "plotly", "reports", "PIL", "triton", "onnxruntime", "onnx", "torchvision",
                       "tuning.runner", "tuning.tuner")


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'tuning' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
