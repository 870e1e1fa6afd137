"""The teacher of a repeated round: a teacher and a student whose logits are averaged (``trainers.ensemble``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers import (
    DistillConfig,
    LogitEnsemble,
    Teacher,
    TensorSplits,
    build_student,
    distill,
    ensemble_teacher,
    initial_student,
    load_dataset,
)
from trainers.data import render_view, view_count

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # batch composition may change the float summation order


@pytest.fixture(scope="module")
def digits() -> TensorSplits:
    return load_dataset("digits", max_train_samples=200)


def _trained(digits: TensorSplits, width: int, seed: int) -> nn.Module:
    model = build_student("cnn", 1, width, 1, 10)
    return distill(DistillConfig(alpha=0.0, width=width, epochs=1, seed=seed), digits, student=model).model.eval()


@pytest.fixture(scope="module")
def pair(digits: TensorSplits) -> tuple[nn.Module, nn.Module]:
    """A wider "teacher" and a narrow student, each trained one epoch (different weights, same classes)."""
    return _trained(digits, 24, seed=0), _trained(digits, 4, seed=1)


def test_the_ensembles_logits_are_the_mean_of_the_two_and_its_features_the_teachers(
        pair: tuple[nn.Module, nn.Module], digits: TensorSplits) -> None:
    teacher, student = pair
    images = digits.val_x[:16]
    ensemble = LogitEnsemble(teacher, student).eval()
    with torch.no_grad():
        expected = (teacher(images) + student(images)) / 2
        torch.testing.assert_close(ensemble(images), expected)
        logits, features = ensemble.forward_features(images)
        _, teacher_features = teacher.forward_features(images)
    torch.testing.assert_close(logits, expected)
    assert len(features) == len(teacher_features)
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(features, teacher_features, strict=True))
    assert not torch.allclose(expected, teacher(images))  # the student really moves the target


def test_the_ensembles_cached_outputs_are_its_forward_on_every_row_and_view(
        pair: tuple[nn.Module, nn.Module], digits: TensorSplits) -> None:
    model, student = pair
    assert digits.info.augmented  # digits' ±1 px crops: 9 views whose teacher logits are cached
    teacher = Teacher.with_cached_outputs(model, "wide", digits.train_x[:], views_of=digits.info,
                                          background=digits.background)
    assert teacher.outputs is not None and teacher.outputs.per_view is not None
    combined = ensemble_teacher(teacher, student, digits.train_x[:], digits.info, digits.background, name="both")
    assert combined.name == "both" and isinstance(combined.model, LogitEnsemble)
    images = digits.train_x[:]
    rows = torch.tensor([0, 7, len(images) - 1])
    with torch.no_grad():
        direct = combined.model(images[rows])
    torch.testing.assert_close(combined.signal(images[rows], rows, "none").logits, direct, **TOLERANCE)
    # Feature losses read the teacher's cached maps, unchanged.
    attention = combined.signal(images[rows], rows, "attention").features
    assert attention is not None
    expected_attention = teacher.signal(images[rows], rows, "attention").features
    assert all(torch.equal(a, b) for a, b in zip(attention, expected_attention, strict=True))
    view = view_count(digits.info) - 1
    views = torch.full((len(rows),), view)
    rendered = render_view(images[rows], digits.info, view, digits.background)
    with torch.no_grad():
        direct_view = combined.model(rendered)
    torch.testing.assert_close(combined.signal(rendered, rows, "none", views=views).logits, direct_view, **TOLERANCE)


def test_an_ensemble_of_a_teacher_without_cache_runs_online(pair: tuple[nn.Module, nn.Module],
                                                            digits: TensorSplits) -> None:
    model, student = pair
    combined = ensemble_teacher(Teacher(model, "wide"), student, digits.train_x[:])
    assert combined.outputs is None
    images = digits.val_x[:4]
    with torch.no_grad():
        expected = (model(images) + student(images)) / 2
    torch.testing.assert_close(combined.signal(images, None, "none").logits, expected)


def test_initial_student_is_the_student_distill_builds(digits: TensorSplits) -> None:
    config = DistillConfig(alpha=0.0, width=4, epochs=1, seed=3)
    built = distill(config, digits).model
    given = distill(config, digits, student=initial_student(config, digits, None)).model
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), given.state_dict().values(), strict=True))
    first = next(iter(initial_student(config, digits, None).parameters()))
    other = next(iter(initial_student(DistillConfig(alpha=0.0, width=4, seed=4), digits, None).parameters()))
    assert not torch.equal(first, other)
