"""Golden-value and property tests of the KD losses (torchdistill style).

References are computed independently: explicit exp / log / sums in float64, never through the
``F.kl_div`` / ``F.normalize`` calls the implementation uses.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from spaces import FEATURE_LOSSES, PARAMETERS
from trainers.losses import (
    HintRegressor,
    attention_loss,
    attention_map,
    feature_loss_names,
    get_feature_loss,
    hint_loss,
    kd_loss,
    register_feature_loss,
    resize_spatial,
    teacher_attention_maps,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def reference_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> float:
    """Mean over the batch of sum_i p_i (log p_i - log q_i), p = softmax(t / T), q = softmax(s / T)."""
    total = 0.0
    for student_row, teacher_row in zip(student_logits.tolist(), teacher_logits.tolist(), strict=True):
        teacher_exp = [math.exp(value / temperature) for value in teacher_row]
        student_exp = [math.exp(value / temperature) for value in student_row]
        teacher_probs = [value / sum(teacher_exp) for value in teacher_exp]
        student_probs = [value / sum(student_exp) for value in student_exp]
        total += sum(
            p * (math.log(p) - math.log(q)) for p, q in zip(teacher_probs, student_probs, strict=True)
        )
    return total / len(student_logits)


def reference_attention_map(features: Tensor) -> Tensor:
    """Channel mean of squares, divided by its Euclidean norm, with explicit sums."""
    energy = (features.double() ** 2).sum(dim=1) / features.shape[1]
    norm = torch.sqrt((energy**2).sum(dim=(1, 2), keepdim=True))
    return energy / norm


# ----------------------------------------------------------------------------------------------------
# kd_loss


def test_kd_loss_golden_number() -> None:
    student_logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=torch.float64)
    teacher_logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    # Derived once with pure-Python math in float64: T = 2, p = softmax(teacher / 2) and
    # q = softmax(student / 2) per row, KL = sum p * (log p - log q), mean of the two rows, times T^2.
    expected = 1.1892776608990152
    assert kd_loss(student_logits, teacher_logits, 2.0).item() == pytest.approx(expected, abs=1e-6)
    assert kd_loss(student_logits.float(), teacher_logits.float(), 2.0).item() == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 10.0, 20.0])
def test_kd_loss_is_temperature_squared_times_kl(temperature: float) -> None:
    student_logits = torch.randn(8, 10, dtype=torch.float64) * 3
    teacher_logits = torch.randn(8, 10, dtype=torch.float64) * 3
    expected = temperature**2 * reference_kl(student_logits, teacher_logits, temperature)
    actual = kd_loss(student_logits, teacher_logits, temperature).item()
    assert actual == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_kd_loss_is_zero_when_student_equals_teacher() -> None:
    logits = torch.randn(4, 7)
    assert kd_loss(logits, logits.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_is_non_negative() -> None:
    for _ in range(20):
        assert kd_loss(torch.randn(5, 10) * 5, torch.randn(5, 10) * 5, 4.0).item() >= -1e-6


def test_kd_loss_stays_finite_with_extreme_logits() -> None:
    # exp(-1000) underflows to 0 in a plain softmax; log space keeps the loss finite.
    student_logits = torch.tensor([[1000.0, 0.0, -1000.0]])
    teacher_logits = torch.tensor([[-1000.0, 0.0, 1000.0]])
    assert torch.isfinite(kd_loss(student_logits, teacher_logits, 1.0))


def test_kd_loss_gradcheck() -> None:
    student_logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    teacher_logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, t: kd_loss(s, t, 3.0), (student_logits, teacher_logits))


def test_kd_loss_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match="shape"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 4), 1.0)


# ----------------------------------------------------------------------------------------------------
# attention maps and attention_loss


def test_attention_map_matches_the_reference_and_is_normalised() -> None:
    features = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    maps = attention_map(features)
    assert maps.shape == (3, 5, 4)
    torch.testing.assert_close(maps, reference_attention_map(features))
    norms = maps.flatten(1).pow(2).sum(dim=1).sqrt()
    torch.testing.assert_close(norms, torch.ones(3, dtype=torch.float64))


def test_attention_loss_golden_number() -> None:
    # One channel, two positions: the student attends only to the first, the teacher only to the
    # second. Normalised maps are [1, 0] and [0, 1], whose squared distance is exactly 2.
    student_features = [torch.tensor([[[[3.0, 0.0]]]])]
    teacher_features = [torch.tensor([[[[0.0, -2.0]]]])]
    loss = attention_loss(student_features, teacher_attention_maps(teacher_features))
    assert loss.item() == pytest.approx(2.0, abs=1e-6)


def test_attention_loss_matches_the_reference() -> None:
    student_features = [
        torch.randn(4, 8, 6, 6, dtype=torch.float64),
        torch.randn(4, 16, 3, 3, dtype=torch.float64),
    ]
    teacher_features = [
        torch.randn(4, 32, 6, 6, dtype=torch.float64),
        torch.randn(4, 64, 3, 3, dtype=torch.float64),
    ]
    expected = torch.stack(
        [
            (reference_attention_map(s) - reference_attention_map(t)).pow(2).sum(dim=(1, 2)).mean()
            for s, t in zip(student_features, teacher_features, strict=True)
        ]
    ).mean()
    actual = attention_loss(student_features, teacher_attention_maps(teacher_features))
    torch.testing.assert_close(actual, expected)


def test_attention_loss_pairs_the_last_stages() -> None:
    teacher_features = [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4), torch.randn(2, 32, 2, 2)]
    student_features = [torch.randn(2, 4, 4, 4), torch.randn(2, 8, 2, 2)]
    teacher_maps = teacher_attention_maps(teacher_features)
    expected = attention_loss(student_features, teacher_maps[1:])
    torch.testing.assert_close(attention_loss(student_features, teacher_maps), expected)
    # Symmetric: extra student stages at the front are ignored too.
    extra_student = [torch.randn(2, 2, 16, 16), *student_features]
    torch.testing.assert_close(attention_loss(extra_student, teacher_maps[1:]), expected)


def test_attention_loss_is_zero_when_student_equals_teacher() -> None:
    features = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    assert attention_loss(features, teacher_attention_maps(features)).item() == pytest.approx(0.0, abs=1e-7)


def test_attention_loss_is_non_negative_and_bounded() -> None:
    # Maps are non-negative unit vectors, so the squared distance lies in [0, 2].
    for _ in range(10):
        loss = attention_loss([torch.randn(3, 4, 5, 5)], teacher_attention_maps([torch.randn(3, 6, 5, 5)]))
        assert 0.0 <= loss.item() <= 2.0 + 1e-6


@pytest.mark.parametrize(
    ("student_size", "teacher_size"),
    [((8, 8), (4, 4)), ((2, 2), (4, 4)), ((7, 7), (4, 4)), ((4, 4), (7, 7)), ((2, 6), (4, 4))],
    ids=["shrink", "grow", "shrink-uneven", "grow-uneven", "mixed"],
)
def test_attention_loss_resizes_the_student_map(
    student_size: tuple[int, int], teacher_size: tuple[int, int]
) -> None:
    student_features = torch.randn(2, 3, *student_size, dtype=torch.float64)
    teacher_maps = teacher_attention_maps([torch.randn(2, 5, *teacher_size, dtype=torch.float64)])
    student_map = attention_map(student_features, size=teacher_size)
    assert student_map.shape == (2, *teacher_size)
    torch.testing.assert_close(student_map.flatten(1).norm(dim=1), torch.ones(2, dtype=torch.float64))
    expected = (student_map - teacher_maps[0]).pow(2).sum(dim=(1, 2)).mean()
    torch.testing.assert_close(attention_loss([student_features], teacher_maps), expected)


def test_shrinking_averages_and_growing_interpolates() -> None:
    maps = torch.arange(16.0).reshape(1, 1, 4, 4)
    pooled = resize_spatial(maps, (2, 2))
    torch.testing.assert_close(pooled, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    grown = resize_spatial(torch.tensor([[[[0.0, 4.0]]]]), (1, 4))
    # Bilinear, align_corners=False: samples at x = -0.25, 0.25, 0.75, 1.25 of the source, clamped.
    torch.testing.assert_close(grown, torch.tensor([[[[0.0, 1.0, 3.0, 4.0]]]]))
    assert resize_spatial(maps, (4, 4)) is maps


def test_attention_loss_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        attention_loss([], [])
    with pytest.raises(ValueError, match="same N"):
        attention_loss([torch.randn(2, 3, 4, 4)], teacher_attention_maps([torch.randn(3, 3, 4, 4)]))


def test_attention_loss_gradcheck() -> None:
    # Different resolutions exercise both resize paths inside the checked function.
    student_features = (
        torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 4, 2, 2, dtype=torch.float64, requires_grad=True),
    )
    teacher_maps = teacher_attention_maps(
        [torch.randn(2, 5, 3, 3, dtype=torch.float64), torch.randn(2, 6, 3, 3, dtype=torch.float64)]
    )
    assert torch.autograd.gradcheck(lambda a, b: attention_loss([a, b], teacher_maps), student_features)


# ----------------------------------------------------------------------------------------------------
# HintRegressor and hint_loss


@pytest.mark.parametrize("batch_norm", [False, True])
def test_hint_regressor_output_shape(batch_norm: bool) -> None:
    regressor = HintRegressor(student_channels=8, teacher_channels=32, batch_norm=batch_norm)
    assert regressor(torch.randn(2, 8, 5, 7)).shape == (2, 32, 5, 7)


def test_hint_loss_golden_number() -> None:
    regressor = HintRegressor(2, 2)
    with torch.no_grad():
        regressor.conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
        regressor.conv.bias.zero_()
    student_feature = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    teacher_feature = torch.tensor([[[[1.0, 0.0]], [[3.0, 8.0]]]])
    # Identity regressor: squared errors 0, 4, 0, 16 over four elements -> 5.
    assert hint_loss(student_feature, teacher_feature, regressor).item() == pytest.approx(5.0, abs=1e-6)


def test_hint_loss_matches_the_reference_with_resizing() -> None:
    regressor = HintRegressor(4, 6).double()
    student_feature = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    teacher_feature = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    weight = regressor.conv.weight.detach().reshape(6, 4)
    bias = regressor.conv.bias.detach()
    regressed = torch.einsum("oc,nchw->nohw", weight, student_feature) + bias.reshape(1, 6, 1, 1)
    # Shrinking 8x8 -> 4x4 by adaptive average pooling is the mean of each 2x2 block.
    pooled = regressed.reshape(3, 6, 4, 2, 4, 2).mean(dim=(3, 5))
    expected = ((pooled - teacher_feature) ** 2).sum() / teacher_feature.numel()
    torch.testing.assert_close(hint_loss(student_feature, teacher_feature, regressor), expected)


def test_hint_loss_grows_a_smaller_student_map() -> None:
    regressor = HintRegressor(4, 6)
    loss = hint_loss(torch.randn(2, 4, 2, 2), torch.randn(2, 6, 4, 4), regressor)
    assert loss.dim() == 0 and loss.item() >= 0.0


def test_hint_loss_is_zero_for_a_perfect_regression() -> None:
    regressor = HintRegressor(3, 5)
    student_feature = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        teacher_feature = regressor(student_feature)
    assert hint_loss(student_feature, teacher_feature, regressor).item() == pytest.approx(0.0, abs=1e-12)


def test_hint_loss_rejects_a_channel_mismatch() -> None:
    with pytest.raises(ValueError, match="channels"):
        hint_loss(torch.randn(2, 4, 4, 4), torch.randn(2, 7, 4, 4), HintRegressor(4, 6))


def test_hint_loss_gradcheck() -> None:
    regressor = HintRegressor(3, 4).double()
    student_feature = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    teacher_feature = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s, t: hint_loss(s, t, regressor), (student_feature, teacher_feature)
    )
    # The regressor's own parameters get gradients too: it is trained with the student.
    hint_loss(student_feature, teacher_feature, regressor).backward()
    assert regressor.conv.weight.grad is not None and regressor.conv.weight.grad.abs().sum() > 0


# --- the feature-loss registry ---------------------------------------------------------------------------


def test_the_registered_feature_losses_are_the_search_spaces_choices() -> None:
    """The space (torch-free) offers the table's names; the trainer must have a loss for each, and no other."""
    assert ("none", *feature_loss_names()) == FEATURE_LOSSES == PARAMETERS["feature_loss"].choices


