"""Tests of model cost: parameters, FLOPs (against hand counts) and CPU latency."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers import ModelCost, build_student, build_teacher, count_parameters, measure
from trainers.measure import count_flops, cpu_latency_ms, onnx_latency_ms

DIGITS_SHAPE = (1, 8, 8)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_measure_reports_params_flops_and_latency() -> None:
    model = build_student("cnn", 1, 8, 1, 10)
    cost = measure(model, DIGITS_SHAPE)
    assert isinstance(cost, ModelCost)
    assert cost.params == count_parameters(model)
    assert cost.flops > 0 and isinstance(cost.flops, int)
    assert cost.latency_ms > 0
    assert set(cost.to_dict()) == {"params", "flops", "latency_ms"}


@pytest.mark.parametrize("family", ["cnn", "resnet", "mobilenet"])
def test_flops_and_params_grow_with_width_and_depth(family: str) -> None:
    flops = [count_flops(build_student(family, depth, width, 1, 10), DIGITS_SHAPE)
             for depth, width in [(1, 8), (1, 16), (2, 16)]]
    params = [count_parameters(build_student(family, depth, width, 1, 10)) for depth, width in [(1, 8), (1, 16),
                                                                                                 (2, 16)]]
    assert flops[0] < flops[1] < flops[2]
    assert params[0] < params[1] < params[2]
    # Conv FLOPs scale with in x out channels: doubling the width roughly quadruples them.
    assert 3.0 < flops[1] / flops[0] < 4.5


def test_flops_grow_with_the_input_size() -> None:
    model = build_student("cnn", 1, 8, 1, 10)
    assert count_flops(model, (1, 28, 28)) > 10 * count_flops(model, DIGITS_SHAPE)


def test_flops_match_hand_counts() -> None:
    # A linear layer: 2 * in * out (a multiply-add counts as two).
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert count_flops(linear, DIGITS_SHAPE) == 2 * 64 * 10
    # A 3x3 convolution, 1 -> 4 channels, padding 1 on 8x8: 2 * (8 * 8) * 4 * (1 * 3 * 3).
    conv = nn.Conv2d(1, 4, 3, padding=1)
    assert count_flops(conv, DIGITS_SHAPE) == 2 * 64 * 4 * 9


def test_the_cnn_student_flops_match_a_hand_count() -> None:
    # cnn depth 1 width 8 on 1x8x8: stem 1->8 at 8x8, stage 8->8 at 8x8, 8->16 at 4x4, 16->32 at 2x2, head 32->10.
    convs = [(1, 8, 8 * 8), (8, 8, 8 * 8), (8, 16, 4 * 4), (16, 32, 2 * 2)]
    expected = sum(2 * positions * c_out * c_in * 9 for c_in, c_out, positions in convs) + 2 * 32 * 10
    assert count_flops(build_student("cnn", 1, 8, 1, 10), DIGITS_SHAPE) == expected


def test_count_flops_keeps_the_training_mode_and_the_weights() -> None:
    model = build_student("resnet", 1, 8, 1, 10).train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    count_flops(model, DIGITS_SHAPE)
    assert model.training
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_latency_restores_the_thread_count_and_is_larger_for_a_larger_model() -> None:
    threads = torch.get_num_threads()
    small = cpu_latency_ms(build_student("cnn", 1, 8, 1, 10), DIGITS_SHAPE, repeats=10, warmup=2)
    large = cpu_latency_ms(build_teacher("resnet-large", 1, 10), DIGITS_SHAPE, repeats=10, warmup=2)
    assert torch.get_num_threads() == threads
    assert 0 < small < large


def test_onnx_latency_times_the_exported_program_and_grows_with_the_model() -> None:
    small = onnx_latency_ms(build_student("cnn", 1, 2, 3, 10), (3, 32, 32), repeats=10, warmup=2)
    large = onnx_latency_ms(build_student("resnet", 3, 32, 3, 10), (3, 32, 32), repeats=10, warmup=2)
    assert 0 < small < large  # about 0.03 ms against 3 ms here: far apart for any machine's noise
