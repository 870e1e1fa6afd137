"""Tests of the model registry: every registered model on every dataset shape, parameter distillation."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from torch import nn

from trainers import models
from trainers.models import (
    STUDENT_FAMILIES,
    KDModel,
    UnknownModelError,
    build_from_arch,
    build_student,
    build_teacher,
    can_init_from_teacher,
    count_parameters,
    init_from_teacher,
    register_student,
    stem_stride_for,
    student_families,
    student_family_bounds,
    teacher_family,
    teacher_names,
    teacher_parameter_count,
)

# (in_channels, height, width) of sklearn digits, MNIST and CIFAR.
DATASET_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
NUM_CLASSES = [10, 100]
STUDENT_SIZES = [(1, 8), (2, 16)]  # (depth, width)


def _model_cases() -> list[object]:
    cases = []
    for family in student_families():
        for depth, width in STUDENT_SIZES:
            cases.append(pytest.param(("student", family, depth, width), id=f"{family}-d{depth}-w{width}"))
    for name in teacher_names():
        cases.append(pytest.param(("teacher", name, None, None), id=name))
    return cases


def _build(case: tuple[str, str, int | None, int | None], in_channels: int, num_classes: int,
           stem_stride: int = 1) -> KDModel:
    kind, name, depth, width = case
    if kind == "student":
        assert depth is not None and width is not None
        return build_student(name, depth, width, in_channels, num_classes, stem_stride)
    return build_teacher(name, in_channels, num_classes, stem_stride)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_student_families_come_from_the_registry() -> None:
    assert STUDENT_FAMILIES == ("cnn", "resnet", "mobilenet")
    assert student_families() == list(STUDENT_FAMILIES)
    assert {"cnn-large", "resnet-large", "mobilenet-large", "resnet18", "mobilenet_v2"} <= set(
        teacher_names()
    )


@pytest.mark.parametrize("name", teacher_names())
def test_teacher_parameter_count_is_the_built_teachers(name: str) -> None:
    """Counted on the meta device, initialisation skipped: the same count as the real model's."""
    for in_channels, num_classes in ((1, 10), (3, 100)):
        expected = count_parameters(build_teacher(name, in_channels, num_classes))
        assert teacher_parameter_count(name, in_channels, num_classes) == expected
    with pytest.raises(UnknownModelError):
        teacher_parameter_count("no-such-teacher", 1, 10)


@pytest.mark.parametrize("num_classes", NUM_CLASSES)
@pytest.mark.parametrize("shape", DATASET_SHAPES, ids=lambda shape: "x".join(map(str, shape)))
@pytest.mark.parametrize("case", _model_cases())
def test_every_registered_model_runs_on_every_dataset_shape(
    case: tuple[str, str, int | None, int | None], shape: tuple[int, int, int], num_classes: int
) -> None:
    """Built as the trainers build them: with the stem stride the input size calls for."""
    in_channels, height, width = shape
    model = _build(case, in_channels, num_classes, stem_stride_for(shape)).eval()
    inputs = torch.randn(2, in_channels, height, width)
    with torch.no_grad():
        logits = model(inputs)
        feature_logits, features = model.forward_features(inputs)
    assert logits.shape == (2, num_classes)
    assert torch.allclose(logits, feature_logits)
    assert isinstance(features, list) and features
    for feature in features:
        assert feature.dim() == 4 and feature.shape[0] == 2
    # Every registered model has a stem the registry strides: its first stage sees the strided size.
    assert model.arch["stem_stride"] == stem_stride_for(shape)
    assert features[0].shape[-1] == -(-width // stem_stride_for(shape))


@pytest.mark.parametrize(("shape", "stride"), [((1, 8, 8), 1), ((1, 27, 27), 1), ((1, 28, 28), 2),
                                               ((3, 32, 32), 2), ((3, 27, 64), 1), ((3, 224, 224), 2)])
def test_the_stem_strides_2_from_28_px_on(shape: tuple[int, int, int], stride: int) -> None:
    assert stem_stride_for(shape) == stride


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 64, 64)])
def test_a_student_built_for_a_data_shape_takes_its_strides_from_it(shape: tuple[int, int, int]) -> None:
    for family in ("cnn", "mobilenet_v2"):
        built = models.build_student_for(family, 1, 8, shape, 10)
        by_hand = build_student(family, 1, 8, shape[0], 10, stem_stride_for(shape),
                                input_size=models.input_size_for(shape))
        assert built.arch == by_hand.arch
    assert models.build_student_for("cnn", 1, 8, shape, 10).arch["stem_stride"] == stem_stride_for(shape)


