"""Run records without Ray: what the recorder keeps and writes, and the journal derived from them."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import optuna

from spaces import smoke_space
from tuning.journal import JournalSpec, open_study, sync_journal
from tuning.records import RunRecorder, count_states, load_records, trials_csv

CONFIG = {"family": "cnn", "depth": 1, "width": 8, "alpha": 0.5, "temperature": 4.0, "feature_loss": "none",
          "lr": 0.1, "weight_decay": 1e-4, "batch_size": 64, "distill_interval": 1}


def _trial(trial_id: str, checkpoint: str | None = None) -> SimpleNamespace:
    """What the recorder reads of Ray Tune's ``Trial``; ``checkpoint`` is the path of its latest one."""
    return SimpleNamespace(trial_id=trial_id, config=dict(CONFIG), error_file=None,
                           checkpoint=SimpleNamespace(path=checkpoint) if checkpoint else None)


def _journal(run_dir: Path) -> JournalSpec:
    return JournalSpec(run_dir / "optuna.journal", "accuracy", smoke_space(), teacher_family=None)


def _recorder(run_dir: Path, experiment: str = "tune", epochs: int = 2) -> tuple[RunRecorder, JournalSpec]:
    journal = _journal(run_dir)
    return RunRecorder(run_dir, experiment, epochs, 4, journal, log=lambda message: None), journal


def _journal_ids(journal: JournalSpec) -> list[str]:
    return [t.user_attrs["trial_id"] for t in open_study(journal.path, journal.objective).trials]


def _run_trial(recorder: RunRecorder, trial_id: str, epochs: int, checkpoint: str | None = None) -> None:
    trial = _trial(trial_id, checkpoint)
    recorder.on_trial_start(0, [], trial)
    for epoch in range(1, epochs + 1):
        recorder.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": 0.5 + epoch / 10, "params": 100,
                                                "busy_s": epoch * 0.1})
    recorder.on_trial_complete(0, [], trial)


def test_records_states_files_and_mirror(tmp_path: Path) -> None:
    recorder, journal = _recorder(tmp_path)
    _run_trial(recorder, "a", epochs=2, checkpoint="/storage/a/checkpoint_000001")
    _run_trial(recorder, "b", epochs=1, checkpoint="/storage/b/checkpoint_000000")
    diverged = _trial("c")
    recorder.on_trial_start(0, [], diverged)
    recorder.on_trial_result(0, [], diverged, {"trial_error": "NonFiniteLossError: nan", "params": 100,
                                                    "busy_s": 0.1, "node_id": "n1", "node_ip": "10.0.0.2"})
    recorder.on_trial_complete(0, [], diverged)
    records = load_records(tmp_path)
    assert [records[t]["state"] for t in "abc"] == ["COMPLETE", "STOPPED", "FAILED"]
    assert records["c"]["error"] == "NonFiniteLossError: nan" and records["c"]["curve"] == []
    assert records["a"]["best_val_accuracy"] == 0.7 and [p["epoch"] for p in records["a"]["curve"]] == [1, 2]
    # Only a trial that ran every epoch keeps its checkpoint: the trained student the final stage takes.
    assert [records[t]["checkpoint"] for t in "abc"] == ["/storage/a/checkpoint_000001", None, None]
    assert count_states(records.values()) == {"completed": 1, "stopped_early": 1, "failed": 1}
    assert _journal_ids(journal) == ["a", "b", "c"]
    assert (records["c"]["node_id"], records["c"]["node_ip"]) == ("n1", "10.0.0.2")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "trials.csv").read_text())))
    assert [row["state"] for row in rows] == ["COMPLETE", "STOPPED", "FAILED"]
    assert rows[0]["param_family"] == "cnn" and rows[0]["epochs"] == "2"
    assert rows[2]["node_ip"] == "10.0.0.2" and rows[0]["node_ip"] == ""
    assert [c for c in rows[0] if c.startswith("param_")][:4] == ["param_family", "param_depth", "param_width",
                                                                   "param_alpha"]  # the parameter table's order
    assert trials_csv([]).strip().startswith("trial_id,number,state")


def test_a_resumed_trial_overwrites_the_epochs_it_repeats(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path, epochs=3)
    trial = _trial("a")
    recorder.on_trial_start(0, [], trial)
    for epoch in (1, 2, 1, 2, 3):  # restarted after epoch 2
        recorder.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": epoch / 10, "busy_s": 1.0})
    recorder.on_trial_complete(0, [], trial)
    assert [p["epoch"] for p in load_records(tmp_path)["a"]["curve"]] == [1, 2, 3]


