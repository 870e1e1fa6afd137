"""What Ray Tune's saved experiment state says, for tests that kill a search and check what a resume kept."""

from __future__ import annotations

import json
from pathlib import Path


def saved_by_ray(run_dir: Path, experiment: str = "tune") -> set[str]:
    """Trials Ray Tune's newest saved experiment state has as ended: the ones a resume is promised to keep."""
    states = sorted((run_dir / experiment).glob("experiment_state-*.json"))
    if not states:
        return set()
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
    except (json.JSONDecodeError, KeyError, OSError):  # caught mid-write by Ray
        return set()
    trials = [json.loads(entry[0]) for entry in trial_data]
    return {t["trial_id"] for t in trials if t["status"] in ("TERMINATED", "ERROR")}
