"""Model registry: student families, teachers, and parameter distillation between them.

Every model is a :class:`KDModel`: ``forward(x)`` returns logits and ``forward_features(x)`` returns
``(logits, stage_features)`` where ``stage_features`` holds one ``(N, C, H, W)`` map per stage, in order.
Each model built through this module carries ``model.arch``, a JSON-safe dict from which
:func:`build_from_arch` rebuilds the same architecture (an exporter saves it next to the state_dict).

Student families (``"cnn"``, ``"resnet"``, ``"mobilenet"``) share one skeleton: a conv stem,
three stages of ``depth`` blocks with widths ``[width, 2 * width, 4 * width]``, stride 2 at the start of
stages 2 and 3, global average pooling and a linear head. Nothing depends on the input's height and
width, so the same model runs on 8x8 digits, 28x28 MNIST and 32x32 CIFAR images.

The stem's stride is the one thing chosen by input size (:func:`stem_stride_for`): 1 below 28 px, 2 from
28 px on, so that every later layer of a 28x28 or 32x32 model works at half the resolution. Measured on
this project's 2-core CPU at 28x28, that trains teachers and students about 3.5x faster (cnn-large 288 ->
1,032 images/s); the parameters are the same, and ``model.arch["stem_stride"]`` records the choice.

Members of one family use the same module names (``stem``, ``stages.<stage>.<block>``, ``head``), so a
small member's state_dict is, name by name, a leading slice of a large member's. That is what makes
:func:`init_from_teacher` (parameter distillation) a plain copy of ``teacher_tensor[:s0, :s1, ...]``.

New architectures plug in with decorators, as in timm::

    @register_student("mynet", depth=(1, 4), width=(8, 64))
    def mynet(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel: ...

A registered family is searchable with its default depth and width ranges (the search layer builds the
default space from :func:`student_family_bounds`); nothing in ``spaces/`` names it.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "STUDENT_FAMILIES",
    "KDModel",
    "UnknownModelError",
    "build_from_arch",
    "build_student",
    "build_teacher",
    "can_init_from_teacher",
    "count_parameters",
    "init_from_teacher",
    "register_student",
    "register_teacher",
    "stem_stride_for",
    "student_families",
    "student_family_bounds",
    "teacher_family",
    "teacher_names",
]

# Expansion of MobileNetV2 blocks; 4 rather than the paper's 6 keeps small students small.
MOBILENET_EXPAND_RATIO = 4
# A family's default search ranges: blocks per stage, and channels of the first stage. Widths from 2
# channels: on 10 classes the smallest student (cnn, depth 1, width 2) has 536 parameters, 0.1 % of digits'
# default teacher (cnn-large, 491k) and 0.05 % of resnet-large (1.08M). The size bound (--max-params,
# default 5 % of the teacher) then cuts each family's depth and width.
DEFAULT_DEPTH = (1, 3)
DEFAULT_WIDTH = (2, 32)
# Inputs at least this many pixels high and wide get a stride-2 stem (see the module docstring).
DOWNSAMPLING_STEM_FROM_PX = 28


class UnknownModelError(ValueError):
    """A student family or teacher name that is not registered.

    The message names the closest registered name (if any is close) and lists all of them.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known_names = sorted(known)
        closest = difflib.get_close_matches(name, known_names, n=1)
        hint = f"; did you mean {closest[0]!r}?" if closest else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {', '.join(known_names)})")
        self.name = name
        self.known = known_names
        self.closest = closest[0] if closest else None


class KDModel(nn.Module):
    """Base class of every student and teacher.

    Subclasses implement :meth:`forward_features`; :meth:`forward` returns its logits.
    ``arch`` is filled in by :func:`build_student` / :func:`build_teacher`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.arch: dict[str, Any] = {}

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Return ``(logits, stage_features)``: one ``(N, C, H, W)`` map per stage, in order."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits ``(N, num_classes)``."""
        logits, _ = self.forward_features(x)
        return logits

    def stem_conv(self) -> nn.Conv2d | None:
        """The first convolution, whose stride the registry sets by input size (:func:`stem_stride_for`).

        ``None`` (the default) for a model without one: it keeps its own stride at every input size.
        """
        return None


def stem_stride_for(input_shape: tuple[int, ...]) -> int:
    """The stem stride for inputs of shape ``(channels, height, width)``: 2 from 28 px on, else 1."""
    return 2 if min(input_shape[-2:]) >= DOWNSAMPLING_STEM_FROM_PX else 1


def _with_stem_stride(model: KDModel, stride: int) -> KDModel:
    _check_positive(stem_stride=stride)
    stem = model.stem_conv()
    if stem is None:
        stride = 1
    else:
        stem.stride = (stride, stride)
    model.arch["stem_stride"] = stride
    return model


