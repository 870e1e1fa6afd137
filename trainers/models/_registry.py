"""The model registry: the base class every model shares, registration decorators and builders.

Every model is a :class:`KDModel`: ``forward(x)`` returns logits and ``forward_features(x)`` returns
``(logits, stage_features)``. Each model built here carries ``model.arch``, a JSON-safe dict from which
:func:`build_from_arch` rebuilds the same architecture (an exporter saves it next to the state_dict).
The stem's stride is the one thing chosen by input size (:func:`stem_stride_for`): 1 below 28 px, 2 from
28 px on, so that every later layer of a 28x28 or 32x32 model works at half the resolution. Measured on
this project's 2-core CPU at 28x28, that trains teachers and students about 3.5x faster (cnn-large 288 ->
1,032 images/s); the parameters are the same, and ``model.arch["stem_stride"]`` records the choice.
A model that chooses all its strides by input size instead (:meth:`KDModel.fit_input_size`, e.g. the
torchvision families) is built for ``input_size`` px and records ``model.arch["input_size"]``.

A family registered with ``default_search=False`` is built and sized like any other but stays out of the
default search space (:func:`student_family_bounds` and :func:`student_families` list it only with
``all_families=True``); a ``--space`` file can name it.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

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

    def __init__(self, kind: str, name: str, known: Iterable[str], more: Iterable[str] = ()) -> None:
        known_names, more_names = sorted(known), sorted(more)
        closest = difflib.get_close_matches(name, known_names + more_names, n=1)
        hint = f"; did you mean {closest[0]!r}?" if closest else ""
        listed = ", ".join(known_names)
        if more_names:
            listed += f"; outside the default search: {', '.join(more_names)}"
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {listed})")
        known_names = sorted(known_names + more_names)
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

    def fit_input_size(self, input_size: int | None) -> bool:
        """Set every stride for inputs of ``input_size`` px (``None``: the model's own strides) and return
        true, for a model that chooses its downsamplings by input size; the default returns false and
        changes nothing: the registry then sets the stem's stride (:meth:`stem_conv`)."""
        return False


def input_size_for(input_shape: tuple[int, ...]) -> int:
    """The input size a model is built for, from inputs of shape ``(channels, height, width)``: the
    smaller side."""
    return min(input_shape[-2:])


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
# Families registered with default_search=False.
_OUTSIDE_DEFAULT_SEARCH: set[str] = set()
_TEACHER_BUILDERS: dict[str, TeacherBuilder] = {}
_TEACHER_FAMILIES: dict[str, str | None] = {}


def register_student(name: str, depth: tuple[int, int] = DEFAULT_DEPTH, width: tuple[int, int] = DEFAULT_WIDTH,
                     default_search: bool = True) -> Callable[[StudentBuilder], StudentBuilder]:
    """Register a student family builder ``fn(depth, width, in_channels, num_classes) -> KDModel``.

    ``depth`` and ``width`` are the family's default search ranges, ``(low, high)`` inclusive; a
    ``--space`` file can still narrow or widen them. ``default_search=False`` keeps the family out of the
    default search space: only a ``--space`` file that names it searches it.
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
        if not default_search:
            _OUTSIDE_DEFAULT_SEARCH.add(name)
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


def _in_default_search(family: str) -> bool:
    return family not in _OUTSIDE_DEFAULT_SEARCH


def student_families(all_families: bool = False) -> list[str]:
    """Names of the student families of the default search, in registration order; with
    ``all_families``, of every registered family (``default_search=False`` ones too)."""
    return [name for name in _STUDENT_BUILDERS if all_families or _in_default_search(name)]


def student_family_bounds(all_families: bool = False) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """Each default-search family's default ``(depth range, width range)``, in registration order; with
    ``all_families``, every registered family's."""
    return {name: bounds for name, bounds in _STUDENT_BOUNDS.items() if all_families or _in_default_search(name)}


def _unknown_family(family: str) -> UnknownModelError:
    names = list(_STUDENT_BUILDERS)
    return UnknownModelError("student family", family, [name for name in names if _in_default_search(name)],
                             [name for name in names if not _in_default_search(name)])


def student_builder(family: str) -> StudentBuilder:
    """The registered builder of ``family`` (raw: no ``arch``, no stem stride), e.g. to size a teacher."""
    if family not in _STUDENT_BUILDERS:
        raise _unknown_family(family)
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
                  stem_stride: int = 1, *, input_size: int | None = None) -> KDModel:
    """Build a student of ``family`` with ``depth`` blocks per stage and ``width`` first-stage channels.

    ``stem_stride``: see :func:`stem_stride_for`, which the trainers use to choose it from the data.
    ``input_size`` (:func:`input_size_for` of the data): the pixels a family that chooses its strides by
    input size is built for (recorded as ``arch["input_size"]``; ``stem_stride`` does not apply to it);
    ``None`` keeps that family's own strides. Other families ignore it.
    """
    if family not in _STUDENT_BUILDERS:
        raise _unknown_family(family)
    _check_positive(depth=depth, width=width, in_channels=in_channels, num_classes=num_classes)
    if input_size is not None:
        _check_positive(input_size=input_size)
    model = _STUDENT_BUILDERS[family](depth, width, in_channels, num_classes)
    model.arch = {
        "kind": "student",
        "family": family,
        "depth": depth,
        "width": width,
        "in_channels": in_channels,
        "num_classes": num_classes,
    }
    if model.fit_input_size(input_size):
        model.arch["input_size"] = input_size
        return model
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

    An arch without ``stem_stride`` (written before it existed) has a stride-1 stem; ``input_size`` is
    passed back to a family that chooses its strides by it.
    """
    kind = arch.get("kind")
    stem_stride = arch.get("stem_stride", 1)
    if kind == "student":
        return build_student(
            arch["family"], arch["depth"], arch["width"], arch["in_channels"], arch["num_classes"], stem_stride,
            input_size=arch.get("input_size"),
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
        raise _unknown_family(family)
    return teacher_family(teacher_name) == family




def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (buffers such as BN running statistics are not counted)."""
    return sum(parameter.numel() for parameter in model.parameters())


