"""Tests of getting a teacher: train once and cache, reload, detect corrupt caches, load a user's checkpoint."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from trainers import (
    TeacherCheckpointError,
    TeacherRecipe,
    TeacherResult,
    TensorSplits,
    build_teacher,
    get_teacher,
    load_dataset,
    load_teacher_checkpoint,
)
from trainers.files import safe_torch_load
from trainers.teacher_training import (
    CACHE_FORMAT,
    TRAINING_SUFFIX,
    TeacherTrainingStopped,
    state_digest,
    teacher_fingerprint,
)

NAME = "resnet-large"
RECIPE = TeacherRecipe(epochs=1)


@pytest.fixture(scope="module")
def data() -> TensorSplits:
    return load_dataset("digits", max_train_samples=300)


@pytest.fixture(scope="module")
def trained(data: TensorSplits, tmp_path_factory: pytest.TempPathFactory) -> TeacherResult:
    """A teacher trained (one epoch) into a module-wide cache folder."""
    return get_teacher(NAME, data, tmp_path_factory.mktemp("cache") / "results" / "teachers", RECIPE,
                       log=lambda _: None)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def _same_weights(first: nn.Module, second: nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def _temp_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------------------
# get_teacher: train once, then cache
# ---------------------------------------------------------------------------------------------------------


def test_get_teacher_trains_then_caches_then_loads(data: TensorSplits, tmp_path: Path) -> None:
    cache_dir = tmp_path / "results" / "teachers"
    log = _Log()
    first = get_teacher(NAME, data, cache_dir, RECIPE, log=log)
    expected = cache_dir / f"{teacher_fingerprint(NAME, data, RECIPE)}.pt"
    assert first.source == "trained" and first.name == NAME
    assert first.path == expected and expected.is_file()
    assert sorted(cache_dir.iterdir()) == [expected]  # no temp file left behind
    assert any("cached at" in line and str(expected) in line for line in log.lines)
    assert 0.0 <= first.val_accuracy <= 1.0 and first.seconds > 0

    payload = safe_torch_load(expected)  # weights_only: tensors and plain values only
    assert payload["format"] == CACHE_FORMAT and payload["arch"] == first.model.arch
    assert payload["fingerprint"] == expected.stem
    assert payload["digest"] == state_digest(payload["state_dict"])
    assert payload["val_accuracy"] == first.val_accuracy

    started = time.perf_counter()
    second = get_teacher(NAME, data, cache_dir, RECIPE, log=log)
    elapsed = time.perf_counter() - started
    assert second.source == "cache" and second.path == expected
    assert elapsed < 1.0 and second.seconds < 1.0
    assert _same_weights(first.model, second.model)
    assert second.val_accuracy == first.val_accuracy
    assert any("loaded from cache" in line for line in log.lines)
    assert sorted(cache_dir.iterdir()) == [expected]


def test_training_prints_one_eta_line_after_the_first_epoch(data: TensorSplits, tmp_path: Path) -> None:
    log = _Log()
    get_teacher("cnn-large", data, tmp_path / "teachers", TeacherRecipe(epochs=3), log=log)
    eta = [index for index, line in enumerate(log.lines) if "ETA" in line]
    first_epoch = next(index for index, line in enumerate(log.lines) if ": epoch 1/3 " in line)
    assert eta == [first_epoch + 1]  # one line, right after epoch 1
    assert "remaining 2 epochs" in log.lines[eta[0]]


def test_a_one_epoch_teacher_prints_no_eta(data: TensorSplits, tmp_path: Path) -> None:
    log = _Log()
    get_teacher("cnn-large", data, tmp_path / "teachers", RECIPE, log=log)
    assert not any("ETA" in line for line in log.lines)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a torch file at all\x00\xff" * 100)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip_bytes(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = bytes(b ^ 0xFF for b in raw[middle:middle + 64])
    path.write_bytes(bytes(raw))


def _other_fingerprint(path: Path) -> None:
    payload = safe_torch_load(path)
    torch.save({**payload, "fingerprint": "0" * 16}, path)


def _wrong_state_dict(path: Path) -> None:
    payload = safe_torch_load(path)
    other = build_teacher("cnn-large", 1, 10)
    torch.save({**payload, "state_dict": other.state_dict()}, path)


def _missing_keys(path: Path) -> None:
    torch.save({"format": CACHE_FORMAT, "fingerprint": path.stem}, path)


def _not_a_dict(path: Path) -> None:
    torch.save([1, 2, 3], path)


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "garbage": _garbage,
    "empty": _empty,
    "flipped-bytes": _flip_bytes,
    "other-fingerprint": _other_fingerprint,
    "wrong-state-dict": _wrong_state_dict,
    "missing-keys": _missing_keys,
    "not-a-dict": _not_a_dict,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_cache_is_reported_and_retrained_never_used(
    corruption: str, data: TensorSplits, trained: TeacherResult, tmp_path: Path
) -> None:
    assert trained.path is not None
    cache_dir = tmp_path / "teachers"
    cache_dir.mkdir()
    path = cache_dir / trained.path.name
    shutil.copyfile(trained.path, path)
    CORRUPTIONS[corruption](path)
    log = _Log()
    result = get_teacher(NAME, data, cache_dir, RECIPE, log=log)
    assert result.source == "trained"
    assert any("unusable" in line and str(path) in line and "retraining" in line for line in log.lines), log.lines
    # Retrained with the same seed: the same weights as the first training, not whatever was in the file.
    assert _same_weights(result.model, trained.model)
    # The cache was rewritten and is good again.
    again = get_teacher(NAME, data, cache_dir, RECIPE, log=log)
    assert again.source == "cache" and _same_weights(again.model, trained.model)
    assert _temp_files(cache_dir) == []


def test_fingerprint_changes_with_the_recipe_the_teacher_and_the_data(data: TensorSplits) -> None:
    base = teacher_fingerprint(NAME, data, RECIPE)
    assert base == teacher_fingerprint(NAME, data, TeacherRecipe(epochs=1))
    assert len(base) == 16 and int(base, 16) >= 0
    variants = {
        "epochs": teacher_fingerprint(NAME, data, dataclasses.replace(RECIPE, epochs=2)),
        "lr": teacher_fingerprint(NAME, data, dataclasses.replace(RECIPE, lr=0.1)),
        "weight_decay": teacher_fingerprint(NAME, data, dataclasses.replace(RECIPE, weight_decay=0.0)),
        "batch_size": teacher_fingerprint(NAME, data, dataclasses.replace(RECIPE, batch_size=32)),
        "seed": teacher_fingerprint(NAME, data, dataclasses.replace(RECIPE, seed=1)),
        "teacher": teacher_fingerprint("cnn-large", data, RECIPE),
        "data": teacher_fingerprint(NAME, load_dataset("digits", max_train_samples=301), RECIPE),
        "split seed": teacher_fingerprint(NAME, load_dataset("digits", max_train_samples=300, seed=1), RECIPE),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)


def test_fingerprint_ignores_what_only_describes_the_dataset(data: TensorSplits) -> None:
    """A cached teacher survives a new descriptive field; an augmentation change still retrains it."""
    base = teacher_fingerprint(NAME, data, RECIPE)
    described = dataclasses.replace(data.info, class_names=tuple(str(label) for label in range(10)),
                                    student_augment=not data.info.student_augment)
    assert teacher_fingerprint(NAME, dataclasses.replace(data, info=described), RECIPE) == base
    flipped = dataclasses.replace(data.info, horizontal_flip=not data.info.horizontal_flip)
    assert teacher_fingerprint(NAME, dataclasses.replace(data, info=flipped), RECIPE) != base


def test_another_recipe_gets_its_own_cache_file(data: TensorSplits, trained: TeacherResult, tmp_path: Path) -> None:
    assert trained.path is not None
    shutil.copyfile(trained.path, tmp_path / trained.path.name)
    other = get_teacher(NAME, data, tmp_path, dataclasses.replace(RECIPE, seed=1), log=lambda _: None)
    assert other.source == "trained" and other.path != tmp_path / trained.path.name
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([trained.path.name, other.path.name])
    assert not _same_weights(other.model, trained.model)


# ---------------------------------------------------------------------------------------------------------
# a training in progress: stopped, saved, gone on with
# ---------------------------------------------------------------------------------------------------------

PROGRESS_RECIPE = TeacherRecipe(epochs=5)


def _stop_after(epoch: int) -> Callable[[], bool]:
    """A ``stop_requested`` that is true when asked for the ``epoch``-th time (after that epoch)."""
    asked = [0]

    def stop_requested() -> bool:
        asked[0] += 1
        return asked[0] == epoch

    return stop_requested


@pytest.fixture(scope="module")
def uninterrupted(data: TensorSplits, tmp_path_factory: pytest.TempPathFactory) -> TeacherResult:
    return get_teacher("cnn-large", data, tmp_path_factory.mktemp("whole"), PROGRESS_RECIPE, log=lambda _: None)


def test_a_stopped_teacher_training_goes_on_to_the_weights_of_an_uninterrupted_one(
        data: TensorSplits, uninterrupted: TeacherResult, tmp_path: Path) -> None:
    key = teacher_fingerprint("cnn-large", data, PROGRESS_RECIPE)
    log = _Log()
    with pytest.raises(TeacherTrainingStopped) as stopped:
        get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=log, stop_requested=_stop_after(2))
    in_progress = tmp_path / f"{key}{TRAINING_SUFFIX}"
    assert (stopped.value.epoch, stopped.value.epochs, stopped.value.path) == (2, 5, in_progress)
    assert sorted(tmp_path.iterdir()) == [in_progress]  # saved, and nothing cached yet
    assert not any(": epoch 3/5 " in line for line in log.lines)

    log = _Log()
    resumed = get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=log)
    assert any(f"going on from epoch 2/5, saved by an earlier attempt in {in_progress}" in line for line in log.lines)
    assert not any(": epoch 2/5 " in line for line in log.lines) and any(": epoch 3/5 " in line for line in log.lines)
    eta = [line for line in log.lines if "ETA" in line]
    assert len(eta) == 1 and "remaining 2 epochs" in eta[0]  # after epoch 3, this attempt's first
    assert resumed.source == "trained" and _same_weights(resumed.model, uninterrupted.model)
    assert resumed.val_accuracy == uninterrupted.val_accuracy
    assert sorted(tmp_path.iterdir()) == [tmp_path / f"{key}.pt"]  # the training file is gone once cached


def test_a_training_in_progress_is_saved_when_due_and_survives_a_crash(
        data: TensorSplits, uninterrupted: TeacherResult, tmp_path: Path) -> None:
    """Saved at every epoch's end when due (here: always); a crash after epoch 3 loses nothing before it."""
    def crash_after_epoch_3() -> bool:
        crash_after_epoch_3.asked += 1  # type: ignore[attr-defined]
        if crash_after_epoch_3.asked == 3:  # type: ignore[attr-defined]
            raise RuntimeError("killed")
        return False

    crash_after_epoch_3.asked = 0  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="killed"):
        get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=lambda _: None,
                    stop_requested=crash_after_epoch_3, save_every_s=0.0)
    in_progress = next(tmp_path.glob(f"*{TRAINING_SUFFIX}"))
    assert safe_torch_load(in_progress)["training"]["epoch"] == 2  # epoch 3 was not saved: the crash came first
    log = _Log()
    resumed = get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=log)
    assert any("going on from epoch 2/5" in line for line in log.lines)
    assert _same_weights(resumed.model, uninterrupted.model)


