"""Per-trial records of a run: ``trials.json`` (with curves), ``trials.csv``, and live progress lines.

``RunRecorder`` is a Ray Tune callback on the driver. It keeps one record per trial (config,
per-epoch curve, state, node, timing, error, and its attempts: the node of each start of the trial and why that
attempt ended, so a trial Ray retried after a lost node shows both nodes), rewrites both files atomically
whenever a trial ends, and
appends each finished trial to the Optuna journal (``tuning.journal``, derived from these records). On
resume it starts from the existing ``trials.json`` (``tuning.resume`` has already dropped what the
restored experiment will not know), so trials finished before an interruption keep their records.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ray
from ray import tune

from runfolder import (
    COMPLETE,
    FAILED,
    RUNNING,
    STOPPED,
    TRIALS_CSV_FILE,
    TRIALS_FILE,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from spaces import PARAMETERS
from tuning.journal import JournalSpec, sync_journal
from tuning.trainable import DIVERGED, NODE_ID, NODE_IP

CURVE_KEYS = ("epoch", "val_accuracy", "val_loss", "train_loss", "params", "epoch_seconds", "busy_s")
# A trial's size by the Pareto objective's measure when that is not parameters (--objective pareto with
# --max-flops or --max-latency-ms), measured once per trial.
SIZE_KEYS = ("flops", "latency_ms")
CSV_COLUMNS = ("trial_id", "number", "state", "epochs", "val_accuracy", "best_val_accuracy", "params", *SIZE_KEYS,
               "busy_s", "start_time", "end_time", NODE_ID, NODE_IP, "attempts", "error")
# The reason of a trial, or of one attempt of it, that ended because its Ray node died.
NODE_LOST = "node lost"
# Ray's own words for a lost node: an actor's death cause (ActorDiedError), NodeDiedError, a dead raylet.
_NODE_LOST_TEXT = re.compile(r"node has died|node was (terminated|preempted)|NodeDiedError|raylet died", re.I)
# What an actor whose process vanished looks like (ActorUnavailableError, ActorDiedError, WorkerCrashedError):
# the node's loss itself is only known once the cluster declares it dead, seconds later.
_ACTOR_GONE_TEXT = re.compile(r"actor .*(is unavailable|died unexpectedly|is dead)|worker (process has )?died",
                              re.I)


def load_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Records from ``trials.json`` keyed by trial id (empty for a new run)."""
    return {record["trial_id"]: record for record in read_json(run_dir / TRIALS_FILE) or []}


def finished(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of trials that ended (completed, stopped early or failed), in trial order."""
    return sorted((r for r in records.values() if r["state"] != RUNNING), key=lambda r: r["number"])


def count_states(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """``{"completed", "stopped_early", "failed"}`` counts, as ``summary.json`` reports them."""
    states = [r["state"] for r in records]
    return {"completed": states.count(COMPLETE), "stopped_early": states.count(STOPPED),
            "failed": states.count(FAILED)}


def write_records(run_dir: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write ``trials.json`` and ``trials.csv`` (atomically), in trial order."""
    ordered = sorted(records, key=lambda r: r["number"])
    atomic_write_json(run_dir / TRIALS_FILE, ordered)
    atomic_write_text(run_dir / TRIALS_CSV_FILE, trials_csv(ordered))


def trials_csv(records: list[dict[str, Any]]) -> str:
    """One row per trial: its outcome columns, then one ``param_<name>`` column per parameter.

    Parameters come in the order of the parameter table (``spaces.PARAMETERS``), any others after them.
    """
    present = {name for record in records for name in record["config"]}
    param_names = [name for name in PARAMETERS if name in present] + sorted(present - set(PARAMETERS))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*CSV_COLUMNS, *(f"param_{name}" for name in param_names)])
    for record in records:
        cells = {**record, "attempts": attempts_text(record.get("attempts") or [])}
        writer.writerow([_cell(cells.get(column)) for column in CSV_COLUMNS]
                        + [_cell(record["config"].get(name)) for name in param_names])
    return buffer.getvalue()


def attempts_text(attempts: list[dict[str, Any]]) -> str:
    """A trial's attempts for ``trials.csv``, in order: ``node_id@node_ip``, and why the attempt ended when it
    failed (``node lost``, or the error's type), separated by ``; ``."""
    parts = []
    for attempt in attempts:
        where = f"{attempt.get(NODE_ID) or '?'}@{attempt.get(NODE_IP) or '?'}"
        error = attempt.get("error")
        parts.append(f"{where} ({error if error == NODE_LOST else error.split(':')[0]})" if error else where)
    return "; ".join(parts)