# fn(depth, width, in_channels, num_classes) and fn(in_channels, num_classes).
StudentBuilder = Callable[[int, int, int, int], KDModel]
TeacherBuilder = Callable[[int, int], KDModel]

_STUDENT_BUILDERS: dict[str, StudentBuilder] = {}
# family -> ((depth low, depth high), (width low, width high)): its default search ranges.
_STUDENT_BOUNDS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
_TEACHER_BUILDERS: dict[str, TeacherBuilder] = {}
_TEACHER_FAMILIES: dict[str, str | None] = {}


def register_student(name: str, depth: tuple[int, int] = DEFAULT_DEPTH,
                     width: tuple[int, int] = DEFAULT_WIDTH) -> Callable[[StudentBuilder], StudentBuilder]:
    """Register a student family builder ``fn(depth, width, in_channels, num_classes) -> KDModel``.

    ``depth`` and ``width`` are the family's default search ranges, ``(low, high)`` inclusive; a
    ``--space`` file can still narrow or widen them.
    """
    for what, (low, high) in (("depth", depth), ("width", width)):
        _check_positive(**{f"{what} low": low, f"{what} high": high})
        if low > high:
            raise ValueError(f"student family {name!r}: {what} range ({low}, {high}) has low above high")

    def decorator(builder: StudentBuilder) -> StudentBuilder:
        if name in _STUDENT_BUILDERS:
            raise ValueError(f"student family {name!r} is already registered")
        _STUDENT_BUILDERS[name] = builder
        _STUDENT_BOUNDS[name] = (depth, width)
        return builder

    return decorator


def register_teacher(name: str, family: str | None = None) -> Callable[[TeacherBuilder], TeacherBuilder]:
    """Register a teacher builder ``fn(in_channels, num_classes) -> KDModel``.

    ``family`` names the student family the teacher is a large member of (its weights can then
    initialise students of that family); ``None`` for architectures outside the student families.
    """

    def decorator(builder: TeacherBuilder) -> TeacherBuilder:
        if name in _TEACHER_BUILDERS:
            raise ValueError(f"teacher {name!r} is already registered")
        _TEACHER_BUILDERS[name] = builder
        _TEACHER_FAMILIES[name] = family
        return builder

    return decorator


def student_families() -> list[str]:
    """Names of the registered student families, in registration order."""
    return list(_STUDENT_BUILDERS)


def student_family_bounds() -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """Each registered family's default ``(depth range, width range)``, in registration order."""
    return dict(_STUDENT_BOUNDS)


def teacher_names() -> list[str]:
    """Names of the registered teachers, in registration order."""
    return list(_TEACHER_BUILDERS)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        # bool is an int subclass; True as a depth is a caller bug, not a depth of 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def build_student(family: str, depth: int, width: int, in_channels: int, num_classes: int,
                  stem_stride: int = 1) -> KDModel:
    """Build a student of ``family`` with ``depth`` blocks per stage and ``width`` first-stage channels.

    ``stem_stride``: see :func:`stem_stride_for`, which the trainers use to choose it from the data.
    """
    if family not in _STUDENT_BUILDERS:
        raise UnknownModelError("student family", family, _STUDENT_BUILDERS)
    _check_positive(depth=depth, width=width, in_channels=in_channels, num_classes=num_classes)
    model = _STUDENT_BUILDERS[family](depth, width, in_channels, num_classes)
    model.arch = {
        "kind": "student",
        "family": family,
        "depth": depth,
        "width": width,
        "in_channels": in_channels,
        "num_classes": num_classes,
    }
    return _with_stem_stride(model, stem_stride)


def build_teacher(name: str, in_channels: int, num_classes: int, stem_stride: int = 1) -> KDModel:
    """Build the registered teacher ``name`` (randomly initialised; never downloads weights).

    ``stem_stride``: see :func:`stem_stride_for`.
    """
    if name not in _TEACHER_BUILDERS:
        raise UnknownModelError("teacher", name, _TEACHER_BUILDERS)
    _check_positive(in_channels=in_channels, num_classes=num_classes)
    model = _TEACHER_BUILDERS[name](in_channels, num_classes)
    model.arch = {
        "kind": "teacher",
        "name": name,
        "family": _TEACHER_FAMILIES[name],
        "in_channels": in_channels,
        "num_classes": num_classes,
    }
    return _with_stem_stride(model, stem_stride)


