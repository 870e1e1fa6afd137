"""Tests of the Teacher wrapper: cached outputs equal a direct forward; signal() reads the cache or runs the model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from trainers import Teacher, TensorSplits, build_teacher, distill, load_dataset, losses
from trainers import teacher as teacher_module
from trainers.distill import DistillConfig
from trainers.losses import get_feature_loss, teacher_attention_maps
from trainers.teacher import OUTPUT_BATCH_SIZE, TeacherOutputs, compute_outputs, compute_view_outputs

# Rows chosen to span two output batches of compute_outputs (OUTPUT_BATCH_SIZE is 512).
ROWS = torch.tensor([0, 3, 511, 512, 550, 599])
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # batch composition may change the float summation order


@pytest.fixture(scope="module")
def digits() -> TensorSplits:
    data = load_dataset("digits", max_train_samples=600)
    assert len(data.train_y) > OUTPUT_BATCH_SIZE + 1  # the cache is built in more than one batch
    return data


@pytest.fixture(scope="module")
def model(digits: TensorSplits) -> nn.Module:
    """resnet-large after one short epoch: BN running statistics are no longer the initial ones."""
    torch.manual_seed(0)
    network = build_teacher("resnet-large", 1, 10)
    return distill(DistillConfig(alpha=0.0, epochs=1), digits, student=network).model


@pytest.fixture(scope="module")
def teacher(model: nn.Module, digits: TensorSplits) -> Teacher:
    return Teacher.with_cached_outputs(model, "resnet-large", digits.train_x[:])


class _Forwards:
    """Counts forward passes of ``model`` (through ``forward`` or ``forward_features``) via its stem."""

    def __init__(self, model: nn.Module) -> None:
        self.count = 0
        self.handle = model.stem.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.count += 1

    def __enter__(self) -> _Forwards:
        return self

    def __exit__(self, *_: object) -> None:
        self.handle.remove()


def _direct(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.eval()
    with torch.no_grad():
        return model.forward_features(images)


def test_the_teacher_is_frozen_and_in_eval_mode(teacher: Teacher) -> None:
    assert not teacher.model.training
    assert all(not parameter.requires_grad for parameter in teacher.model.parameters())
    assert teacher.name == "resnet-large"


def test_cached_rows_equal_a_direct_forward(teacher: Teacher, digits: TensorSplits) -> None:
    outputs = teacher.outputs
    assert outputs is not None and set(outputs.features) == {"attention", "hint"}
    assert outputs.logits.shape == (len(digits.train_y), 10)
    logits, features = _direct(teacher.model, digits.train_x[ROWS])
    torch.testing.assert_close(outputs.logits[ROWS], logits, **TOLERANCE)
    maps = teacher_attention_maps(features)
    assert len(outputs.features["attention"]) == len(maps) == len(features)
    for cached, direct in zip(outputs.features["attention"], maps, strict=True):
        assert cached.shape[0] == len(digits.train_y)
        torch.testing.assert_close(cached[ROWS], direct, **TOLERANCE)
    torch.testing.assert_close(outputs.features["hint"][ROWS], features[-1], **TOLERANCE)
    assert not outputs.logits.requires_grad and not outputs.logits.is_inference()


def test_signal_with_indices_reads_the_cache_without_running_the_model(teacher: Teacher,
                                                                       digits: TensorSplits) -> None:
    assert teacher.outputs is not None
    images = digits.train_x[ROWS]
    with _Forwards(teacher.model) as forwards:
        plain = teacher.signal(images, ROWS, "none")
        attention = teacher.signal(images, ROWS, "attention")
        hint = teacher.signal(images, ROWS, "hint")
    assert forwards.count == 0
    assert torch.equal(plain.logits, teacher.outputs.logits[ROWS])
    assert plain.features is None
    assert isinstance(attention.features, list)
    for got, cached in zip(attention.features, teacher.outputs.features["attention"], strict=True):
        assert torch.equal(got, cached[ROWS])
    assert isinstance(hint.features, torch.Tensor)
    assert torch.equal(hint.features, teacher.outputs.features["hint"][ROWS])


def test_signal_uses_the_cache_even_when_the_images_differ(teacher: Teacher, digits: TensorSplits) -> None:
    # The indices, not the images, select the cached rows: proof that nothing was recomputed.
    assert teacher.outputs is not None
    signal = teacher.signal(torch.zeros_like(digits.train_x[ROWS]), ROWS, "none")
    assert torch.equal(signal.logits, teacher.outputs.logits[ROWS])


@pytest.mark.parametrize("feature_loss", ["none", "attention", "hint"])
def test_signal_without_indices_runs_the_model(feature_loss: str, teacher: Teacher, digits: TensorSplits) -> None:
    # Shifted images (as an augmentation would make them) are not in the cache.
    images = torch.roll(digits.train_x[ROWS], shifts=1, dims=-1)
    with _Forwards(teacher.model) as forwards:
        signal = teacher.signal(images, None, feature_loss)
    assert forwards.count == 1
    logits, features = _direct(teacher.model, images)
    torch.testing.assert_close(signal.logits, logits, **TOLERANCE)
    assert teacher.outputs is not None
    assert not torch.allclose(signal.logits, teacher.outputs.logits[ROWS])
    if feature_loss == "attention":
        assert isinstance(signal.features, list)
        for got, direct in zip(signal.features, teacher_attention_maps(features), strict=True):
            torch.testing.assert_close(got, direct, **TOLERANCE)
    elif feature_loss == "hint":
        assert isinstance(signal.features, torch.Tensor)
        torch.testing.assert_close(signal.features, features[-1], **TOLERANCE)
    else:
        assert signal.features is None
    assert not signal.logits.requires_grad


def test_a_teacher_without_outputs_always_runs_the_model(model: nn.Module, digits: TensorSplits) -> None:
    online = Teacher(model, "resnet-large")
    assert online.outputs is None
    with _Forwards(online.model) as forwards:
        signal = online.signal(digits.train_x[ROWS], ROWS, "none")
    assert forwards.count == 1
    torch.testing.assert_close(signal.logits, _direct(model, digits.train_x[ROWS])[0], **TOLERANCE)


def test_hint_features_above_the_memory_cap_are_recomputed(model: nn.Module, digits: TensorSplits,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(losses._FEATURE_LOSSES, "hint",
                        dataclasses.replace(get_feature_loss("hint"), max_cached_bytes=0))
    capped = Teacher.with_cached_outputs(model, "resnet-large", digits.train_x[:100])
    assert capped.outputs is not None and set(capped.outputs.features) == {"attention"}
    rows = torch.tensor([1, 50, 99])
    with _Forwards(capped.model) as forwards:
        logits_only = capped.signal(digits.train_x[rows], rows, "none")
        hint = capped.signal(digits.train_x[rows], rows, "hint")
    assert forwards.count == 1  # logits came from the cache; the hint needed the model
    assert torch.equal(logits_only.logits, capped.outputs.logits[rows])
    _, features = _direct(model, digits.train_x[rows])
    assert isinstance(hint.features, torch.Tensor)
    torch.testing.assert_close(hint.features, features[-1], **TOLERANCE)
    with _Forwards(capped.model) as forwards:
        probe = capped.probe_signal(digits.train_x[:2], "hint")
    assert forwards.count == 1 and isinstance(probe, torch.Tensor)
    torch.testing.assert_close(probe, _direct(model, digits.train_x[:2])[1][-1], **TOLERANCE)


def test_probe_signal_reads_the_cache_and_to_moves_it(teacher: Teacher, digits: TensorSplits) -> None:
    _, features = _direct(teacher.model, digits.train_x[:2])
    with _Forwards(teacher.model) as forwards:
        probe = teacher.probe_signal(digits.train_x[:2], "hint")
    assert forwards.count == 0
    assert isinstance(probe, torch.Tensor) and probe.shape[1] == features[-1].shape[1] == 128
    moved = teacher.to("cpu")
    assert moved.name == teacher.name and moved.outputs is not None and teacher.outputs is not None
    assert torch.equal(moved.outputs.logits, teacher.outputs.logits)


def test_compute_outputs_leaves_the_model_in_eval_mode(model: nn.Module, digits: TensorSplits) -> None:
    model.train()
    outputs = compute_outputs(model, digits.train_x[:10])
    assert not model.training
    assert isinstance(outputs, TeacherOutputs) and outputs.logits.shape == (10, 10)


def test_per_view_features_over_the_budget_are_never_computed_past_the_first_view(
        model: nn.Module, digits: TensorSplits, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over ``MAX_VIEW_BYTES`` the signals are dropped, and the views after the first run logits only."""
    info = dataclasses.replace(digits.info, crop_padding=1)  # 9 views
    images = digits.train_x[:40]
    full = compute_view_outputs(model, images, info, digits.background)
    monkeypatch.setattr(teacher_module, "MAX_VIEW_BYTES", 1)
    hints = []
    hint = get_feature_loss("hint")
    monkeypatch.setitem(losses._FEATURE_LOSSES, "hint", dataclasses.replace(
        hint, teacher_signal=lambda features: hints.append(1) or hint.teacher_signal(features)))
    capped = compute_view_outputs(model, images, info, digits.background)
    assert set(full.features) == {"attention", "hint"}
    assert capped.features == {}
    assert torch.equal(capped.logits, full.logits)
    assert len(hints) == 1  # the first view (one batch); the eight others ran logits only
