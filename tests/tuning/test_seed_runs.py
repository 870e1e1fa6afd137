"""The final stage's seed runs: a training asked for twice runs once, and only when it is the same training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import ray
import torch

from tests.tuning.conftest import SMALL, sleep_then_return
from trainers import Teacher, TensorSplits, build_student, load_dataset
from tuning import build_spec
from tuning.gain_curve import arch_of, curve_recipes, textbook_recipe
from tuning.seed_runs import SeedRun, SeedTasks, train_seed, training_key, wait_with_progress
from tuning.seed_store import SeedRunStore

# The winner of a search that kept the textbook KD terms, and a baseline recipe its own search found.
WINNER = {"family": "cnn", "depth": 1, "width": 4, "alpha": 0.9, "temperature": 4.0, "feature_loss": "none",
          "lr": 0.05, "weight_decay": 5e-4, "batch_size": 64, "distill_interval": 1, "init_from_teacher": False}
BASELINE = {"family": "cnn", "depth": 1, "width": 4, "alpha": 0.0, "lr": 0.03, "weight_decay": 1e-4,
            "batch_size": 64, "augment": False}


@pytest.fixture(scope="module")
def digits() -> TensorSplits:
    return load_dataset("digits", max_train_samples=200)


def test_the_key_resolves_what_a_configuration_leaves_out(digits: TensorSplits) -> None:
    # Digits trains students without augmentation by default: unset and False are the same training.
    assert training_key({**BASELINE, "augment": None}, 0, 3, digits) == training_key(BASELINE, 0, 3, digits)
    assert training_key({**BASELINE, "augment": True}, 0, 3, digits) != training_key(BASELINE, 0, 3, digits)
    assert training_key(BASELINE, 1, 3, digits) != training_key(BASELINE, 0, 3, digits)
    assert training_key(BASELINE, 0, 4, digits) != training_key(BASELINE, 0, 3, digits)
    assert training_key({**BASELINE, "lr": 0.031}, 0, 3, digits) != training_key(BASELINE, 0, 3, digits)


def test_the_textbook_arm_is_the_curves_distilled_arm_at_the_winners_size(digits: TensorSplits) -> None:
    """What the final stage shares is the same training: equal keys, and bit for bit the same weights."""
    textbook = textbook_recipe(WINNER, BASELINE)
    curve_kd, _ = curve_recipes(WINNER, BASELINE, arch_of(WINNER), teacher_family=None)
    assert textbook != curve_kd  # written differently (the curve's names the augmentation) ...
    assert training_key(textbook, 0, 2, digits) == training_key(curve_kd, 0, 2, digits)  # ... trained the same
    teacher = Teacher(build_student("cnn", 1, 8, 1, 10), "tiny")
    first, second = (train_seed(config, 0, 2, digits, teacher, threads=1) for config in (textbook, curve_kd))
    assert all(torch.equal(first.state_dict[name], second.state_dict[name]) for name in first.state_dict)


def test_a_training_asked_for_twice_is_launched_once(ray_cluster: None, tmp_path: Path, digits: TensorSplits) -> None:
    spec = build_spec(results_dir=str(tmp_path), **{**SMALL, "final_seeds": 2, "epochs": 1})
    tasks = SeedTasks(spec, digits, Teacher(build_student("cnn", 1, 8, 1, 10), "tiny"), 0.0)
    textbook = textbook_recipe(WINNER, BASELINE)
    curve_kd, curve_baseline = curve_recipes(WINNER, BASELINE, arch_of(WINNER), teacher_family=None)
    launched = tasks.launch(textbook)
    assert tasks.trainings == 2
    assert tasks.launch(curve_kd) == launched
    assert tasks.trainings == 2
    baseline_runs = tasks.launch(curve_baseline)
    assert tasks.trainings == 4 and set(baseline_runs).isdisjoint(launched)
    assert tasks.launch(BASELINE, seeds=[spec.seed + 1]) == baseline_runs[1:]
    assert tasks.trainings == 4
    assert [run.seed for run in ray.get(launched)] == tasks.seeds



def test_a_long_wait_says_how_many_trainings_are_done(ray_cluster: None) -> None:
    lines: list[str] = []
    references = [ray.put(9)] + [sleep_then_return.remote(0.6, value) for value in range(4)]  # 1 done already
    shared = references[2]  # one training two arms share: listed twice, counted once
    assert wait_with_progress([*references, shared], "gain-curve trainings", lines.append, every_s=0.25) == [
        9, 0, 1, 2, 3, 1]
    assert lines, "a wait of about a second with a line every 0.25 s said nothing"
    counts = []
    for line in lines:
        match = re.fullmatch(r"final stage: (\d)/5 gain-curve trainings done, 0:0\d so far(, about 0:0\d left)?", line)
        assert match, line
        counts.append(int(match.group(1)))
        # An estimate once a training finished during the wait: the one done before it says nothing of the rest.
        assert (match.group(2) is not None) == (counts[-1] > 1)
    assert counts == sorted(counts) and 1 <= counts[0] and counts[-1] < 5


def test_a_short_wait_says_nothing(ray_cluster: None) -> None:
    lines: list[str] = []
    assert wait_with_progress([ray.put(5), sleep_then_return.remote(0.0, 6)], "re-check trainings", lines.append,
                              every_s=30.0) == [5, 6]
    assert lines == []


def _weights_equal(first: SeedRun, second: SeedRun) -> bool:
    return first.state_dict.keys() == second.state_dict.keys() and all(
        torch.equal(first.state_dict[name], second.state_dict[name]) for name in first.state_dict)


def test_a_rerun_reads_back_the_trainings_and_finetunings_an_earlier_attempt_finished(
        ray_cluster: None, tmp_path: Path, digits: TensorSplits) -> None:
    spec = build_spec(results_dir=str(tmp_path), **{**SMALL, "final_seeds": 2, "epochs": 1, "finetune_epochs": 1})
    teacher = Teacher(build_student("cnn", 1, 8, 1, 10), "tiny")
    store = SeedRunStore(tmp_path / "final")
    first = SeedTasks(spec, digits, teacher, 0.0, store=store)
    trained = first.launch(WINNER)
    finetuned = first.get(first.finetune(trained), "seeds")
    assert (first.trainings, first.kept) == (2, 0)
    assert len(list(store.folder.glob("*.pt"))) == 4  # both trainings behind the finetunings, and the finetunings

    again = SeedTasks(spec, digits, teacher, 0.0, store=store)
    trained_again = again.launch(WINNER)
    finetuned_again = again.get(again.finetune(trained_again), "seeds")
    assert (again.trainings, again.kept) == (0, 4)  # nothing launched
    for before, after in zip([*ray.get(trained), *finetuned], [*ray.get(trained_again), *finetuned_again],
                             strict=True):
        assert (after.seed, after.val_accuracy, after.finetuned) == (before.seed, before.val_accuracy, before.finetuned)
        assert _weights_equal(before, after)

    # A file that cannot be read back whole is trained again, and written again.
    damaged = sorted(store.folder.glob("*.pt"))[0]
    damaged.write_bytes(damaged.read_bytes()[:100])
    third = SeedTasks(spec, digits, teacher, 0.0, store=store)
    third.get(third.finetune(third.launch(WINNER)), "seeds")
    assert third.kept == 3  # the other three; the damaged one was a training or a finetuning, launched again
    assert store.read(damaged.stem) is not None