def failure_reason(error: str, node_id: str | None, dead_nodes: set[str]) -> str:
    """Why an attempt ended, from ``error`` (the text of its failure): ``NODE_LOST`` when the text says its node
    died, or says its actor vanished on a node the cluster now lists as dead; the text's last line otherwise."""
    if _NODE_LOST_TEXT.search(error) or (node_id in dead_nodes and _ACTOR_GONE_TEXT.search(error)):
        return NODE_LOST
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (no error message recorded)"


def mark_lost_nodes(records: Iterable[dict[str, Any]], dead_nodes: set[str]) -> None:
    """Give every attempt that ended on a node now known dead the reason ``NODE_LOST``, and a failed trial whose
    last attempt it was the error ``NODE_LOST``.

    Ray tells the driver at once that a trial's actor is gone, but that its node is lost only when the cluster's
    health checks give up on the node (seconds later), so attempts are looked at again whenever records are written.
    """
    for record in records:
        attempts = record.get("attempts") or []
        for attempt in attempts:
            if attempt.get("error"):
                attempt["error"] = failure_reason(attempt["error"], attempt.get(NODE_ID), dead_nodes)
        if record["state"] == FAILED and attempts and attempts[-1].get("error") == NODE_LOST:
            record["error"] = NODE_LOST


def dead_node_ids() -> set[str]:
    """Ids of the Ray nodes the cluster lists as dead (none when Ray is not running here)."""
    if not ray.is_initialized():
        return set()
    return {node["NodeID"] for node in ray.nodes() if not node["Alive"]}