def test_a_cached_teacher_removes_a_training_of_it_left_in_progress(
        data: TensorSplits, uninterrupted: TeacherResult, tmp_path: Path) -> None:
    """Another driver cached the teacher while this one's training of it was stopped: the cache is used and the
    training file, which nothing needs any more, goes."""
    with pytest.raises(TeacherTrainingStopped) as stopped:
        get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=lambda _: None, stop_requested=_stop_after(1))
    assert uninterrupted.path is not None
    shutil.copy(uninterrupted.path, tmp_path / uninterrupted.path.name)
    loaded = get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=lambda _: None)
    assert loaded.source == "cache" and not stopped.value.path.exists()


@pytest.mark.parametrize("damage", ["truncated", "another teacher's", "flipped weights"])
def test_an_unusable_training_in_progress_is_reported_and_the_training_starts_over(
        damage: str, data: TensorSplits, uninterrupted: TeacherResult, tmp_path: Path) -> None:
    with pytest.raises(TeacherTrainingStopped) as stopped:
        get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=lambda _: None, stop_requested=_stop_after(3))
    in_progress = stopped.value.path
    if damage == "truncated":
        _truncate(in_progress)
    else:
        saved = safe_torch_load(in_progress)
        if damage == "another teacher's":
            saved["fingerprint"] = "0" * 16
        else:
            weight = next(iter(saved["training"]["student"].values()))
            weight.view(-1)[0] += 1.0
        torch.save(saved, in_progress)
    log = _Log()
    again = get_teacher("cnn-large", data, tmp_path, PROGRESS_RECIPE, log=log)
    unusable = [line for line in log.lines if " is unusable (" in line]
    assert len(unusable) == 1 and str(in_progress) in unusable[0] and "from epoch 0" in unusable[0]
    assert any(": epoch 1/5 " in line for line in log.lines)
    assert _same_weights(again.model, uninterrupted.model)
    assert not in_progress.exists()


