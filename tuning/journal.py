"""``optuna.journal``: the run's trials as an Optuna JournalStorage study, derived from ``trials.json``.

Ray Tune's searcher state drives resume (a journal-backed OptunaSearch fails on restore), so this study
is never a live copy of its own: it is written from our records only, one ``add_trial`` per finished
trial, after each trial ends and whenever a search step ends (``sync_journal``). A journal that holds a
trial our records no longer have (a resume dropped it) is rebuilt whole. ``optuna-dashboard
results/<run>/optuna.journal`` opens it, and the report draws Optuna's own figures from it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FixedTrial, TrialState, create_trial

from runfolder import FAILED, STUDY_NAME
from spaces import SearchSpace, suggest_config


@dataclass(frozen=True)
class JournalSpec:
    """Where the journal is and what its trials mean: enough to rebuild it from records at any time."""

    path: Path
    objective: str
    space: SearchSpace
    teacher_family: str | None
    size_measure: str = "params"  # the second objective of pareto: params, flops or latency_ms


def open_study(path: Path, objective: str) -> optuna.Study:
    """Open (or create) the run's study: maximise accuracy, and minimise the student's size for ``pareto``.

    A last line left partial (a kill or a full disk during an append) is cut off first (``drop_partial_line``).
    """
    drop_partial_line(path)
    storage = JournalStorage(JournalFileBackend(str(path)))
    directions = ["maximize", "minimize"] if objective == "pareto" else ["maximize"]
    return optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=directions,
                               load_if_exists=True)


def sync_journal(journal: JournalSpec, records: list[dict[str, Any]]) -> None:
    """Make the journal hold exactly the finished ``records``: append the missing ones, or rebuild it.

    A journal is append-only, so one holding a trial the records no longer have is rewritten whole into
    a temp file, then replaced. Appends that fail (a full disk) are cut back off (``whole_appends``).
    """
    with whole_appends(journal.path):
        study = open_study(journal.path, journal.objective)
        present = {trial.user_attrs.get("trial_id") for trial in study.get_trials(deepcopy=False)}
        wanted = {record["trial_id"] for record in records}
        if not present - wanted:
            _append(study, journal, [record for record in records if record["trial_id"] not in present])
            return
    temp = journal.path.with_name(f".{journal.path.name}.rebuild")
    temp.unlink(missing_ok=True)
    try:
        _append(open_study(temp, journal.objective), journal, records)
        os.replace(temp, journal.path)
    except BaseException:  # a full disk, a signal: no half-built copy is left beside the journal
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def whole_appends(path: Path) -> Iterator[None]:
    """Cut the journal back to its size before the block when the block raises (the disk filled up mid-append).

    Truncating needs no free space, so the journal is left as it was, whole lines only, even on a full disk.
    """
    drop_partial_line(path)
    size = path.stat().st_size if path.is_file() else 0
    try:
        yield
    except BaseException:
        if path.is_file():
            os.truncate(path, size)
        raise


def drop_partial_line(path: Path) -> None:
    """Cut a journal's last line off when it has no newline: an append killed, or cut short by a full disk.

    Optuna appends each change as one JSON line. Its reader skips a partial last line, but the next
    append would be glued onto it, and that merged line makes every later read of the journal fail.
    Truncating needs no free space, so this works on the full disk too. The lost line is a trial our
    records still hold, and ``sync_journal`` appends it again.
    """
    if not path.is_file():
        return
    with open(path, "rb+") as stream:
        end = stream.seek(0, os.SEEK_END)
        keep = end
        while keep > 0:  # read backwards, a block at a time, to the last newline
            start = max(0, keep - _TAIL_BLOCK)
            stream.seek(start)
            block = stream.read(keep - start)
            if keep == end and block.endswith(b"\n"):
                return  # the usual case: the last line is whole
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        stream.truncate(keep)


_TAIL_BLOCK = 1 << 16


def _append(study: optuna.Study, journal: JournalSpec, records: list[dict[str, Any]]) -> None:
    for record in records:
        study.add_trial(frozen_trial(journal, record))


def frozen_trial(journal: JournalSpec, record: dict[str, Any]) -> optuna.trial.FrozenTrial:
    """One finished record as an Optuna trial, with each parameter's distribution from the space."""
    config = record["config"]
    # Replaying the define-by-run space on the fixed values recovers each parameter's distribution.
    replay = FixedTrial(config)
    suggest_config(replay, journal.space, journal.teacher_family)
    failed = record["state"] == FAILED or record["val_accuracy"] is None
    return create_trial(
        state=TrialState.FAIL if failed else TrialState.COMPLETE,
        values=None if failed else _values(journal, record),
        params={name: config[name] for name in replay.distributions},
        distributions=replay.distributions,
        user_attrs={"trial_id": record["trial_id"], "state": record["state"], "epochs": record["epochs"],
                    "best_val_accuracy": record["best_val_accuracy"], "error": record["error"]},
        intermediate_values={p["epoch"]: p["val_accuracy"] for p in record["curve"]},
    )


def _values(journal: JournalSpec, record: dict[str, Any]) -> list[float]:
    if journal.objective == "pareto":
        return [record["val_accuracy"], float(record[journal.size_measure])]
    return [record["val_accuracy"]]