# The in-place random fills torch.nn.init's functions call (kaiming_normal_ calls tensor.normal_ directly).
_RANDOM_FILLS = {Tensor.normal_, Tensor.uniform_}


class _OnMeta(TorchFunctionMode):
    """The meta device, with ``torch.nn.init``'s functions skipped: a meta tensor holds no values, and its
    random initialisation goes through torch's reference ops, more than half of a torchvision build's time."""

    def __enter__(self) -> _OnMeta:
        self.device = torch.device("meta")
        self.device.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.device.__exit__(*exc)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if (func in _RANDOM_FILLS or getattr(func, "__module__", None) == "torch.nn.init") and args \
                and isinstance(args[0], Tensor):
            return args[0]
        return func(*args, **(kwargs or {}))


@functools.lru_cache(maxsize=4096)
def student_parameter_count(family: str, depth: int, width: int, in_channels: int, num_classes: int) -> int:
    """Parameters of a student, known without training: built on the meta device (no memory, no init cost)."""
    with _OnMeta():
        return count_parameters(build_student(family, depth, width, in_channels, num_classes))


def teacher_parameter_count(name: str, in_channels: int, num_classes: int) -> int:
    """Parameters of the registered teacher ``name``, built on the meta device without its random
    initialisation (which alone takes about a second there on first use); ``UnknownModelError`` as ``build_teacher``."""
    with _OnMeta():
        return count_parameters(build_teacher(name, in_channels, num_classes))


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at batch 1 (multiply-adds count as two), from torch's counter, in eval mode
    (the model's mode is restored). Works on the meta device too."""
    # Imported here: torch's counter imports triton (0.1 s), which a worker that never counts FLOPs skips.
    from torch.utils.flop_counter import FlopCounterMode

    example = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example)
    model.train(was_training)
    return int(counter.get_total_flops())


def build_student_for(family: str, depth: int, width: int, input_shape: tuple[int, ...], num_classes: int) -> KDModel:
    """A student as the trainers build it for inputs of ``input_shape`` ``(channels, height, width)``: the stem
    stride (:func:`stem_stride_for`) and the strides a family chooses by input size (:func:`input_size_for`)
    follow the data."""
    return build_student(family, depth, width, input_shape[0], num_classes, stem_stride_for(input_shape),
                         input_size=input_size_for(input_shape))


def student_flops(family: str, depth: int, width: int, input_shape: tuple[int, ...], num_classes: int) -> int:
    """FLOPs (:func:`count_flops`) of a student built as the trainers build it for inputs of ``input_shape``
    ``(channels, height, width)``, known without training: counted on the meta device, cached."""
    return _student_flops(family, depth, width, tuple(input_shape), num_classes)


@functools.lru_cache(maxsize=4096)
def _student_flops(family: str, depth: int, width: int, input_shape: tuple[int, ...], num_classes: int) -> int:
    with _OnMeta():
        return count_flops(build_student_for(family, depth, width, input_shape, num_classes), input_shape)