# ---------------------------------------------------------------------------------------------------------
# load_teacher_checkpoint: a user's file
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch_form", ["name", "arch-dict"])
def test_a_valid_checkpoint_loads(arch_form: str, data: TensorSplits, trained: TeacherResult,
                                  tmp_path: Path) -> None:
    path = tmp_path / "my_teacher.pt"
    arch = NAME if arch_form == "name" else trained.model.arch
    torch.save({"arch": arch, "state_dict": trained.model.state_dict()}, path)
    result = load_teacher_checkpoint(path, data)
    assert result.source == "checkpoint" and result.path == path and result.name == NAME
    assert _same_weights(result.model, trained.model)
    assert not result.model.training
    assert result.val_accuracy == pytest.approx(trained.val_accuracy)


def _bare_state_dict(path: Path, trained: TeacherResult) -> None:
    torch.save(trained.model.state_dict(), path)


def _no_state_dict(path: Path, trained: TeacherResult) -> None:
    torch.save({"arch": NAME}, path)


def _wrong_num_classes(path: Path, trained: TeacherResult) -> None:
    torch.save({"arch": NAME, "state_dict": build_teacher(NAME, 1, 5).state_dict()}, path)


def _wrong_channels(path: Path, trained: TeacherResult) -> None:
    torch.save({"arch": NAME, "state_dict": build_teacher(NAME, 3, 10).state_dict()}, path)