@pytest.mark.parametrize("family", STUDENT_FAMILIES)
def test_a_stride_2_stem_keeps_the_parameters_and_halves_every_stage(family: str) -> None:
    full, strided = build_student(family, 2, 8, 1, 10), build_student(family, 2, 8, 1, 10, stem_stride=2)
    assert {n: t.shape for n, t in full.state_dict().items()} == {n: t.shape for n, t in strided.state_dict().items()}
    inputs = torch.randn(2, 1, 28, 28)
    sizes = [[tuple(f.shape[-2:]) for f in m.forward_features(inputs)[1]] for m in (full, strided)]
    assert sizes == [[(28, 28), (14, 14), (7, 7)], [(14, 14), (7, 7), (4, 4)]]


def test_a_model_without_a_stem_conv_keeps_its_own_stride(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fixed(KDModel):
        def __init__(self, in_channels: int, num_classes: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)

        def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            features = self.conv(x)
            return features.mean(dim=(2, 3)), [features]

    monkeypatch.setattr(models._registry, "_STUDENT_BUILDERS", {"fixed": lambda depth, width, c, k: Fixed(c, k)})
    model = build_student("fixed", 1, 4, 1, 10, stem_stride=2)
    assert model.arch["stem_stride"] == 1 and model.conv.stride == (1, 1)


def test_student_stage_features_follow_the_width_schedule() -> None:
    model = build_student("resnet", 2, 8, 1, 10)
    _, features = model.forward_features(torch.randn(2, 1, 28, 28))
    assert [tuple(f.shape[1:]) for f in features] == [(8, 28, 28), (16, 14, 14), (32, 7, 7)]


def test_unknown_student_family_names_the_closest_match() -> None:
    with pytest.raises(UnknownModelError, match=r"'resnt'.*did you mean 'resnet'.*cnn, mobilenet, resnet"):
        build_student("resnt", 1, 8, 1, 10)


def test_unknown_teacher_names_the_closest_match() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'resnet18'") as raised:
        build_teacher("resnet19", 1, 10)
    assert isinstance(raised.value, ValueError)
    assert raised.value.closest == "resnet18"
    with pytest.raises(UnknownModelError, match="did you mean 'mobilenet_v2'"):
        teacher_family("mobilenetv2")


def test_unknown_name_without_a_close_match_lists_the_known_names() -> None:
    with pytest.raises(UnknownModelError, match="known: cnn, mobilenet, resnet") as raised:
        build_student("transformer", 1, 8, 1, 10)
    assert "did you mean" not in str(raised.value)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_invalid_sizes_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="depth"):
        build_student("cnn", bad, 8, 1, 10)  # type: ignore[arg-type]


def test_teacher_family() -> None:
    assert teacher_family("resnet-large") == "resnet"
    assert teacher_family("cnn-large") == "cnn"
    assert teacher_family("mobilenet-large") == "mobilenet"
    assert teacher_family("resnet18") is None
    assert teacher_family("mobilenet_v2") is None


@pytest.mark.parametrize("family", STUDENT_FAMILIES)
@pytest.mark.parametrize(
    "teacher_name", ["cnn-large", "resnet-large", "mobilenet-large", "resnet18", "mobilenet_v2"]
)
def test_can_init_from_teacher_truth_table(family: str, teacher_name: str) -> None:
    expected = teacher_name == f"{family}-large"
    assert can_init_from_teacher(family, teacher_name) is expected


def _trained_looking(model: KDModel, in_channels: int) -> KDModel:
    """Give BN running statistics non-default values, so copying buffers is actually observable."""
    model.train()
    with torch.no_grad():
        model(torch.randn(4, in_channels, 8, 8) * 3 + 1)
    return model.eval()


