"""Fixtures for the search layer: a real local Ray with 2 CPUs, and small real searches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import torch

from trainers import DistillConfig, build_student, distill, load_dataset
from tuning import build_spec, run
from tuning.runner import RunOutcome

# Tiny but real: Ray Tune + OptunaSearch + the distillation loop on digits.
SMALL = {"epochs": 2, "scheduler": "none", "top_k": 1, "final_seeds": 1, "finetune_epochs": 0,
         "max_train_samples": 300, "baseline_budget": 0, "recipe_budget": 0, "gain_curve": 0,
         "rounds": 1}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One Ray instance for the session's search tests (starting Ray costs seconds)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def inject_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches of this test run the fault-injecting trainable of ``tests.tuning.faults``."""
    import tuning.tuner
    from tests.tuning import faults

    faults.CALL_LOG.unlink(missing_ok=True)
    monkeypatch.setattr(tuning.tuner, "run_trial", faults.faulty_trial)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder shared by the tests so the teacher is trained once per session."""
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small teacher trained for a few epochs, as a user's ``--teacher-checkpoint`` file.

    Most search tests use it so they do not pay for training the default teacher; the default
    teacher's train-and-cache path is exercised by ``basic_run`` and the trainers tests.
    """
    data = load_dataset("digits", max_train_samples=SMALL["max_train_samples"])
    model = build_student("cnn", 1, 32, data.info.input_shape[0], data.info.num_classes)
    distill(DistillConfig(alpha=0.0, epochs=5), data, student=model)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.save({"arch": model.arch, "state_dict": model.state_dict()}, path)
    return str(path)


def small_search(results_dir: Path, run_name: str, **flags: Any) -> RunOutcome:
    """Run a small real search into ``results_dir/run_name``."""
    spec = build_spec(results_dir=str(results_dir), run_name=run_name, **{**SMALL, **flags})
    return run(spec, log=lambda message: None)


@ray.remote(num_cpus=1)
def sleep_then_return(seconds: float, value: int) -> int:
    """A Ray task that takes ``seconds``: something for the final stage's waits to wait on."""
    time.sleep(seconds)
    return value
