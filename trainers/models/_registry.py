"""The model registry: the base class every model shares, registration decorators and builders.

Every model is a :class:`KDModel`: ``forward(x)`` returns logits and ``forward_features(x)`` returns
``(logits, stage_features)``. Each model built here carries ``model.arch``, a JSON-safe dict from which
:func:`build_from_arch` rebuilds the same architecture (an exporter saves it next to the state_dict).
The stem's stride is the one thing chosen by input size (:func:`stem_stride_for`): 1 below 28 px, 2 from
28 px on, so that every later layer of a 28x28 or 32x32 model works at half the resolution. Measured on
this project's 2-core CPU at 28x28, that trains teachers and students about 3.5x faster (cnn-large 288 ->
1,032 images/s); the parameters are the same, and ``model.arch["stem_stride"]`` records the choice.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

# Expansion of MobileNetV2 blocks; 4 rather than the paper's 6 keeps small students small.
MOBILENET_EXPAND_RATIO = 4
# A family's default search ranges: blocks per stage, and channels of the first stage. Widths from 2
# channels: on 10 classes the smallest student (cnn, depth 1, width 2) has 536 parameters, 0.1 % of digits'
# default teacher (cnn-large, 491k) and 0.05 % of resnet-large (1.08M). The size bound (--max-params,
# default 2 % of the teacher) then cuts each family's depth and width.
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

    # Whether ``forward_features`` gives stage maps a feature loss can use: every kdsearch model does; a
    # foreign teacher only on the layers its user names.
    provides_features: bool = True

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


def student_builder(family: str) -> StudentBuilder:
    """The registered builder of ``family`` (raw: no ``arch``, no stem stride), e.g. to size a teacher."""
    if family not in _STUDENT_BUILDERS:
        raise UnknownModelError("student family", family, _STUDENT_BUILDERS)
    return _STUDENT_BUILDERS[family]


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




def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (buffers such as BN running statistics are not counted)."""
    return sum(parameter.numel() for parameter in model.parameters())


@functools.lru_cache(maxsize=4096)
def student_parameter_count(family: str, depth: int, width: int, in_channels: int, num_classes: int) -> int:
    """Parameters of a student, known without training: built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return count_parameters(build_student(family, depth, width, in_channels, num_classes))
