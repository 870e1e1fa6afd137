"""Run records without Ray: what the recorder keeps, writes, reconciles after a restore, and mirrors."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import optuna

from spaces import default_space
from tuning.journal import JournalMirror, open_study, rebuild_if_stale
from tuning.records import RunRecorder, count_states, load_records, trials_csv

CONFIG = {"family": "cnn", "depth": 1, "width": 8, "alpha": 0.5, "temperature": 4.0, "feature_loss": "none",
          "lr": 0.1, "weight_decay": 1e-4, "batch_size": 64, "distill_interval": 1}


class _Mirror:
    def __init__(self) -> None:
        self.added: list[str] = []

    def add(self, record: dict) -> None:
        self.added.append(record["trial_id"])


def _trial(trial_id: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config=dict(CONFIG), error_file=None)


def _recorder(run_dir: Path, experiment: str = "tune", epochs: int = 2) -> tuple[RunRecorder, _Mirror]:
    mirror = _Mirror()
    recorder = RunRecorder(run_dir, experiment, epochs, 4, lambda: mirror, log=lambda message: None)
    recorder.setup()
    return recorder, mirror


def _run_trial(recorder: RunRecorder, trial_id: str, epochs: int) -> None:
    trial = _trial(trial_id)
    recorder.on_trial_start(0, [], trial)
    for epoch in range(1, epochs + 1):
        recorder.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": 0.5 + epoch / 10, "params": 100,
                                                "busy_s": epoch * 0.1})
    recorder.on_trial_complete(0, [], trial)


def test_records_states_files_and_mirror(tmp_path: Path) -> None:
    recorder, mirror = _recorder(tmp_path)
    _run_trial(recorder, "a", epochs=2)
    _run_trial(recorder, "b", epochs=1)
    diverged = _trial("c")
    recorder.on_trial_start(0, [], diverged)
    recorder.on_trial_result(0, [], diverged, {"diverged": "NonFiniteLossError: nan", "params": 100, "busy_s": 0.1})
    recorder.on_trial_complete(0, [], diverged)
    records = load_records(tmp_path)
    assert [records[t]["state"] for t in "abc"] == ["COMPLETE", "STOPPED", "FAILED"]
    assert records["c"]["error"] == "NonFiniteLossError: nan" and records["c"]["curve"] == []
    assert records["a"]["best_val_accuracy"] == 0.7 and [p["epoch"] for p in records["a"]["curve"]] == [1, 2]
    assert count_states(records.values()) == {"completed": 1, "stopped_early": 1, "failed": 1}
    assert mirror.added == ["a", "b", "c"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "trials.csv").read_text())))
    assert [row["state"] for row in rows] == ["COMPLETE", "STOPPED", "FAILED"]
    assert rows[0]["param_family"] == "cnn" and rows[0]["epochs"] == "2"
    assert trials_csv([]).strip().startswith("trial_id,number,state")


def test_a_resumed_trial_overwrites_the_epochs_it_repeats(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path, epochs=3)
    trial = _trial("a")
    recorder.on_trial_start(0, [], trial)
    for epoch in (1, 2, 1, 2, 3):  # restarted after epoch 2
        recorder.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": epoch / 10, "busy_s": 1.0})
    recorder.on_trial_complete(0, [], trial)
    assert [p["epoch"] for p in load_records(tmp_path)["a"]["curve"]] == [1, 2, 3]


def test_restore_drops_records_ray_did_not_save_and_renumbers(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path)
    for trial_id in "abc":
        _run_trial(recorder, trial_id, epochs=2)
    recorder.on_trial_start(0, [], _trial("d"))  # running when the driver died
    recorder.write()
    restored, _ = _recorder(tmp_path)
    restored.on_step_begin(0, [_trial("a"), _trial("c")])  # Ray saved a and c only
    restored.write()
    records = load_records(tmp_path)
    assert sorted(records) == ["a", "c"]
    assert sorted(r["number"] for r in records.values()) == [0, 1]
    # a later experiment of the same run leaves the earlier experiment's records alone
    later, _ = _recorder(tmp_path, experiment="tune-2")
    later.on_step_begin(0, [])
    assert sorted(later.records) == ["a", "c"]


def test_journal_mirror_and_rebuild(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path)
    for trial_id in "abc":
        _run_trial(recorder, trial_id, epochs=2)
    records = sorted(load_records(tmp_path).values(), key=lambda r: r["number"])
    path = tmp_path / "optuna.journal"
    mirror = JournalMirror(path, "accuracy", default_space(), teacher_family=None)
    for record in records:
        mirror.add(record)
        mirror.add(record)  # twice: kept once
    study = open_study(path, "accuracy")
    assert [t.user_attrs["trial_id"] for t in study.trials] == ["a", "b", "c"]
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and study.trials[0].value == 0.7
    rebuild_if_stale(path, records[:2], JournalMirror(path, "accuracy", default_space(), None))
    assert [t.user_attrs["trial_id"] for t in open_study(path, "accuracy").trials] == ["a", "b"]