def build_from_arch(arch: dict[str, Any]) -> KDModel:
    """Rebuild a model (random weights) from its ``model.arch`` dict, e.g. as loaded from JSON.

    An arch without ``stem_stride`` (written before it existed) has a stride-1 stem.
    """
    kind = arch.get("kind")
    stem_stride = arch.get("stem_stride", 1)
    if kind == "student":
        return build_student(
            arch["family"], arch["depth"], arch["width"], arch["in_channels"], arch["num_classes"], stem_stride
        )
    if kind == "teacher":
        return build_teacher(arch["name"], arch["in_channels"], arch["num_classes"], stem_stride)
    raise ValueError(f"arch['kind'] must be 'student' or 'teacher', got {kind!r}")


def teacher_family(name: str) -> str | None:
    """The student family teacher ``name`` belongs to, or ``None`` (e.g. torchvision teachers)."""
    if name not in _TEACHER_BUILDERS:
        raise UnknownModelError("teacher", name, _TEACHER_BUILDERS)
    return _TEACHER_FAMILIES[name]


def can_init_from_teacher(family: str, teacher_name: str) -> bool:
    """Whether students of ``family`` can start from sliced weights of teacher ``teacher_name``."""
    if family not in _STUDENT_BUILDERS:
        raise UnknownModelError("student family", family, _STUDENT_BUILDERS)
    return teacher_family(teacher_name) == family


def init_from_teacher(student: KDModel, teacher: KDModel) -> int:
    """Copy depth- and width-sliced teacher weights into ``student``; return the number of tensors copied.

    For every state_dict entry (parameters and buffers, BN running statistics included) present under
    the same name in both models, the student receives ``teacher_tensor[:s0, :s1, ...]`` where
    ``s0, s1, ...`` is the student's shape: the first blocks of each stage, the first channels of each
    layer. Entries the teacher lacks (deeper students) or has smaller in some dimension (wider students)
    keep their initialisation.

    Raises:
        ValueError: the two models are not members of the same student family.
    """
    student_family = student.arch.get("family")
    source_family = teacher.arch.get("family")
    if student_family is None or student_family != source_family:
        raise ValueError(
            f"cannot initialise a {student_family!r} student from a teacher of family {source_family!r}: "
            "parameter distillation needs both in the same student family"
        )
    teacher_state = teacher.state_dict()
    copied = 0
    with torch.no_grad():
        for name, student_tensor in student.state_dict().items():
            teacher_tensor = teacher_state.get(name)
            if teacher_tensor is None or teacher_tensor.dim() != student_tensor.dim():
                continue
            if any(s > t for s, t in zip(student_tensor.shape, teacher_tensor.shape, strict=True)):
                continue
            leading = tuple(slice(0, size) for size in student_tensor.shape)
            # state_dict tensors share storage with the module, so copy_ writes into the student.
            student_tensor.copy_(teacher_tensor[leading])
            copied += 1
    return copied


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (buffers such as BN running statistics are not counted)."""
    return sum(parameter.numel() for parameter in model.parameters())


@functools.lru_cache(maxsize=4096)
def student_parameter_count(family: str, depth: int, width: int, in_channels: int, num_classes: int) -> int:
    """Parameters of a student, known without training: built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return count_parameters(build_student(family, depth, width, in_channels, num_classes))


# --------------------------------------------------------------------------------------------------
# Building blocks of the student families.