class RunRecorder(tune.Callback):
    """Keeps and writes the records of every trial as Ray Tune reports them.

    Ray pickles callbacks into its experiment state and restores them with it, so only plain values
    are kept across pickling (``__getstate__``); the records are read back from ``trials.json``.
    """

    def __init__(self, run_dir: Path, experiment: str, epochs: int, budget: int, journal: JournalSpec,
                 log: Callable[[str], None] = print) -> None:
        self.run_dir, self.experiment, self.epochs, self.budget = run_dir, experiment, epochs, budget
        self.journal, self.log = journal, log
        self.dead_nodes: Callable[[], set[str]] = dead_node_ids
        self._open()

    def _open(self) -> None:
        self.records = load_records(self.run_dir)
        self.started = time.time()

    def __getstate__(self) -> dict[str, Any]:
        # The log function stays behind: Ray replaces print in its workers, so it may not pickle.
        return {key: getattr(self, key) for key in ("run_dir", "experiment", "epochs", "budget", "journal")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.log, self.dead_nodes = print, dead_node_ids
        self._open()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            self.records[trial.trial_id] = {
                "trial_id": trial.trial_id, "number": self._next_number(), "experiment": self.experiment,
                "state": RUNNING,
                "config": dict(trial.config), "curve": [], "start_time": time.time(), "end_time": None,
                "error": None, "epochs": 0, "val_accuracy": None, "best_val_accuracy": None,
                "params": None, "busy_s": 0.0, NODE_ID: None, NODE_IP: None, "checkpoint": None,
            }
        else:  # resumed or retried: keep the curve, the epochs it repeats overwrite their rows
            record["state"] = RUNNING
        # Every start is an attempt (a retry after a lost node, a resume): its node comes with its first result.
        self.records[trial.trial_id].setdefault("attempts", []).append({NODE_ID: None, NODE_IP: None, "error": None})

    def _next_number(self) -> int:
        return max((r["number"] for r in self.records.values()), default=-1) + 1

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        record = self.records[trial.trial_id]
        record.update({key: result[key] for key in (NODE_ID, NODE_IP, *SIZE_KEYS) if key in result})
        _current_attempt(record).update({key: result[key] for key in (NODE_ID, NODE_IP) if key in result})
        if DIVERGED in result:  # the trial's last word: no epoch to plot, an error to keep
            record.update(error=result[DIVERGED], params=result.get("params"), busy_s=result["busy_s"])
            return
        point = {key: result[key] for key in CURVE_KEYS if key in result}
        point["time"] = time.time()
        record["curve"] = [p for p in record["curve"] if p["epoch"] < point["epoch"]] + [point]
        accuracies = [p["val_accuracy"] for p in record["curve"]]
        record.update(epochs=point["epoch"], val_accuracy=point["val_accuracy"],
                      best_val_accuracy=max(accuracies), params=point.get("params"),
                      busy_s=point.get("busy_s", record["busy_s"]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.records[trial.trial_id]
        if record["error"]:
            self._finish(record, FAILED, record["error"])
        else:
            complete = record["epochs"] >= self.epochs
            if complete and trial.checkpoint is not None:  # the trained student, for the final stage
                record["checkpoint"] = trial.checkpoint.path
            self._finish(record, COMPLETE if complete else STOPPED, None)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """An attempt failed and Ray retries the trial (up to ``--max-failures``): the attempt keeps its reason."""
        self._end_attempt(self.records[trial.trial_id], _latest_failure(trial))
        self.write()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.records[trial.trial_id]
        self._finish(record, FAILED, self._end_attempt(record, _latest_failure(trial)))

    def _end_attempt(self, record: dict[str, Any], error: str) -> str:
        """Record why the trial's current attempt ended (``error``: the text of its failure); returns that reason
        (``NODE_LOST`` for a lost node, the error's last line otherwise)."""
        attempt = _current_attempt(record)
        attempt["error"] = failure_reason(error, attempt[NODE_ID], self.dead_nodes())
        return attempt["error"]

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # A node lost near the end may be declared dead only now: its attempts get their reason.
        self.write()

    def _finish(self, record: dict[str, Any], state: str, error: str | None) -> None:
        record.update(state=state, error=error, end_time=time.time())
        self.write()
        sync_journal(self.journal, finished(self.records))
        self.log(self._progress_line(record))

    def write(self) -> None:
        """Rewrite ``trials.json`` and ``trials.csv`` from the current records (lost nodes marked)."""
        mark_lost_nodes(self.records.values(), self.dead_nodes())
        write_records(self.run_dir, self.records.values())

    def _progress_line(self, record: dict[str, Any]) -> str:
        done = finished(self.records)
        scored = [r for r in done if r["val_accuracy"] is not None and r["state"] != FAILED]
        best = max(scored, key=lambda r: r["val_accuracy"], default=None)
        outcome = record["error"] if record["state"] == FAILED else f"val {record['val_accuracy']:.4f}"
        best_text = (f"best val {best['val_accuracy']:.4f} ({describe_config(best['config'])})"
                     if best else "no successful trial yet")
        failed = sum(r["state"] == FAILED for r in done)
        return (f"[{len(done)}/{self.budget}] trial {record['number']} {record['state'].lower()} after "
                f"{record['epochs']} epochs: {outcome} | {best_text} | {failed} failed | "
                f"{time.time() - self.started:.0f}s")


def describe_config(config: dict[str, Any]) -> str:
    """A short human description of a trial configuration."""
    parts = [f"{config.get('family')} d{config.get('depth')} w{config.get('width')}"]
    if "temperature" not in config:  # a run without a teacher (the baseline's search): its recipe
        parts += [f"lr {config.get('lr', 0):.2g}", f"wd {config.get('weight_decay', 0):.1g}",
                  f"batch {config.get('batch_size')}"]
    else:
        parts += [f"alpha {config.get('alpha', 0):.2f}", f"T {config.get('temperature', 1):.1f}"]
        if config.get("feature_loss", "none") != "none":
            parts.append(f"{config['feature_loss']} beta {config.get('beta', 0):.2g}")
        parts.append(f"k {config.get('distill_interval', 1)}")
    if "augment" in config:
        parts.append("augmented" if config["augment"] else "plain")
    return ", ".join(parts)


def _current_attempt(record: dict[str, Any]) -> dict[str, Any]:
    """The trial's current attempt; a record written before attempts were kept gets one from its node."""
    attempts = record.setdefault("attempts", [])
    if not attempts:
        attempts.append({NODE_ID: record.get(NODE_ID), NODE_IP: record.get(NODE_IP), "error": None})
    return attempts[-1]


def _latest_failure(trial: Any) -> str:
    """The text of the trial's latest failure: Ray appends each failure of a retried trial to its error file,
    each after a ``Failure # n`` line."""
    path = getattr(trial, "error_file", None)
    text = Path(path).read_text() if path and Path(path).exists() else ""
    lines = text.strip().splitlines()
    return "\n".join(lines[max((i for i, line in enumerate(lines) if line.startswith("Failure # ")), default=-1) + 1:])


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