def _another_architecture(path: Path, trained: TeacherResult) -> None:
    torch.save({"arch": NAME, "state_dict": build_teacher("mobilenet-large", 1, 10).state_dict()}, path)


def _unknown_arch(path: Path, trained: TeacherResult) -> None:
    torch.save({"arch": "resnet-huge", "state_dict": trained.model.state_dict()}, path)


def _pickled_model(path: Path, trained: TeacherResult) -> None:
    torch.save(trained.model, path)  # a whole pickled module: refused by weights_only loading


def _garbage_checkpoint(path: Path, trained: TeacherResult) -> None:
    _garbage(path)


def _truncated_checkpoint(path: Path, trained: TeacherResult) -> None:
    torch.save({"arch": NAME, "state_dict": trained.model.state_dict()}, path)
    _truncate(path)


BAD_CHECKPOINTS: dict[str, tuple[Callable[[Path, TeacherResult], None], str]] = {
    "garbage": (_garbage_checkpoint, "is corrupt or truncated, or not a model file"),
    "truncated": (_truncated_checkpoint, "is corrupt or truncated, or not a model file"),
    "pickled-model": (_pickled_model, "pass --trust-checkpoint if you trust its source"),
    "bare-state-dict": (_bare_state_dict, "is a state_dict without its architecture"),
    "no-state-dict": (_no_state_dict, "'arch' and 'state_dict' keys"),
    "wrong-num-classes": (_wrong_num_classes, "does not match architecture resnet-large with 10 classes"),
    "wrong-channels": (_wrong_channels, "does not match architecture resnet-large"),
    "another-architecture": (_another_architecture, "does not match architecture resnet-large"),
    "unknown-arch": (_unknown_arch, "unknown teacher 'resnet-huge'"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_a_bad_checkpoint_raises_naming_the_file(case: str, data: TensorSplits, trained: TeacherResult,
                                                 tmp_path: Path) -> None:
    write, message = BAD_CHECKPOINTS[case]
    path = tmp_path / f"user_{case}.pt"
    write(path, trained)
    with pytest.raises(TeacherCheckpointError) as raised:
        load_teacher_checkpoint(path, data)
    text = str(raised.value)
    assert str(path) in text
    assert message in text
    assert "\n" not in text  # one line for the command to print
    assert isinstance(raised.value, ValueError)


def test_a_missing_checkpoint_raises_naming_the_file(data: TensorSplits, tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "teacher.pt"
    with pytest.raises(TeacherCheckpointError, match="does not exist") as raised:
        load_teacher_checkpoint(path, data)
    assert str(path) in str(raised.value)
    with pytest.raises(TeacherCheckpointError, match="does not exist"):
        load_teacher_checkpoint(tmp_path, data)  # a folder is not a checkpoint file


def test_training_stops_at_the_first_perfect_validation_epoch(data: TensorSplits, tmp_path: Path) -> None:
    """No later epoch can replace a perfect one (the earliest best is kept), so the rest are not run."""
    # Two classes, each a constant image: any teacher separates them within an epoch or two.
    labels = data.labels % 2
    # Pixels at 0 or at full scale, normalised to -1 and +1.
    images = (labels * data.pixel_max).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, *data.info.input_shape)
    easy = dataclasses.replace(data, info=dataclasses.replace(data.info, num_classes=2), labels=labels,
                               images=images.clone(), mean=(0.5,), std=(0.5,))
    log = _Log()
    result = get_teacher("cnn-large", easy, tmp_path / "teachers", TeacherRecipe(epochs=20), log=log)
    epochs = [line for line in log.lines if ": epoch " in line]
    stop = [line for line in log.lines if "stopping" in line]
    assert result.val_accuracy == 1.0
    assert len(epochs) < 20
    assert "val accuracy 1.0000" in epochs[-1] and all("val accuracy 1.0000" not in line for line in epochs[:-1])
    assert stop == [f"teacher cnn-large: validation accuracy 1.0000 at epoch {len(epochs)}: no later epoch can be "
                    f"kept, stopping {20 - len(epochs)} epochs early"]
