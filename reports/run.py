"""Read a run folder (``results/<run>/``) into plain records the figures and text are built from.

A finished run has ``spec.json``, ``optuna.journal``, ``trials.json`` and ``summary.json``; an
interrupted one may have only some of them. Loading never fails on a missing or unreadable piece
(it is listed in ``RunRecords.problems`` and shown in the report); it fails only when the folder
holds nothing a report could be built from.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from runfolder import (
    COMPLETE,
    FAILED,
    HELPS,
    HURTS,
    JOURNAL_FILE,
    NO_DIFFERENCE,
    SPEC_FILE,
    STOPPED,
    STUDY_NAME,
    SUMMARY_FILE,
    TRIALS_FILE,
    VERDICTS,
)

# Trial states and verdicts come from the run folder's one definition; re-exported for the report modules.
__all__ = ["COMPLETE", "FAILED", "HELPS", "HURTS", "NO_DIFFERENCE", "STOPPED", "VERDICTS", "CurvePoint",
           "RunFolderError", "RunRecords", "Trial", "as_float", "as_int", "interval", "load_run",
           "trials_from_study"]


class RunFolderError(ValueError):
    """The folder is not a run folder a report can be built from; the message names the fix."""


@dataclass(frozen=True)
class CurvePoint:
    """One per-epoch report of a trial."""

    epoch: int
    val_accuracy: float | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    params: int | None = None
    epoch_seconds: float | None = None
    time: float | None = None


@dataclass(frozen=True)
class Trial:
    """One search trial, as recorded in ``trials.json`` (or rebuilt from the Optuna journal)."""

    trial_id: str
    number: int | None
    state: str
    config: Mapping[str, Any] = field(default_factory=dict)
    curve: tuple[CurvePoint, ...] = ()
    start_time: float | None = None
    end_time: float | None = None
    error: str | None = None
    best_val_accuracy: float | None = None
    params: int | None = None
    node: str | None = None
    # The size by other measures when the search recorded them ("flops", "latency_ms": --objective pareto
    # with --max-flops or --max-latency-ms).
    sizes: Mapping[str, float] = field(default_factory=dict)

    def size(self, measure: str) -> float | None:
        """The trial's student size by ``measure`` (``params``, ``flops`` or ``latency_ms``), if recorded."""
        return self.params if measure == "params" else self.sizes.get(measure)

    @property
    def family(self) -> str:
        """The student family, or ``"unknown"`` when the config does not name one."""
        return str(self.config.get("family", "unknown"))

    @property
    def label(self) -> str:
        """A short human label: ``#number trial_id``."""
        return f"#{self.number} {self.trial_id}" if self.number is not None else self.trial_id

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Trial:
        """Build a trial from one ``trials.json`` entry, filling what the entry leaves out.

        ``best_val_accuracy`` and ``params`` fall back to the curve because a trial that was cut short
        may have reported epochs without its final summary fields; a failed trial's partial curve is
        not promoted to a result (its model is not one a user could pick).
        """
        curve = tuple(_curve_point(p) for p in record.get("curve") or () if isinstance(p, Mapping))
        state = str(record.get("state") or "UNKNOWN").upper()
        best = as_float(record.get("best_val_accuracy"))
        if best is None and state != FAILED:
            accs = [p.val_accuracy for p in curve if p.val_accuracy is not None]
            best = max(accs) if accs else None
        params = as_int(record.get("params"))
        if params is None:
            sizes = [p.params for p in curve if p.params is not None]
            params = sizes[-1] if sizes else None
        config = record.get("config")
        number = as_int(record.get("number"))
        return cls(
            trial_id=str(record.get("trial_id") or f"trial-{number}"),
            number=number,
            state=state,
            config=dict(config) if isinstance(config, Mapping) else {},
            curve=curve,
            start_time=as_float(record.get("start_time")),
            end_time=as_float(record.get("end_time")),
            error=record.get("error") or None,
            best_val_accuracy=best,
            params=params,
            node=_node(record),
            sizes={key: value for key in ("flops", "latency_ms") if (value := as_float(record.get(key))) is not None},
        )


@dataclass
class RunRecords:
    """Everything a report is built from. ``study`` is ``None`` when the journal is missing."""

    run_dir: Path
    spec: dict[str, Any]
    trials: list[Trial]
    summary: dict[str, Any] | None
    study: optuna.Study | None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run's name: from the spec or summary, else the folder name."""
        for source in (self.spec, self.summary or {}):
            for key in ("run_name", "run"):
                if source.get(key):
                    return str(source[key])
        return self.run_dir.name


