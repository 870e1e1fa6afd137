"""Trial checkpoints: a truncated, foreign or incomplete state file restarts the trial instead of failing it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers import DistillConfig, distill, load_dataset
from trainers.distill import TRAINING_STATE_KEYS
from trainers.files import atomic_torch_save
from tuning.trainable import read_trial_state


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_dataset("digits", max_train_samples=200)
    states = []
    distill(DistillConfig(alpha=0.0, epochs=1), data, on_epoch=lambda report, get_state: states.append(get_state()))
    path = tmp_path_factory.mktemp("state") / "trial_state.pt"
    atomic_torch_save(states[-1], path)
    return path


def test_a_good_state_loads(saved_state: Path) -> None:
    state = read_trial_state(saved_state)
    assert state is not None and state["epoch"] == 1
    # One definition of the format: what the trainer writes is exactly what a checkpoint check expects.
    assert set(state) == TRAINING_STATE_KEYS


def test_a_state_without_the_augmentation_generator_is_incomplete(saved_state: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    state = torch.load(saved_state, weights_only=True)
    del state["augment_generator"]  # loading needs it: a check that skipped it would pass a state that fails later
    torch.save(state, tmp_path / "trial_state.pt")
    assert read_trial_state(tmp_path / "trial_state.pt") is None
    assert "missing augment_generator" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing keys", "absent"])
def test_a_damaged_state_is_named_and_dropped(damage: str, saved_state: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trial_state.pt"
    if damage == "truncate":
        path.write_bytes(saved_state.read_bytes()[: saved_state.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 50)
    elif damage == "missing keys":
        torch.save({"epoch": 3}, path)
    assert read_trial_state(path) is None
    message = capsys.readouterr().out
    assert str(path) in message and "restarting this trial from epoch 0" in message
