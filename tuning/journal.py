"""``optuna.journal``: a mirror of every finished trial in an Optuna JournalStorage study.

Ray Tune's searcher checkpoint drives resume (DESIGN.md: a journal-backed OptunaSearch fails on
restore), so this study is written from trial results only, one ``add_trial`` per finished trial,
skipping trials it already holds. ``optuna-dashboard results/<run>/optuna.journal`` opens it, and
the report draws Optuna's own figures from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FixedTrial, TrialState, create_trial

from spaces import SearchSpace, suggest_config
from tuning.records import FAILED

STUDY_NAME = "kdsearch"


def open_study(path: Path, objective: str) -> optuna.Study:
    """Open (or create) the run's study: maximise accuracy, and minimise parameters for ``pareto``."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    directions = ["maximize", "minimize"] if objective == "pareto" else ["maximize"]
    return optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=directions,
                               load_if_exists=True)


class JournalMirror:
    """Adds each finished trial record to the study exactly once."""

    def __init__(self, path: Path, objective: str, space: SearchSpace, teacher_family: str | None) -> None:
        self.study = open_study(path, objective)
        self.objective, self.space, self.teacher_family = objective, space, teacher_family
        self.mirrored = {trial.user_attrs.get("trial_id") for trial in self.study.get_trials(deepcopy=False)}

    def add(self, record: dict[str, Any]) -> None:
        """Mirror one finished record (``tuning.records``); a trial already present is skipped."""
        if record["trial_id"] in self.mirrored:
            return
        self.study.add_trial(self.frozen_trial(record))
        self.mirrored.add(record["trial_id"])

    def frozen_trial(self, record: dict[str, Any]) -> optuna.trial.FrozenTrial:
        config = record["config"]
        # Replaying the define-by-run space on the fixed values recovers each parameter's distribution.
        replay = FixedTrial(config)
        suggest_config(replay, self.space, self.teacher_family)
        failed = record["state"] == FAILED or record["val_accuracy"] is None
        values = None if failed else self._values(record)
        return create_trial(
            state=TrialState.FAIL if failed else TrialState.COMPLETE,
            values=values,
            params={name: config[name] for name in replay.distributions},
            distributions=replay.distributions,
            user_attrs={"trial_id": record["trial_id"], "state": record["state"], "epochs": record["epochs"],
                        "best_val_accuracy": record["best_val_accuracy"], "error": record["error"]},
            intermediate_values={p["epoch"]: p["val_accuracy"] for p in record["curve"]},
        )

    def _values(self, record: dict[str, Any]) -> list[float]:
        if self.objective == "pareto":
            return [record["val_accuracy"], float(record["params"])]
        return [record["val_accuracy"]]


def rebuild_if_stale(path: Path, records: list[dict[str, Any]], mirror: JournalMirror) -> None:
    """Make the journal hold exactly ``records`` (after a resume dropped a trial Ray had not saved).

    A journal is append-only, so a stale one is rewritten whole into a temp file, then replaced.
    """
    wanted = {record["trial_id"] for record in records}
    if mirror.mirrored == wanted:
        return
    temp = path.with_name(f".{path.name}.rebuild")
    temp.unlink(missing_ok=True)
    fresh = JournalMirror(temp, mirror.objective, mirror.space, mirror.teacher_family)
    for record in records:
        fresh.add(record)
    os.replace(temp, path)
