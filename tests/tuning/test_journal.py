"""The Optuna journal after a full disk: a partial last line is cut off, no rebuild copy is left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

import tuning.journal
from spaces import smoke_space
from tuning.journal import JournalSpec, drop_partial_line, open_study, sync_journal

CONFIG = {"family": "cnn", "depth": 1, "width": 8, "alpha": 0.5, "temperature": 4.0, "feature_loss": "none",
          "lr": 0.1, "weight_decay": 1e-4, "batch_size": 64, "distill_interval": 1}


def _record(trial_id: str, number: int) -> dict[str, Any]:
    """A finished trial as ``trials.json`` holds it: what the journal is derived from."""
    return {"trial_id": trial_id, "number": number, "state": "COMPLETE", "config": dict(CONFIG), "epochs": 2,
            "val_accuracy": 0.5 + number / 10, "best_val_accuracy": 0.5 + number / 10, "error": None,
            "curve": [{"epoch": 2, "val_accuracy": 0.5 + number / 10}]}


def _journal(run_dir: Path) -> JournalSpec:
    return JournalSpec(run_dir / "optuna.journal", "accuracy", smoke_space(), teacher_family=None)


def _trial_ids(journal: JournalSpec) -> list[str]:
    return [t.user_attrs["trial_id"] for t in open_study(journal.path, journal.objective).trials]


def _append_cut_short(journal: JournalSpec, record: dict[str, Any], tmp_path: Path) -> None:
    """Append the first half of the line that adding ``record`` writes: an append the disk cut short."""
    other = _journal(tmp_path / "other")
    other.path.parent.mkdir()
    sync_journal(other, [record])
    line = other.path.read_bytes().splitlines(keepends=True)[-1]
    with open(journal.path, "ab") as stream:
        stream.write(line[: len(line) // 2])


def test_a_partial_last_line_is_cut_off_and_its_trial_appended_again(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    records = [_record(trial_id, number) for number, trial_id in enumerate("abc")]
    sync_journal(journal, records[:2])
    whole = journal.path.read_bytes()
    _append_cut_short(journal, records[2], tmp_path)

    sync_journal(journal, records)  # what the resumed search does with our records
    assert _trial_ids(journal) == ["a", "b", "c"]
    assert journal.path.read_bytes().startswith(whole) and journal.path.read_bytes().endswith(b"\n")


def test_without_the_cut_optuna_appends_onto_the_partial_line_and_cannot_read_the_journal(tmp_path: Path) -> None:
    """Why ``drop_partial_line`` exists: Optuna's reader skips a partial last line, but not once lines follow it."""
    journal = _journal(tmp_path)
    sync_journal(journal, [_record("a", 0)])
    first_line = journal.path.read_bytes().splitlines(keepends=True)[0]
    _append_cut_short(journal, _record("b", 1), tmp_path)
    JournalStorage(JournalFileBackend(str(journal.path)))  # read alone, the partial line is skipped
    with open(journal.path, "ab") as stream:  # two appends as Optuna makes them, onto the partial line
        stream.write(first_line + first_line)
    with pytest.raises(ValueError):
        JournalStorage(JournalFileBackend(str(journal.path)))


@pytest.mark.parametrize(("content", "kept"), [
    (b"", b""), (b"{}\n", b"{}\n"), (b"{\"a", b""), (b"{}\n{\"a", b"{}\n"),
    (b"{}\n" + b"x" * 200_000, b"{}\n"),  # a partial line longer than one block read backwards
])
def test_drop_partial_line_keeps_whole_lines_only(tmp_path: Path, content: bytes, kept: bytes) -> None:
    path = tmp_path / "optuna.journal"
    path.write_bytes(content)
    drop_partial_line(path)
    assert path.read_bytes() == kept
    drop_partial_line(tmp_path / "missing.journal")  # no journal yet: nothing to do


def test_a_rebuild_the_disk_cannot_finish_leaves_no_copy_behind(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    journal = _journal(tmp_path)
    records = [_record(trial_id, number) for number, trial_id in enumerate("abc")]
    sync_journal(journal, records)
    write_trials = tuning.journal._append

    def fill_disk(study: optuna.Study, journal: JournalSpec, records: list[dict[str, Any]]) -> None:
        write_trials(study, journal, records[:1])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tuning.journal, "_append", fill_disk)
    with pytest.raises(OSError):
        sync_journal(journal, records[:2])  # a trial dropped by a resume: the journal is rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.journal"]
    assert _trial_ids(journal) == ["a", "b", "c"]  # the journal as it was


def test_an_append_the_disk_cuts_short_is_cut_back_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = _journal(tmp_path)
    records = [_record(trial_id, number) for number, trial_id in enumerate("abc")]
    sync_journal(journal, records[:1])
    before = journal.path.read_bytes()
    write_trials = tuning.journal._append

    def fill_disk(study: optuna.Study, journal: JournalSpec, records: list[dict[str, Any]]) -> None:
        write_trials(study, journal, records[:1])  # one trial's line written, then the disk is full
        with open(journal.path, "ab") as stream:
            stream.write(b'{"op_code":')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tuning.journal, "_append", fill_disk)
    with pytest.raises(OSError):
        sync_journal(journal, records)
    assert journal.path.read_bytes() == before  # whole lines only, as before the append
    monkeypatch.undo()
    sync_journal(journal, records)
    assert _trial_ids(journal) == ["a", "b", "c"]