class ConvBNAct(nn.Sequential):
    """3x3 (or ``kernel_size``) convolution, batch norm, activation: the ``cnn`` family's block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        activation: type[nn.Module] = nn.ReLU,
        kernel_size: int = 3,
        groups: int = 1,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            activation(inplace=True),
        )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs plus a shortcut (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection, residual if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        hidden_channels = in_channels * MOBILENET_EXPAND_RATIO
        self.expand = ConvBNAct(in_channels, hidden_channels, activation=nn.ReLU6, kernel_size=1)
        self.depthwise = ConvBNAct(
            hidden_channels, hidden_channels, stride=stride, activation=nn.ReLU6, groups=hidden_channels
        )
        # No activation after the projection: the "linear bottleneck" of MobileNetV2.
        self.project = nn.Sequential(
            nn.Conv2d(hidden_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


BlockBuilder = Callable[[int, int, int], nn.Module]


class StagedNet(KDModel):
    """The student skeleton: stem, three stages of blocks, global average pool, linear head."""

    def __init__(
        self,
        block: BlockBuilder,
        depth: int,
        width: int,
        in_channels: int,
        num_classes: int,
        stem_activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        stage_widths = [width, 2 * width, 4 * width]
        self.stem = ConvBNAct(in_channels, width, activation=stem_activation)
        stages = []
        channels = width
        for stage_index, stage_width in enumerate(stage_widths):
            first_stride = 1 if stage_index == 0 else 2
            blocks = []
            for block_index in range(depth):
                blocks.append(block(channels, stage_width, first_stride if block_index == 0 else 1))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(channels, num_classes)
        _init_weights(self)

    def stem_conv(self) -> nn.Conv2d:
        return self.stem[0]

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        logits = self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        return logits, features


def _init_weights(model: nn.Module) -> None:
    # Same scheme as torchvision's ResNet/MobileNetV2, so students and teachers start alike.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@register_student("cnn")
def cnn(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """Plain conv-bn-relu network."""
    return StagedNet(ConvBNAct, depth, width, in_channels, num_classes)


@register_student("resnet")
def resnet(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """CIFAR-style ResNet of basic blocks (depth 3 at width 16 is ResNet-20)."""
    return StagedNet(BasicBlock, depth, width, in_channels, num_classes)


@register_student("mobilenet")
def mobilenet(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """MobileNetV2-style network of inverted residual blocks behind a conv stem."""
    return StagedNet(InvertedResidual, depth, width, in_channels, num_classes, stem_activation=nn.ReLU6)


STUDENT_FAMILIES: tuple[str, ...] = tuple(_STUDENT_BUILDERS)

# --------------------------------------------------------------------------------------------------
# Teachers. The "-large" ones are big members of the student families, sized so that one epoch on
# sklearn digits takes a few seconds on one CPU core; they can seed students by parameter distillation.

LARGE_TEACHER_SIZES: dict[str, tuple[int, int]] = {
    "cnn": (3, 32),
    "resnet": (3, 32),
    "mobilenet": (3, 32),
}


def _register_large_teacher(family: str, depth: int, width: int) -> None:
    def build(in_channels: int, num_classes: int) -> KDModel:
        return _STUDENT_BUILDERS[family](depth, width, in_channels, num_classes)

    build.__name__ = f"{family}_large"
    build.__doc__ = f"{family} student family at depth {depth}, width {width}."
    register_teacher(f"{family}-large", family=family)(build)


def _register_large_teachers() -> None:
    for family, (depth, width) in LARGE_TEACHER_SIZES.items():
        _register_large_teacher(family, depth, width)


_register_large_teachers()


class TorchvisionResNet18(KDModel):
    """torchvision ResNet-18 for small inputs: 3x3 stride-1 stem, no max-pool.

    Stage features are the outputs of ``layer1`` .. ``layer4``.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        # Imported here: torchvision.models costs about a second to import, in every process that imports
        # the registry (each Ray worker), and only these teachers need it.
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        # The ImageNet stem (7x7 stride 2 + max-pool) would shrink an 8x8 digit to 2x2 before layer1.
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        self.net = net

    def stem_conv(self) -> nn.Conv2d:
        return self.net.conv1

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        net = self.net
        x = net.relu(net.bn1(net.conv1(x)))
        features = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            features.append(x)
        logits = net.fc(torch.flatten(net.avgpool(x), 1))
        return logits, features


class TorchvisionMobileNetV2(KDModel):
    """torchvision MobileNetV2 for small inputs: stride-1 first conv.

    Stage features are the last block at each resolution plus the last inverted-residual block
    (torchvision ``features[1, 3, 6, 13, 17]``: 16, 24, 32, 96, 320 channels, as timm's
    ``features_only``); the final 1x1 conv to 1280 channels feeds the classifier only.
    """

    STAGE_ENDS = (1, 3, 6, 13, 17)

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2  # imported here, as in TorchvisionResNet18
        from torchvision.ops.misc import Conv2dNormActivation

        net = mobilenet_v2(weights=None, num_classes=num_classes)
        first_channels = net.features[0][0].out_channels
        net.features[0] = Conv2dNormActivation(
            in_channels, first_channels, stride=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6
        )
        nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
        self.net = net

    def stem_conv(self) -> nn.Conv2d:
        return self.net.features[0][0]

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for index, layer in enumerate(self.net.features):
            x = layer(x)
            if index in self.STAGE_ENDS:
                features.append(x)
        logits = self.net.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        return logits, features


@register_teacher("resnet18")
def resnet18(in_channels: int, num_classes: int) -> KDModel:
    """torchvision ResNet-18 (random init) adapted to small inputs."""
    return TorchvisionResNet18(in_channels, num_classes)


@register_teacher("mobilenet_v2")
def mobilenet_v2(in_channels: int, num_classes: int) -> KDModel:
    """torchvision MobileNetV2 (random init) adapted to small inputs."""
    return TorchvisionMobileNetV2(in_channels, num_classes)
