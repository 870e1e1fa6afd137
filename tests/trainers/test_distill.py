"""Tests of the distillation loop: reporting, determinism, KD scheduling, online teachers, resume, finetuning."""

from __future__ import annotations

import dataclasses
import importlib
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spaces import PARAMETERS
from trainers import (
    DistillConfig,
    EpochReport,
    NonFiniteLossError,
    Teacher,
    TensorSplits,
    build_student,
    build_teacher,
    count_parameters,
    distill,
    evaluate,
    finetune,
    initial_student,
    load_dataset,
)
from trainers.data import augment_views
from trainers.files import atomic_torch_save, safe_torch_load
from trainers.teacher import TeacherSignal

# The smallest student (cnn, depth 1, width 8) on a 300-image digits split: 5 optimizer steps per epoch.
SMALL = DistillConfig(family="cnn", depth=1, width=8, alpha=0.5, temperature=4.0, epochs=2, batch_size=64)
SMALL_TRAIN = 300
STEPS_PER_EPOCH = math.ceil(SMALL_TRAIN / SMALL.batch_size)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits() -> TensorSplits:
    """The whole digits dataset (1077 training images)."""
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small() -> TensorSplits:
    """Digits with a stratified 300-image training split (validation and test as in ``digits``)."""
    return load_dataset("digits", max_train_samples=SMALL_TRAIN)


@pytest.fixture(scope="module")
def augmented(small: TensorSplits) -> TensorSplits:
    """``small`` with a random crop (padding 1): every batch differs, so a teacher must run online."""
    return dataclasses.replace(small, info=dataclasses.replace(small.info, crop_padding=1, student_augment=True))


@pytest.fixture(scope="module")
def teacher_model(digits: TensorSplits) -> nn.Module:
    """A cnn (depth 1, width 16) trained from labels for 5 epochs: a cheap but competent teacher."""
    config = DistillConfig(family="cnn", depth=1, width=16, alpha=0.0, epochs=5, seed=123)
    model = distill(config, digits).model
    accuracy, _ = evaluate(model, digits.val_x[:], digits.val_y)
    assert accuracy > 0.8, f"the test teacher did not train ({accuracy:.3f})"
    return model


@pytest.fixture(scope="module")
def cached_teacher(teacher_model: nn.Module, small: TensorSplits) -> Teacher:
    """The teacher with its outputs on ``small``'s training split cached."""
    return Teacher.with_cached_outputs(teacher_model, "cnn-test", small.train_x[:])


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _same_weights(first: nn.Module | dict[str, torch.Tensor], second: nn.Module | dict[str, torch.Tensor]) -> bool:
    a = first if isinstance(first, dict) else first.state_dict()
    b = second if isinstance(second, dict) else second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def _without_time(history: list[EpochReport]) -> list[dict[str, Any]]:
    return [{key: value for key, value in report.to_dict().items() if key != "epoch_seconds"} for report in history]


