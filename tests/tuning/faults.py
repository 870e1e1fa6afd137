"""Test-only fault injection: a trainable that wraps the production one and fails the trials a test picks.

A trial fails when its ``weight_decay`` is one of ``FAULT_WEIGHT_DECAYS`` (values no default space holds):
the wrapper swaps the training loop for one that raises, so the failure goes through the production
trainable's own error handling. Every call of the wrapper is logged (``calls``), so a test can tell
whether Ray retried a trial.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from ray import tune

import tuning.trainable
from trainers import NonFiniteLossError

FAULT_WEIGHT_DECAYS = {"raise": 0.000123, "nan": 0.000234, "oom": 0.000345, "config": 0.000456}
CALL_LOG = Path(tempfile.gettempdir()) / f"kdsearch-test-fault-calls-{os.getuid()}.log"


class InjectedFault(RuntimeError):
    """A transient-looking failure: Ray's retries are meant for these."""


def _failing_distill(kind: str) -> Any:
    def distill(*args: Any, **kwargs: Any) -> None:
        if kind == "nan":
            raise NonFiniteLossError("injected: loss became nan")
        if kind == "oom":
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        if kind == "config":
            raise ValueError("injected: a configuration the trainer refuses")
        raise InjectedFault("injected failure")
    return distill


def faulty_trial(config: dict[str, Any], **kwargs: Any) -> None:
    """``tuning.trainable.run_trial``, failing as ``FAULT_WEIGHT_DECAYS`` says for the picked configs."""
    kinds = {value: kind for kind, value in FAULT_WEIGHT_DECAYS.items()}
    kind = kinds.get(config.get("weight_decay"))
    with CALL_LOG.open("a") as log:
        log.write(f"{tune.get_context().get_trial_id()} {kind}\n")
    if kind is None:
        return tuning.trainable.run_trial(config, **kwargs)
    with mock.patch.object(tuning.trainable, "distill", _failing_distill(kind)):
        return tuning.trainable.run_trial(config, **kwargs)


def calls() -> list[tuple[str, str]]:
    """``(trial_id, kind)`` of every call of ``faulty_trial`` since the log was cleared."""
    if not CALL_LOG.exists():
        return []
    return [tuple(line.split()) for line in CALL_LOG.read_text().splitlines()]  # type: ignore[misc]