@pytest.mark.parametrize("family", STUDENT_FAMILIES)
@pytest.mark.parametrize(("depth", "width"), [(2, 16), (1, 8), (3, 32)])
def test_init_from_teacher_copies_leading_slices(family: str, depth: int, width: int) -> None:
    teacher = _trained_looking(build_teacher(f"{family}-large", 1, 10), 1)
    student = build_student(family, depth, width, 1, 10)
    copied = init_from_teacher(student, teacher)

    teacher_state = teacher.state_dict()
    student_state = student.state_dict()
    expected = 0
    for name, student_tensor in student_state.items():
        assert name in teacher_state, f"{name} has no counterpart: family members must share module names"
        teacher_tensor = teacher_state[name]
        leading = tuple(slice(0, size) for size in student_tensor.shape)
        assert torch.equal(student_tensor, teacher_tensor[leading]), name
        expected += 1
    assert copied == expected
    assert any("running_var" in name for name in student_state)

    with torch.no_grad():
        logits = student(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_init_from_teacher_with_the_same_size_reproduces_the_teacher() -> None:
    teacher = _trained_looking(build_teacher("resnet-large", 1, 10), 1)
    student = build_student("resnet", 3, 32, 1, 10).eval()
    init_from_teacher(student, teacher)
    inputs = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(student(inputs), teacher(inputs))


def test_init_from_teacher_skips_tensors_larger_than_the_teachers() -> None:
    teacher = build_teacher("resnet-large", 1, 10)  # depth 3, width 32
    student = build_student("resnet", 4, 64, 1, 10)  # deeper and wider
    before = {name: tensor.clone() for name, tensor in student.state_dict().items()}
    copied = init_from_teacher(student, teacher)
    after = student.state_dict()
    teacher_state = teacher.state_dict()
    assert 0 < copied < len(after)
    # Wider tensors and blocks past the teacher's depth keep their own initialisation.
    assert torch.equal(after["stem.0.weight"], before["stem.0.weight"])
    assert "stages.0.3.conv1.weight" not in teacher_state
    assert torch.equal(after["stages.0.3.conv1.weight"], before["stages.0.3.conv1.weight"])
    # num_batches_tracked is a 0-dim buffer: copied, not sliced.
    assert torch.equal(after["stem.1.num_batches_tracked"], teacher_state["stem.1.num_batches_tracked"])


def test_init_from_teacher_rejects_other_families() -> None:
    student = build_student("cnn", 1, 8, 1, 10)
    with pytest.raises(ValueError, match="family"):
        init_from_teacher(student, build_teacher("resnet-large", 1, 10))
    with pytest.raises(ValueError, match="family"):
        init_from_teacher(student, build_teacher("resnet18", 1, 10))


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: build_student("mobilenet", 2, 8, 3, 100), id="student"),
        pytest.param(lambda: build_teacher("resnet-large", 1, 10), id="teacher"),
        pytest.param(lambda: build_teacher("resnet18", 3, 10), id="torchvision-teacher"),
        pytest.param(lambda: build_student("cnn", 1, 4, 1, 10, stem_stride=2), id="stride-2-student"),
        pytest.param(lambda: build_teacher("mobilenet_v2", 3, 10, stem_stride=2), id="stride-2-teacher"),
    ],
)
def test_build_from_arch_rebuilds_the_same_architecture(model: Callable[[], KDModel]) -> None:
    original = model()
    arch = json.loads(json.dumps(original.arch))  # the exporter stores it as JSON
    rebuilt = build_from_arch(arch)
    assert rebuilt.arch == original.arch
    original_shapes = {name: tuple(t.shape) for name, t in original.state_dict().items()}
    rebuilt_shapes = {name: tuple(t.shape) for name, t in rebuilt.state_dict().items()}
    assert rebuilt_shapes == original_shapes
    assert rebuilt.stem_conv().stride == original.stem_conv().stride


def test_an_arch_written_before_stem_strides_rebuilds_a_stride_1_stem() -> None:
    arch = {key: value for key, value in build_student("cnn", 1, 4, 1, 10, stem_stride=2).arch.items()
            if key != "stem_stride"}
    rebuilt = build_from_arch(arch)
    assert rebuilt.arch["stem_stride"] == 1 and rebuilt.stem_conv().stride == (1, 1)


def test_build_from_arch_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        build_from_arch({"kind": "oracle"})


@pytest.mark.parametrize("family", STUDENT_FAMILIES)
def test_count_parameters_grows_with_width_and_depth(family: str) -> None:
    small = count_parameters(build_student(family, 1, 8, 1, 10))
    wider = count_parameters(build_student(family, 1, 16, 1, 10))
    deeper = count_parameters(build_student(family, 2, 8, 1, 10))
    assert small < wider and small < deeper


def test_count_parameters_counts_scalars() -> None:
    assert count_parameters(nn.Linear(3, 2)) == 3 * 2 + 2


def test_a_family_registers_its_default_search_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert student_family_bounds() == {name: ((1, 3), (2, 32)) for name in ("cnn", "resnet", "mobilenet")}
    monkeypatch.setattr(models._registry, "_STUDENT_BUILDERS", dict(models._registry._STUDENT_BUILDERS))
    monkeypatch.setattr(models._registry, "_STUDENT_BOUNDS", dict(models._registry._STUDENT_BOUNDS))
    register_student("wide", width=(16, 128))(models.students.cnn)
    register_student("shallow", depth=(1, 1))(models.students.cnn)
    assert student_family_bounds()["wide"] == ((1, 3), (16, 128))
    assert student_family_bounds()["shallow"] == ((1, 1), (2, 32))
    assert student_families()[-2:] == ["wide", "shallow"]


@pytest.mark.parametrize(("bounds", "fragment"),
                         [({"depth": (0, 2)}, "depth low"), ({"width": (8, 4)}, "low above high"),
                          ({"width": (2.5, 8)}, "width low")], ids=["depth 0", "reversed", "float"])
def test_bad_default_bounds_are_refused_at_registration(bounds: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        register_student("bad", **bounds)
    assert "bad" not in student_families()


def test_an_unknown_family_lists_the_families_outside_the_default_search_apart() -> None:
    with pytest.raises(UnknownModelError, match=r"did you mean 'shufflenet_v2'.*known: cnn, mobilenet, resnet; "
                                                r"outside the default search: efficientnet_b0, .*shufflenet_v2"):
        build_student("shufflenet", 1, 8, 1, 10)