def _expected_kd_steps(epochs: int, steps_per_epoch: int, interval: int) -> list[int]:
    """KD steps per epoch when the KD terms run on global optimizer steps 0, k, 2k, ..."""
    return [sum(1 for step in range((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch) if step % interval == 0)
            for epoch in range(1, epochs + 1)]


class _SignalCounter:
    """Wraps ``teacher.signal`` (an instance attribute shadows the method) and counts its calls."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher, self.original, self.calls = teacher, teacher.signal, 0
        self.indices_given: list[bool] = []

    def __call__(self, images: torch.Tensor, indices: torch.Tensor | None, feature_loss: str,
                 views: torch.Tensor | None = None) -> TeacherSignal:
        self.calls += 1
        # Rows of the plain images' cache can answer only un-augmented batches (views is None).
        self.indices_given.append(indices is not None and views is None)
        return self.original(images, indices, feature_loss, views=views)

    def __enter__(self) -> _SignalCounter:
        self.teacher.signal = self  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        del self.teacher.signal


class _StemInputs:
    """Records the input of ``model.stem`` on every forward (training-mode forwards only if asked)."""

    def __init__(self, model: nn.Module, training_only: bool) -> None:
        self.inputs: list[torch.Tensor] = []
        self.model, self.training_only = model, training_only
        self.handle = model.stem.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if not self.training_only or self.model.training:
            self.inputs.append(args[0].detach().clone())

    def remove(self) -> None:
        self.handle.remove()


# ---------------------------------------------------------------------------------------------------------
# DistillConfig
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("alpha", -0.1), ("alpha", 1.5), ("temperature", 0.0), ("feature_loss", "gram"), ("beta", -1.0),
     ("depth", 0), ("width", 0), ("batch_size", 0), ("distill_interval", 0), ("epochs", 0), ("lr", 0.0),
     ("weight_decay", -1e-4), ("batch_size", 64.0), ("init_from_teacher", 1), ("augment", "yes"),
     ("alpha", float("nan")), ("lr", float("inf"))],
)
def test_config_rejects_invalid_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DistillConfig(**{field: value})


@pytest.mark.parametrize("name", [name for name in PARAMETERS if name != "family"])
def test_config_limits_are_the_parameter_tables(name: str) -> None:
    """The trainer refuses what the search space refuses, with the table's own words."""
    parameter = PARAMETERS[name]
    bad = {bool: 1, str: "bogus"}.get(parameter.kind, (parameter.low or 0) - 1)
    with pytest.raises(ValueError) as raised:
        DistillConfig(**{name: bad})
    assert str(raised.value) == f"{name} must be {parameter.limits}, got {bad!r}"


def test_config_accepts_the_alpha_bounds() -> None:
    assert DistillConfig(alpha=0.0).alpha == 0.0
    assert DistillConfig(alpha=1.0).alpha == 1.0


def test_from_mapping_rejects_unknown_keys_and_round_trips() -> None:
    with pytest.raises(ValueError, match=r"unknown DistillConfig keys \['bogus', 'tempreature'\]"):
        DistillConfig.from_mapping({"alpha": 0.3, "bogus": 1, "tempreature": 2.0})
    config = DistillConfig(family="resnet", alpha=0.3, feature_loss="hint", beta=2.0, distill_interval=4)
    assert DistillConfig.from_mapping(config.to_dict()) == config
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig.from_mapping({"alpha": 2.0})


def test_without_teacher_keeps_the_recipe_and_drops_every_teacher_term() -> None:
    config = DistillConfig(family="resnet", depth=2, width=24, alpha=0.8, temperature=6.0, feature_loss="attention",
                           beta=50.0, lr=0.02, batch_size=32, distill_interval=2, init_from_teacher=True, epochs=7,
                           seed=3)
    assert config.uses_teacher and config.uses_features
    baseline = config.without_teacher()
    assert not baseline.uses_teacher and not baseline.uses_features
    assert (baseline.alpha, baseline.feature_loss, baseline.beta, baseline.init_from_teacher) == (0.0, "none", 0.0,
                                                                                                  False)
    unchanged = ("family", "depth", "width", "temperature", "lr", "weight_decay", "batch_size", "distill_interval",
                 "epochs", "seed", "momentum")
    assert all(getattr(baseline, name) == getattr(config, name) for name in unchanged)


@pytest.mark.parametrize(
    "config",
    [DistillConfig(alpha=0.5), DistillConfig(alpha=0.0, feature_loss="attention", beta=1.0),
     DistillConfig(alpha=0.0, init_from_teacher=True)],
    ids=["kl", "feature", "init"],
)
def test_distilling_without_a_teacher_is_an_error(config: DistillConfig, small: TensorSplits) -> None:
    with pytest.raises(ValueError, match="no teacher"):
        distill(config, small)


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


def test_on_epoch_receives_every_field_each_epoch(small: TensorSplits, cached_teacher: Teacher) -> None:
    received: list[tuple[EpochReport, dict[str, Any]]] = []
    config = dataclasses.replace(SMALL, epochs=3)
    result = distill(config, small, cached_teacher, on_epoch=lambda report, get_state: received.append(
        (report, get_state())))
    assert [report.epoch for report, _ in received] == [1, 2, 3]
    assert [report for report, _ in received] == result.history
    for report, state in received:
        assert set(report.to_dict()) >= {"epoch", "val_accuracy", "val_loss", "train_loss", "params",
                                         "epoch_seconds"}
        assert 0.0 <= report.val_accuracy <= 1.0
        assert math.isfinite(report.val_loss) and report.val_loss > 0
        assert math.isfinite(report.train_loss) and report.train_loss > 0
        assert report.params == count_parameters(result.model)
        assert report.epoch_seconds > 0
        assert report.kd_steps == STEPS_PER_EPOCH
        assert state["epoch"] == report.epoch and state["step"] == report.epoch * STEPS_PER_EPOCH
    accuracy, loss = evaluate(result.model, small.val_x[:], small.val_y)
    assert (accuracy, loss) == pytest.approx((result.history[-1].val_accuracy, result.history[-1].val_loss))
    assert result.best_val_accuracy == max(report.val_accuracy for report in result.history)


@pytest.mark.parametrize("use_augmented", [False, True], ids=["cached", "augmented"])
def test_same_seed_gives_identical_weights_and_history(use_augmented: bool, request: pytest.FixtureRequest,
                                                       cached_teacher: Teacher) -> None:
    data: TensorSplits = request.getfixturevalue("augmented" if use_augmented else "small")
    config = dataclasses.replace(SMALL, feature_loss="attention", beta=10.0, seed=7)
    first = distill(config, data, cached_teacher)
    second = distill(config, data, cached_teacher)
    assert _same_weights(first.model, second.model)
    assert _without_time(first.history) == _without_time(second.history)
    other = distill(dataclasses.replace(config, seed=8), data, cached_teacher)
    assert not _same_weights(first.model, other.model)
    assert _without_time(first.history) != _without_time(other.history)


@pytest.mark.parametrize(("family", "depth", "width", "feature_loss"),
                         [("cnn", 2, 4, "hint"), ("mobilenet", 2, 3, "none"), ("resnet", 1, 4, "attention")])
def test_the_foreach_update_trains_what_the_per_parameter_loop_trains(
        family: str, depth: int, width: int, feature_loss: str, small: TensorSplits, cached_teacher: Teacher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's SGD updates every parameter (and a hint's regressor) in one call; torch's default on the CPU
    loops over them. The arithmetic is the same, so the weights must be too, bit for bit."""
    config = dataclasses.replace(SMALL, family=family, depth=depth, width=width, feature_loss=feature_loss,
                                 beta=5.0 if feature_loss != "none" else 0.0, weight_decay=1e-3)
    foreach = distill(config, small, cached_teacher)
    loop_module = importlib.import_module("trainers.distill._loop")
    student = initial_student(config, small, cached_teacher)
    assert loop_module.TrainingLoop(config, small, cached_teacher, student).optimizer.defaults["foreach"] is True
    sgd = torch.optim.SGD
    optimizers: list[torch.optim.SGD] = []

    def per_parameter_sgd(*args: Any, **kwargs: Any) -> torch.optim.SGD:
        optimizers.append(sgd(*args, **{**kwargs, "foreach": False}))
        return optimizers[-1]

    monkeypatch.setattr(loop_module.torch.optim, "SGD", per_parameter_sgd)
    looped = distill(config, small, cached_teacher)
    assert [optimizer.defaults["foreach"] for optimizer in optimizers] == [False]
    assert _same_weights(foreach.model, looped.model)
    assert _without_time(foreach.history) == _without_time(looped.history)


def test_kd_with_a_teacher_learns(digits: TensorSplits, teacher_model: nn.Module) -> None:
    teacher = Teacher.with_cached_outputs(teacher_model, "cnn-test", digits.train_x[:])
    config = DistillConfig(family="cnn", depth=1, width=8, alpha=0.7, temperature=4.0, epochs=4)
    result = distill(config, digits, teacher)
    history = result.history
    assert history[-1].val_accuracy > 0.7  # chance is 0.1
    assert history[-1].train_loss < 0.7 * history[0].train_loss
    assert history[-1].val_loss < history[0].val_loss
    test_accuracy, _ = evaluate(result.model, digits.test_x[:], digits.test_y)
    assert test_accuracy > 0.7


@pytest.mark.parametrize("interval", [1, 2, 3, 4])
def test_distill_interval_runs_the_kd_terms_on_every_kth_step_only(
    interval: int, small: TensorSplits, cached_teacher: Teacher
) -> None:
    config = dataclasses.replace(SMALL, distill_interval=interval, epochs=3)
    calls_per_epoch: list[int] = []
    with _SignalCounter(cached_teacher) as counter:
        result = distill(config, small, cached_teacher, on_epoch=lambda report, _: calls_per_epoch.append(
            counter.calls - sum(calls_per_epoch)))
    expected = _expected_kd_steps(3, STEPS_PER_EPOCH, interval)
    assert [report.kd_steps for report in result.history] == expected
    assert calls_per_epoch == expected
    assert sum(expected) == math.ceil(3 * STEPS_PER_EPOCH / interval)
    assert all(counter.indices_given)  # not augmented: the cached rows are read by index


def test_a_run_without_kd_terms_never_asks_the_teacher(small: TensorSplits, cached_teacher: Teacher) -> None:
    with _SignalCounter(cached_teacher) as counter:
        result = distill(dataclasses.replace(SMALL, alpha=0.0), small, cached_teacher)
    assert counter.calls == 0
    assert all(report.kd_steps == 0 for report in result.history)


@pytest.mark.parametrize("interval", [1, 2])
def test_augmented_data_runs_the_teacher_online_on_kd_steps_only(
    interval: int, augmented: TensorSplits, teacher_model: nn.Module
) -> None:
    # Cached outputs exist (of the un-augmented images) but must not be used for augmented batches.
    teacher = Teacher.with_cached_outputs(teacher_model, "cnn-test", augmented.train_x[:])
    forwards = 0

    def count(*_: object) -> None:
        nonlocal forwards
        forwards += 1

    handle = teacher.model.register_forward_hook(count)
    teacher_inputs = _StemInputs(teacher.model, training_only=False)
    torch.manual_seed(0)
    student = build_student("cnn", 1, 8, 1, 10)
    student_inputs = _StemInputs(student, training_only=True)
    config = dataclasses.replace(SMALL, distill_interval=interval, epochs=2)
    try:
        result = distill(config, augmented, teacher, student=student)
    finally:
        handle.remove()
        teacher_inputs.remove()
        student_inputs.remove()
    expected = _expected_kd_steps(2, STEPS_PER_EPOCH, interval)
    assert [report.kd_steps for report in result.history] == expected
    assert forwards == sum(expected) == len(teacher_inputs.inputs)
    assert len(student_inputs.inputs) == 2 * STEPS_PER_EPOCH
    # The teacher sees exactly the augmented batch the student trains on, on steps 0, k, 2k, ...
    for kd_index, images in enumerate(teacher_inputs.inputs):
        assert torch.equal(images, student_inputs.inputs[kd_index * interval])
    # ... and those batches really are augmented: most rows are shifted copies, not training rows.
    first = teacher_inputs.inputs[0].flatten(1)
    matches_a_row = (first[:, None, :] == augmented.train_x[:].flatten(1)[None]).all(dim=2).any(dim=1)
    assert matches_a_row.float().mean() < 0.5


@pytest.mark.parametrize("feature_loss", ["attention", "hint"])
@pytest.mark.parametrize("use_augmented", [False, True], ids=["cached", "online"])
def test_feature_losses_train_and_change_the_loss(
    feature_loss: str, use_augmented: bool, request: pytest.FixtureRequest, cached_teacher: Teacher
) -> None:
    data: TensorSplits = request.getfixturevalue("augmented" if use_augmented else "small")
    plain = distill(SMALL, data, cached_teacher)
    config = dataclasses.replace(SMALL, feature_loss=feature_loss, beta=5.0)
    with _SignalCounter(cached_teacher) as counter:
        with_features = distill(config, data, cached_teacher)
    assert counter.calls == 2 * STEPS_PER_EPOCH
    assert counter.indices_given == [not use_augmented] * counter.calls
    for report in with_features.history:
        assert math.isfinite(report.train_loss) and math.isfinite(report.val_loss)
    assert with_features.history[0].train_loss != plain.history[0].train_loss
    assert not _same_weights(with_features.model, plain.model)


@pytest.mark.parametrize("split", ["digits", "small"])
def test_a_diverging_config_fails_at_once(split: str, request: pytest.FixtureRequest) -> None:
    # On "small" the weights become infinite on the last step of epoch 1: the validation loss is NaN
    # although every training loss of the epoch was finite.
    data: TensorSplits = request.getfixturevalue(split)
    reports: list[EpochReport] = []
    started = time.perf_counter()
    with pytest.raises(NonFiniteLossError, match="diverged") as raised:
        distill(DistillConfig(width=8, alpha=0.0, lr=1e6, epochs=10), data,
                on_epoch=lambda report, _: reports.append(report))
    assert time.perf_counter() - started < 5.0
    assert reports == []  # no epoch (with a NaN metric) was reported before the error
    assert "epoch 1" in str(raised.value)
    assert isinstance(raised.value, FloatingPointError)


def test_a_nan_in_the_first_step_fails_on_that_step(small: TensorSplits, cached_teacher: Teacher) -> None:
    poisoned = Teacher(cached_teacher.model, "poisoned", dataclasses.replace(
        cached_teacher.outputs, logits=torch.full_like(cached_teacher.outputs.logits, float("nan"))))
    with _SignalCounter(poisoned) as counter, pytest.raises(NonFiniteLossError, match="epoch 1, step 0"):
        distill(SMALL, small, poisoned)
    assert counter.calls == 1


@pytest.mark.parametrize("use_augmented", [False, True], ids=["cached", "augmented"])
@pytest.mark.parametrize("serialised", [False, True], ids=["in-memory", "saved"])
def test_resume_from_epoch_2_reaches_the_uninterrupted_weights(
    use_augmented: bool, serialised: bool, request: pytest.FixtureRequest, cached_teacher: Teacher, tmp_path: Any
) -> None:
    data: TensorSplits = request.getfixturevalue("augmented" if use_augmented else "small")
    # hint: the regressor's weights and its optimizer state must come back too
    config = dataclasses.replace(SMALL, epochs=4, feature_loss="hint", beta=1.0, distill_interval=2)
    states: dict[int, dict[str, Any]] = {}

    def checkpoint(report: EpochReport, get_state: Callable[[], dict[str, Any]]) -> None:
        if report.epoch == 2:
            states[2] = get_state()
            if serialised:  # as the search checkpoints: written at once, read back weights_only
                atomic_torch_save(states[2], tmp_path / "state.pt")

    full = distill(config, data, cached_teacher, on_epoch=checkpoint)
    # In memory, the state was kept while epochs 3 and 4 ran: it must not have changed with them.
    state = safe_torch_load(tmp_path / "state.pt") if serialised else states[2]
    epochs_seen: list[int] = []
    resumed = distill(config, data, cached_teacher, resume_state=state,
                      on_epoch=lambda report, _: epochs_seen.append(report.epoch))
    assert epochs_seen == [3, 4]
    assert _same_weights(resumed.model, full.model)
    assert _without_time(resumed.history) == _without_time(full.history)


def test_finetune_keeps_the_architecture_and_trains(small: TensorSplits) -> None:
    student = distill(DistillConfig(width=8, alpha=0.0, epochs=1, lr=0.01), small).model
    arch, shapes = dict(student.arch), {name: t.shape for name, t in student.state_dict().items()}
    before = _weights(student)
    accuracy_before, _ = evaluate(student, small.val_x[:], small.val_y)
    result = finetune(student, small, epochs=3, lr=0.02)
    assert result.model is student
    assert student.arch == arch
    assert {name: t.shape for name, t in student.state_dict().items()} == shapes
    assert not _same_weights(before, student)
    assert [report.epoch for report in result.history] == [1, 2, 3]
    assert all(report.kd_steps == 0 for report in result.history)
    assert result.history[-1].val_accuracy > accuracy_before + 0.05


def test_init_from_teacher_copies_the_sliced_teacher_weights(small: TensorSplits) -> None:
    torch.manual_seed(1)
    large = build_teacher("cnn-large", 1, 10)
    teacher = Teacher(large, "cnn-large")  # no cached outputs: any KD step would run it online
    forwards = 0

    def count(*_: object) -> None:
        nonlocal forwards
        forwards += 1

    handle = large.stem.register_forward_hook(count)
    # A learning rate of 1e-9 and no weight decay: one epoch leaves the initial weights (to 1e-6) in place.
    config = dataclasses.replace(SMALL, width=16, alpha=0.0, init_from_teacher=True, lr=1e-9, weight_decay=0.0,
                                 epochs=1)
    try:
        result = distill(config, small, teacher)
    finally:
        handle.remove()
    assert forwards == 0  # alpha 0, no feature loss: the teacher is needed for the initialisation only
    assert result.history[0].kd_steps == 0
    teacher_parameters = dict(large.named_parameters())
    compared = 0
    for name, parameter in result.model.named_parameters():
        source = teacher_parameters[name][tuple(slice(0, size) for size in parameter.shape)]
        torch.testing.assert_close(parameter.detach(), source, atol=1e-6, rtol=0)
        compared += 1
    assert compared == len(dict(result.model.named_parameters())) > 0
    scratch = distill(dataclasses.replace(config, init_from_teacher=False), small).model
    stem = scratch.stem[0].weight.detach()
    assert not torch.allclose(stem, large.stem[0].weight.detach()[: stem.shape[0], : stem.shape[1]])


def test_init_from_a_teacher_of_another_family_is_an_error(small: TensorSplits) -> None:
    teacher = Teacher(build_teacher("resnet-large", 1, 10), "resnet-large")
    with pytest.raises(ValueError, match="same student family"):
        distill(dataclasses.replace(SMALL, alpha=0.0, init_from_teacher=True), small, teacher)


def test_evaluate_matches_a_direct_computation_and_keeps_the_mode(small: TensorSplits) -> None:
    torch.manual_seed(0)
    model = build_student("cnn", 1, 8, 1, 10).train()
    accuracy, loss = evaluate(model, small.val_x[:], small.val_y)
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(small.val_x[:])
    assert accuracy == pytest.approx((logits.argmax(1) == small.val_y).float().mean().item())
    assert loss == pytest.approx(F.cross_entropy(logits, small.val_y).item(), rel=1e-5)


@pytest.mark.parametrize("feature_loss", ["none", "attention", "hint"])
def test_per_view_outputs_are_the_teacher_on_each_augmented_view(teacher_model: nn.Module, augmented: TensorSplits,
                                                                 feature_loss: str) -> None:
    """The cached outputs of (view, image) equal a forward pass on that image as ``augment_views`` made it."""
    teacher = Teacher.with_cached_outputs(teacher_model, "cnn-test", augmented.train_x[:], views_of=augmented.info,
                                          background=augmented.background)
    assert teacher.outputs is not None and teacher.outputs.per_view is not None
    assert tuple(teacher.outputs.per_view.logits.shape) == (9, len(augmented.train_y), 10)
    indices = torch.arange(64)
    images, views = augment_views(augmented.train_x[indices], augmented.info, torch.Generator().manual_seed(5),
                                  augmented.background)
    assert len(set(views.tolist())) > 3
    cached = teacher.signal(images, indices, feature_loss, views=views)
    online = teacher.signal(images, None, feature_loss)  # no indices: a forward pass on the views themselves
    torch.testing.assert_close(cached.logits, online.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.features, online.features, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("feature_loss", ["none", "hint"])
def test_kd_on_augmented_views_with_per_view_outputs_runs_no_teacher_forward(teacher_model: nn.Module,
                                                                            augmented: TensorSplits,
                                                                            feature_loss: str) -> None:
    teacher = Teacher.with_cached_outputs(teacher_model, "cnn-test", augmented.train_x[:], views_of=augmented.info,
                                          background=augmented.background)
    config = dataclasses.replace(SMALL, feature_loss=feature_loss, beta=1.0 if feature_loss != "none" else 0.0)
    forwards = []
    hook = teacher.model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        with_cache = distill(config, augmented, teacher)
    finally:
        hook.remove()
    assert forwards == []
    online = distill(config, augmented, Teacher(teacher_model, "cnn-test"))
    for cached_epoch, online_epoch in zip(with_cache.history, online.history, strict=True):
        assert cached_epoch.train_loss == pytest.approx(online_epoch.train_loss, rel=1e-4)


def test_stop_after_ends_training_after_that_epoch(small: TensorSplits) -> None:
    seen: list[int] = []
    result = distill(dataclasses.replace(SMALL, alpha=0.0, epochs=4), small,
                     on_epoch=lambda report, _: seen.append(report.epoch), stop_after=lambda report: report.epoch == 2)
    assert [report.epoch for report in result.history] == [1, 2]
    assert seen == [1, 2]  # on_epoch still sees the last epoch before the stop


def test_validating_the_last_epoch_only_trains_the_same_weights(small: TensorSplits,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = dataclasses.replace(SMALL, alpha=0.0, epochs=3)
    every_epoch = distill(config, small)
    calls = []
    real_evaluate = evaluate
    # The training loop's module, where the loop looks ``evaluate`` up, not the function ``trainers`` exports.
    monkeypatch.setattr(importlib.import_module("trainers.distill._loop"), "evaluate",
                        lambda *args: calls.append(1) or real_evaluate(*args))
    last_only = distill(config, small, validate_each_epoch=False)
    assert len(calls) == 1  # one validation pass, after the last epoch
    assert [report.val_accuracy for report in last_only.history[:-1]] == [None, None]
    assert [report.val_loss for report in last_only.history[:-1]] == [None, None]
    assert _same_weights(every_epoch.model, last_only.model)
    assert last_only.history[-1].val_accuracy == every_epoch.history[-1].val_accuracy
    assert last_only.best_val_accuracy == every_epoch.history[-1].val_accuracy


def test_finetune_can_validate_the_last_epoch_only(small: TensorSplits) -> None:
    student = distill(DistillConfig(width=8, alpha=0.0, epochs=1, lr=0.01), small).model
    result = finetune(student, small, epochs=2, lr=0.02, validate_each_epoch=False)
    assert result.history[0].val_accuracy is None
    assert result.history[-1].val_accuracy == evaluate(student, small.val_x[:], small.val_y)[0]


def test_small_strided_shortcuts_train_in_the_default_format_on_one_thread() -> None:
    """oneDNN corrupts the heap training a 1x1 stride-2 convolution of 2-6 input channels in channels_last
    on one thread (torch 2.14.1, AVX2): a ResNet student of width 2 died that way. It must train."""
    from trainers.distill import channels_last_is_safe
    from trainers.models import build_student

    assert not channels_last_is_safe(build_student("resnet", 1, 2, 1, 10))
    assert channels_last_is_safe(build_student("resnet", 1, 8, 1, 10))
    assert channels_last_is_safe(build_student("cnn", 2, 2, 1, 10))
    script = (
        "import torch; torch.set_num_threads(1)\n"
        "from trainers import DistillConfig, distill, load_dataset\n"
        "data = load_dataset('digits', max_train_samples=200)\n"
        "for depth in (1, 3):\n"
        "    distill(DistillConfig(alpha=0.0, epochs=1, family='resnet', depth=depth, width=2), data)\n"
        "print('trained')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]


class _FirstBatch(Exception):
    """Raised by a hook to stop training at the first forward pass, before any backward pass runs."""


@pytest.mark.parametrize("width, channels_last", [(3, False), (8, True)])
def test_colour_batches_follow_the_models_memory_format(width: int, channels_last: bool, tmp_path: Path) -> None:
    """A model kept in the default format (a small strided shortcut, above) must get its batches in the default
    format too: a channels_last batch of 3 channels takes oneDNN's channels_last path anyway, and a ResNet
    width-3 student on 8 x 8 colour images died of it in a real search (a 1-channel batch is the same in
    both formats, so digits never showed it). A model that trains in channels_last gets channels_last batches.
    Training stops at the first forward pass, so a regression fails here instead of crashing the process."""
    from tests.trainers.test_data import write_image_folder

    write_image_folder(tmp_path, per_class=12, shape=(8, 8, 3))
    data = load_dataset("imagefolder", str(tmp_path))
    student = build_student("resnet", 2, width, 3, data.info.num_classes)
    seen: list[torch.Tensor] = []

    def stop(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(args[0])
        raise _FirstBatch

    student.stem.register_forward_pre_hook(stop)
    with pytest.raises(_FirstBatch):
        distill(DistillConfig(alpha=0.0, epochs=1, family="resnet", depth=2, width=width, batch_size=8), data,
                student=student)
    (batch,) = seen
    assert batch.shape == (8, 3, 8, 8)
    assert batch.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert batch.is_contiguous() is not channels_last
