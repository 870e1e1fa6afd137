"""``experiments.json``: the Ray Tune experiments of one run and how many trials each was given.

A run starts as one experiment (``tune``) with ``budget`` trials. Rerunning it after an interruption
restores the last experiment; rerunning a finished run with a larger ``--budget`` adds an experiment
(``tune-2``, ...) for the extra trials whose searcher continues from the previous one. The sum of the
planned trials is the run's budget, so no trial is ever run twice or beyond the budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainers.files import atomic_write_json

PLAN_FILE = "experiments.json"


def read_plan(run_dir: Path) -> list[dict[str, Any]]:
    """``[{"name": "tune", "trials": 50}, ...]`` in order; empty for a new run."""
    path = run_dir / PLAN_FILE
    return json.loads(path.read_text()) if path.exists() else []


def planned_trials(plan: list[dict[str, Any]]) -> int:
    return sum(entry["trials"] for entry in plan)


def next_experiment_name(plan: list[dict[str, Any]]) -> str:
    return "tune" if not plan else f"tune-{len(plan) + 1}"


def write_plan(run_dir: Path, plan: list[dict[str, Any]]) -> None:
    atomic_write_json(run_dir / PLAN_FILE, plan)