def test_a_loss_outside_the_parameter_table_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="'gram' is not a feature_loss choice of spaces.PARAMETERS"):
        register_feature_loss("gram", teacher_signal=lambda features: features[-1])
    with pytest.raises(ValueError, match="already registered"):
        register_feature_loss("hint", teacher_signal=lambda features: features[-1])(lambda s, t, r: t)
    assert feature_loss_names() == ("attention", "hint")


def test_an_unknown_feature_loss_names_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown feature loss 'hints' \\(did you mean 'hint'\\?\\); registered: "
                                         "attention, hint"):
        get_feature_loss("hints")


def test_the_registered_terms_are_the_documented_losses() -> None:
    torch.manual_seed(0)
    student = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    teacher = [torch.randn(2, 6, 8, 8), torch.randn(2, 12, 4, 4)]
    attention = get_feature_loss("attention")
    maps = attention.teacher_signal(teacher)
    assert attention.regressor is None and attention.max_cached_bytes is None
    assert torch.equal(attention.loss(student, maps, None), attention_loss(student, teacher_attention_maps(teacher)))
    hint = get_feature_loss("hint")
    assert torch.equal(hint.teacher_signal(teacher), teacher[-1])
    regressor = hint.regressor(student, hint.teacher_signal(teacher))
    assert isinstance(regressor, HintRegressor)
    assert (regressor.conv.in_channels, regressor.conv.out_channels) == (8, 12)
    assert torch.equal(hint.loss(student, teacher[-1], regressor), hint_loss(student[-1], teacher[-1], regressor))
