"""A damaged Ray snapshot (a kill in the middle of Ray writing it) is detected before restoring."""

from __future__ import annotations

import json
from pathlib import Path

from ray import cloudpickle

from tuning import build_spec
from tuning.tuner import experiment_path, saved_state_readable


def test_truncated_searcher_state_is_detected(tmp_path: Path) -> None:
    spec = build_spec(results_dir=str(tmp_path), run_name="r")
    folder = Path(experiment_path(spec, "tune"))
    folder.mkdir(parents=True)
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    searcher = folder / "searcher-state-2026-01-01_00-00-00.pkl"
    searcher.write_bytes(cloudpickle.dumps({"counter": 3}))
    assert saved_state_readable(spec, "tune")
    searcher.write_bytes(cloudpickle.dumps({"counter": 3})[:5])
    assert not saved_state_readable(spec, "tune")
    searcher.write_bytes(b"")  # what a kill right after Ray opened the file leaves
    assert not saved_state_readable(spec, "tune")