def test_the_journal_is_derived_from_the_records_and_rebuilt_when_they_drop_a_trial(tmp_path: Path) -> None:
    recorder, journal = _recorder(tmp_path)
    for trial_id in "abc":
        _run_trial(recorder, trial_id, epochs=2)
    records = sorted(load_records(tmp_path).values(), key=lambda r: r["number"])
    assert _journal_ids(journal) == ["a", "b", "c"]  # appended as each trial ended
    sync_journal(journal, records)  # again: nothing is added twice
    study = open_study(journal.path, "accuracy")
    assert [t.user_attrs["trial_id"] for t in study.trials] == ["a", "b", "c"]
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and study.trials[0].value == 0.7
    sync_journal(journal, records[:2])
    assert _journal_ids(journal) == ["a", "b"]
    journal.path.unlink()  # a journal lost or never written is built whole from the records
    sync_journal(journal, records)
    assert _journal_ids(journal) == ["a", "b", "c"]


# What Ray Tune writes to a trial's error file when its node is killed: each failure after a "Failure # n" line.
ACTOR_UNAVAILABLE = ("The actor e77b is unavailable: The actor is temporarily unavailable: RpcError: RPC error: "
                     "recvmsg:Connection reset by peer rpc_code: 14. The task may or may not have been executed on "
                     "the actor.")
NODE_DIED = ("The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n\tip: 10.0.0.3\n"
             "The actor died because its node has died. Node Id: n2\n\tthe actor's node was terminated unexpectedly: "
             "health check failed")


def _fail(trial: SimpleNamespace, folder: Path, *failures: str) -> None:
    """Give ``trial`` an error file holding ``failures`` the way Ray Tune appends them."""
    trial.error_file = str(folder / f"{trial.trial_id}-error.txt")
    Path(trial.error_file).write_text("".join(f"Failure # {n} (occurred at now)\n{text}\n"
                                              for n, text in enumerate(failures, 1)))


def _on_node(recorder: RunRecorder, trial: SimpleNamespace, node: str, epochs: range) -> None:
    recorder.on_trial_start(0, [], trial)
    for epoch in epochs:
        recorder.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": 0.5, "busy_s": 1.0,
                                                "node_id": node, "node_ip": f"10.0.0.{node[1:]}"})


def test_a_trial_retried_after_a_lost_node_shows_each_attempt_and_counts_once(tmp_path: Path) -> None:
    recorder, journal = _recorder(tmp_path, epochs=2)
    recorder.dead_nodes = lambda: {"n2"}
    trial = _trial("a")
    _on_node(recorder, trial, "n2", range(1, 2))
    _fail(trial, tmp_path, ACTOR_UNAVAILABLE)
    recorder.on_trial_recover(0, [], trial)  # Ray retries it on another node
    _on_node(recorder, trial, "n1", range(1, 3))
    recorder.on_trial_complete(0, [], trial)
    records = load_records(tmp_path)
    assert list(records) == ["a"] and _journal_ids(journal) == ["a"]  # one trial, counted once
    record = records["a"]
    assert record["state"] == "COMPLETE" and record["error"] is None and record["node_id"] == "n1"
    assert [(a["node_id"], a["error"]) for a in record["attempts"]] == [("n2", "node lost"), ("n1", None)]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "trials.csv").read_text())))
    assert rows[0]["attempts"] == "n2@10.0.0.2 (node lost); n1@10.0.0.1"


def test_a_trial_whose_node_died_fails_with_the_reason_node_lost(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path)
    recorder.dead_nodes = set  # Ray's message says it: no need to ask the cluster
    trial = _trial("a")
    _on_node(recorder, trial, "n2", range(1, 2))
    _fail(trial, tmp_path, "RuntimeError: an earlier failure", NODE_DIED)  # only the latest failure counts
    recorder.on_trial_error(0, [], trial)
    record = load_records(tmp_path)["a"]
    assert (record["state"], record["error"]) == ("FAILED", "node lost")
    assert record["attempts"] == [{"node_id": "n2", "node_ip": "10.0.0.2", "error": "node lost"}]


def test_a_node_declared_dead_after_the_trial_ended_still_gives_the_reason(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path)
    dead: set[str] = set()
    recorder.dead_nodes = lambda: set(dead)
    lost, crashed = _trial("a"), _trial("b")
    _on_node(recorder, lost, "n2", range(1, 2))
    _fail(lost, tmp_path, ACTOR_UNAVAILABLE)
    recorder.on_trial_error(0, [], lost)  # the actor is gone; the cluster does not know why yet
    _on_node(recorder, crashed, "n2", range(1, 2))
    _fail(crashed, tmp_path, "Traceback (most recent call last):\nRuntimeError: boom")
    recorder.on_trial_error(0, [], crashed)
    assert load_records(tmp_path)["a"]["error"] == ACTOR_UNAVAILABLE
    dead.add("n2")  # the health checks gave up on the node
    recorder.on_experiment_end([])
    records = load_records(tmp_path)
    assert records["a"]["error"] == "node lost" and records["a"]["attempts"][0]["error"] == "node lost"
    assert records["b"]["error"] == "RuntimeError: boom"  # its own error, whatever became of its node
    rows = list(csv.DictReader(io.StringIO((tmp_path / "trials.csv").read_text())))
    assert [row["attempts"] for row in rows] == ["n2@10.0.0.2 (node lost)", "n2@10.0.0.2 (RuntimeError)"]