def load_run(run_dir: str | Path) -> RunRecords:
    """Read a run folder. Raises ``RunFolderError`` when there is nothing to report on."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunFolderError(f"{run_dir}: no such folder; pass a run folder such as results/<run>")
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: not a folder; pass a run folder such as results/<run>")
    known = (TRIALS_FILE, JOURNAL_FILE, SUMMARY_FILE)
    if not any((run_dir / name).is_file() for name in known):
        raise RunFolderError(
            f"{run_dir}: no {', '.join(known)} here; pass a kdsearch run folder (results/<run>) "
            "of a search that has started"
        )

    problems: list[str] = []
    spec = _read_json_object(run_dir / SPEC_FILE, problems) or {}
    summary = _read_json_object(run_dir / SUMMARY_FILE, problems)
    study = _load_study(run_dir / JOURNAL_FILE, problems)

    trials: list[Trial] = []
    trials_path = run_dir / TRIALS_FILE
    raw = _read_json(trials_path, problems)
    if isinstance(raw, list):
        trials = [Trial.from_record(r) for r in raw if isinstance(r, Mapping)]
    elif raw is not None:
        problems.append(f"{TRIALS_FILE} is not a list of trials; ignored")
    if not trials_path.is_file() and study is not None:
        # An interrupted run may not have written trials.json yet; the journal mirrors the same trials.
        trials = trials_from_study(study)
        problems.append(
            f"no {TRIALS_FILE}: trials rebuilt from {JOURNAL_FILE} (validation accuracy per epoch only, no timings)"
        )
    trials.sort(key=lambda t: (t.number is None, t.number if t.number is not None else 0, t.trial_id))
    return RunRecords(run_dir=run_dir, spec=spec, trials=trials, summary=summary, study=study, problems=problems)


def trials_from_study(study: optuna.Study) -> list[Trial]:
    """Rebuild trial records from the Optuna study when ``trials.json`` is missing."""
    optuna_to_state = {
        optuna.trial.TrialState.COMPLETE: COMPLETE,
        optuna.trial.TrialState.FAIL: FAILED,
    }
    trials = []
    for ft in study.get_trials(deepcopy=False):
        values = ft.values or []
        state = ft.user_attrs.get("state") or optuna_to_state.get(ft.state, ft.state.name)
        start = ft.datetime_start.timestamp() if ft.datetime_start else None
        end = ft.datetime_complete.timestamp() if ft.datetime_complete else None
        if start is not None and end is not None and end - start < 1e-3:
            # A trial mirrored into the journal after it ran (create_trial + add_trial) gets the
            # mirroring time as both start and end: that is no measurement of when it ran.
            start = end = None
        trials.append(
            Trial(
                trial_id=str(ft.user_attrs.get("trial_id") or f"optuna-{ft.number}"),
                number=ft.number,
                state=str(state).upper(),
                config=dict(ft.params),
                curve=tuple(
                    CurvePoint(epoch=int(step), val_accuracy=float(v))
                    for step, v in sorted(ft.intermediate_values.items())
                ),
                start_time=start,
                end_time=end,
                best_val_accuracy=as_float(values[0]) if values else None,
                params=as_int(values[1]) if len(values) > 1 else None,
            )
        )
    return trials


def _load_study(path: Path, problems: list[str]) -> optuna.Study | None:
    if not path.is_file():
        problems.append(f"no {JOURNAL_FILE}: the Optuna figures are left out")
        return None
    try:
        # Reading a journal takes no lock and writes nothing (the backend only creates a missing file,
        # and we checked it exists), so loading is safe while a search is still appending to it.
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        names = [s.study_name for s in storage.get_all_studies()]
        if not names:
            problems.append(f"{JOURNAL_FILE} holds no study yet")
            return None
        name = STUDY_NAME if STUDY_NAME in names else names[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.load_study(study_name=name, storage=storage)
    except Exception as exc:  # a truncated or foreign journal must not stop the rest of the report
        problems.append(f"{JOURNAL_FILE} could not be read ({type(exc).__name__}: {exc})")
        return None


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} could not be read ({type(exc).__name__}: {exc})")
        return None


def _read_json_object(path: Path, problems: list[str]) -> dict[str, Any] | None:
    data = _read_json(path, problems)
    if data is not None and not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object; ignored")
        return None
    return data


def _node(record: Mapping[str, Any]) -> str | None:
    """Where a trial ran: the Ray node's IP and the start of its id (several nodes may share an IP)."""
    node_ip, node_id = record.get("node_ip"), record.get("node_id")
    if not node_ip and not node_id:
        return None
    return " ".join(str(part) for part in (node_ip, f"({str(node_id)[:8]})" if node_id else None) if part)


def _curve_point(p: Mapping[str, Any]) -> CurvePoint:
    return CurvePoint(
        epoch=as_int(p.get("epoch")) or 0,
        val_accuracy=as_float(p.get("val_accuracy")),
        val_loss=as_float(p.get("val_loss")),
        train_loss=as_float(p.get("train_loss")),
        params=as_int(p.get("params")),
        epoch_seconds=as_float(p.get("epoch_seconds")),
        time=as_float(p.get("time")),
    )


def as_float(value: Any) -> float | None:
    """A finite float, or None: JSON nulls, NaN and junk all mean 'not measured'."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def as_int(value: Any) -> int | None:
    """A finite number truncated to int, or None."""
    f = as_float(value)
    return int(f) if f is not None else None


def interval(value: Any) -> tuple[float, float] | None:
    """A ``[low, high]`` pair of finite numbers as a sorted tuple, else ``None``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = as_float(value[0]), as_float(value[1])
    if low is None or high is None:
        return None
    return (min(low, high), max(low, high))
