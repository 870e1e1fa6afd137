"""The final stage's finished trainings on disk, so that a rerun of an interrupted run does not repeat them.

The final stage's trainings are Ray tasks, not Tune trials: without this, a run stopped during the final stage
(a preempted batch job, a lost head node, Ctrl-C) resumed its searches from Ray's state and started the final
stage again from nothing. Each finished run is written once, atomically, to ``<run>/final/<digest>.pt``
(``runfolder.FINAL_FOLDER``); the digest names what decides its weights (``tuning.seed_runs.training_key``, and
for a finetuning its epochs), so a rerun reads back exactly the trainings it would repeat and trains the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from trainers import DistillConfig
from trainers.files import CorruptFileError, atomic_torch_save, safe_torch_load


def run_digest(key: DistillConfig, finetune_epochs: int | None = None) -> str:
    """A file name for the training ``key`` names (finetuned for ``finetune_epochs`` epochs, if given)."""
    described = {"training": dataclasses.asdict(key), "finetune_epochs": finetune_epochs}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:24]


class SeedRunStore:
    """Finished seed runs in ``folder``, each the fields of a ``tuning.seed_runs.SeedRun``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.pt"

    def read(self, digest: str) -> dict[str, Any] | None:
        """The fields written under ``digest``; ``None`` if there are none, or they cannot be read back whole."""
        path = self.path(digest)
        if not path.exists():
            return None
        try:
            fields = safe_torch_load(path)
        except CorruptFileError:  # never written whole (atomic writes), but a damaged disk trains it again
            return None
        return fields if isinstance(fields, dict) else None

    def write(self, digest: str, fields: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(fields, self.path(digest))
