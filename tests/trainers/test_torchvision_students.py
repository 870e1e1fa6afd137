"""Tests of the torchvision student families: every family at its corners, sizes, strides, FLOPs, training."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn
from torchvision.models import EfficientNet, MobileNetV2, MobileNetV3, ResNet, ShuffleNetV2

from trainers import DistillConfig, Teacher, distill, load_dataset
from trainers.measure import count_flops
from trainers.models import (
    build_from_arch,
    build_student,
    count_parameters,
    input_size_for,
    stem_stride_for,
    student_families,
    student_family_bounds,
    student_flops,
    student_parameter_count,
)
from trainers.models.torchvision_students import TORCHVISION_FAMILIES, kept_downsamplings

CLASSES = {"mobilenet_v2": MobileNetV2, "mobilenet_v3_small": MobileNetV3, "mobilenet_v3_large": MobileNetV3,
           "shufflenet_v2": ShuffleNetV2, "resnet_basic": ResNet, "efficientnet_b0": EfficientNet}
SIZES = (8, 28, 32, 64)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_a_trial_s_worker_imports_no_torchvision() -> None:
    """Every Ray worker imports the trainable: torchvision (and the torch._dynamo it pulls in, about 1.8 s)
    is imported only when a torchvision family is built."""
    probe = ("import sys, tuning.trainable, tuning.seed_runs, trainers; "
             "from trainers.models import build_student_for; build_student_for('cnn', 1, 4, (1, 8, 8), 10); "
             "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert found.stdout.strip() == "[]"


def test_the_torchvision_families_are_registered_outside_the_default_search() -> None:
    assert student_families() == ["cnn", "resnet", "mobilenet"]
    assert student_families(all_families=True) == ["cnn", "resnet", "mobilenet", *TORCHVISION_FAMILIES]
    assert list(student_family_bounds()) == student_families()
    assert list(student_family_bounds(all_families=True)) == student_families(all_families=True)


def test_every_registered_family_runs_at_its_corners_on_every_input_size() -> None:
    """Every registered family (the built-in ones too), at the four corners of its default ranges, on 1 and 3
    channels at 8, 28, 32 and 64 px, built as the trainers build it; its arch rebuilds the same weights."""
    for family, ((depth_low, depth_high), (width_low, width_high)) in student_family_bounds(True).items():
        for depth in (depth_low, depth_high):
            for width in (width_low, width_high):
                for channels in (1, 3):
                    for size in SIZES:
                        shape = (channels, size, size)
                        model = build_student(family, depth, width, channels, 10, stem_stride_for(shape),
                                              input_size=input_size_for(shape)).eval()
                        inputs = torch.randn(2, *shape)
                        with torch.no_grad():
                            logits, features = model.forward_features(inputs)
                        where = f"{family} d{depth} w{width} {shape}"
                        assert logits.shape == (2, 10), where
                        assert len(features) >= (2 if family in TORCHVISION_FAMILIES else 1), where
                        for feature in features:
                            assert feature.dim() == 4 and feature.shape[0] == 2, where
                            assert 1 <= feature.shape[-1] <= size, where
                        # Deeper stages never grow: the maps go shallow to deep.
                        assert [f.shape[-1] for f in features] == sorted((f.shape[-1] for f in features),
                                                                         reverse=True), where
                        rebuilt = build_from_arch(json.loads(json.dumps(model.arch)))
                        assert rebuilt.arch == model.arch, where
                        assert {n: t.shape for n, t in rebuilt.state_dict().items()} == {
                            n: t.shape for n, t in model.state_dict().items()}, where


@pytest.mark.parametrize("family", TORCHVISION_FAMILIES)
def test_a_student_is_torchvision_s_model_and_computes_its_logits(family: str) -> None:
    model = build_student(family, 2, 8, 1, 10, input_size=32).eval()
    assert type(model.net) is CLASSES[family]
    assert model.arch["input_size"] == 32 and "stem_stride" not in model.arch
    inputs = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(inputs), model.net(inputs), atol=1e-6)
    # The input size changes strides only: the same weights as at torchvision's own strides.
    assert count_parameters(model) == student_parameter_count(family, 2, 8, 1, 10)
    assert count_parameters(model) == count_parameters(build_student(family, 2, 8, 1, 10, input_size=224))


@pytest.mark.parametrize(("size", "kept"), [(4, 0), (7, 0), (8, 1), (15, 1), (16, 2), (27, 2), (28, 2), (32, 3),
                                            (63, 3), (64, 4), (127, 4), (128, 5), (224, 5), (512, 5)])
def test_the_stride_rule_keeps_downsamplings_down_to_4_px(size: int, kept: int) -> None:
    assert kept_downsamplings(size, 5) == kept
    assert kept_downsamplings(size, 2) == min(kept, 2)
    assert kept_downsamplings(None, 5) == 5


def _strides(model: nn.Module) -> list[int]:
    return [2 if index < kept_downsamplings(model.arch["input_size"], len(model.downsamplings)) else 1
            for index in range(len(model.downsamplings))]


@pytest.mark.parametrize("family", TORCHVISION_FAMILIES)
@pytest.mark.parametrize("size", [*SIZES, 224])
def test_each_size_keeps_its_downsamplings_in_forward_order(family: str, size: int) -> None:
    """The last map is input_size / 2**kept (rounded up by padding), and each kept group is strided."""
    depth_high = student_family_bounds(True)[family][0][1]
    model = build_student(family, depth_high, 8, 1, 10, input_size=size).eval()
    assert len(model.downsamplings) == 5  # torchvision's 32x, on a whole-depth model
    kept = kept_downsamplings(size, 5)
    for index, group in enumerate(model.downsamplings):
        for name in group:
            stride = model.net.get_submodule(name).stride
            assert stride in ((2, 2), 2) if index < kept else stride in ((1, 1), 1), (name, stride)
    with torch.no_grad():
        _, features = model.forward_features(torch.randn(1, 1, size, size))
    expected = size
    for _ in range(kept):
        expected = -(-expected // 2)
    assert features[-1].shape[-1] == expected >= 4


def test_a_resnet_block_and_a_shufflenet_unit_change_their_strides_together() -> None:
    resnet = build_student("resnet_basic", 1, 8, 1, 10, input_size=28)
    assert resnet.downsamplings == [["conv1"], ["maxpool"], ["layer2.0.conv1", "layer2.0.downsample.0"],
                                    ["layer3.0.conv1", "layer3.0.downsample.0"],
                                    ["layer4.0.conv1", "layer4.0.downsample.0"]]
    assert resnet.net.layer2[0].conv1.stride == resnet.net.layer2[0].downsample[0].stride == (1, 1)
    shufflenet = build_student("shufflenet_v2", 1, 8, 1, 10, input_size=28)
    unit = shufflenet.net.stage2[0]
    assert shufflenet.downsamplings[2] == ["stage2.0.branch1.0", "stage2.0.branch2.3"]
    assert unit.stride == 2 and unit.branch1[0].stride == unit.branch2[3].stride == (1, 1)


@pytest.mark.parametrize("family", TORCHVISION_FAMILIES)
def test_parameters_grow_with_width_and_depth_over_the_default_grid(family: str) -> None:
    """What the size bound's bisection on width per depth relies on, counted on the meta device: along every
    width at the lowest, middle and highest depth, and along every depth at the lowest, middle and highest
    width (the whole grid holds too, checked once by hand: about 3x the time)."""
    (depth_low, depth_high), (width_low, width_high) = student_family_bounds(True)[family]
    depths, widths = range(depth_low, depth_high + 1), range(width_low, width_high + 1)
    for depth in (depth_low, (depth_low + depth_high) // 2, depth_high):
        counts = [student_parameter_count(family, depth, width, 1, 10) for width in widths]
        assert counts == sorted(set(counts)), (depth, counts)  # strictly increasing
    for width in (width_low, (width_low + width_high) // 2, width_high):
        counts = [student_parameter_count(family, depth, width, 1, 10) for depth in depths]
        assert counts == sorted(set(counts)), (width, counts)


@pytest.mark.parametrize(("family", "depth", "width", "shape"),
                         [("cnn", 1, 8, (1, 8, 8)), ("resnet", 2, 4, (3, 32, 32)), ("mobilenet_v2", 3, 8, (1, 28, 28)),
                          ("mobilenet_v3_small", 4, 8, (3, 32, 32)), ("shufflenet_v2", 1, 4, (1, 28, 28)),
                          ("resnet_basic", 1, 4, (1, 8, 8)), ("efficientnet_b0", 1, 8, (3, 64, 64))])
def test_student_flops_on_the_meta_device_agree_with_count_flops(family: str, depth: int, width: int,
                                                                 shape: tuple[int, int, int]) -> None:
    model = build_student(family, depth, width, shape[0], 10, stem_stride_for(shape), input_size=input_size_for(shape))
    assert student_flops(family, depth, width, shape, 10) == count_flops(model, shape) > 0


def test_student_flops_follow_the_input_size() -> None:
    assert student_flops("resnet_basic", 1, 8, (1, 8, 8), 10) < student_flops("resnet_basic", 1, 8, (1, 28, 28), 10)
    assert student_flops("resnet_basic", 1, 8, [1, 28, 28], 10) == student_flops("resnet_basic", 1, 8, (1, 28, 28), 10)


@pytest.mark.parametrize("family", TORCHVISION_FAMILIES)
def test_a_student_trains_a_step_with_a_feature_loss(family: str) -> None:
    """One epoch on 32 digits through distill's normal path: KD plus FitNets' hint from a cnn teacher."""
    data = load_dataset("digits", max_train_samples=32)
    teacher = Teacher(build_student("cnn", 1, 4, 1, data.info.num_classes).eval(), "cnn-test")
    config = DistillConfig(family=family, depth=1, width=8, alpha=0.5, temperature=4.0, feature_loss="hint",
                           beta=1.0, epochs=1, batch_size=32)
    result = distill(config, data, teacher)
    assert result.model.arch["input_size"] == 8
    assert torch.isfinite(torch.tensor(result.history[-1].train_loss))
