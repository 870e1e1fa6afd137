"""A user's teacher, from wherever it comes: one loader, one entry per source.

| source | flags | module |
|---|---|---|
| a library architecture | ``--teacher torchvision:NAME`` or ``timm:NAME``, ``--teacher-weights FILE`` | ``_library`` |
| the user's own class | ``--teacher pkg.module:build`` or ``file.py:build`` [``--teacher-weights``] | ``_factory`` |
| a model in a file | ``--teacher-checkpoint FILE``: kdsearch dict, TorchScript, torch.export, pickled | ``_files`` |

Weights files (``.pt``/``.pth`` read with ``weights_only``, or ``.safetensors``) and checkpoints are told apart
by their bytes (``_formats``). Every model but kdsearch's own format is wrapped in a
:class:`~trainers.models.ForeignTeacher` with the teacher's own preprocessing; every problem is one
``TeacherCheckpointError`` line naming the file or flag and the fix.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.data import TensorSplits
from trainers.models import ForeignTeacher, KDModel, TeacherPreprocessing
from trainers.teacher_sources._common import TeacherCheckpointError, check_and_measure, first_line
from trainers.teacher_sources._factory import FactoryRecipe, call_factory, is_factory, is_file_target
from trainers.teacher_sources._files import OpenedFile, open_checkpoint
from trainers.teacher_sources._fit import fit_input_channels, input_channels, load_exactly
from trainers.teacher_sources._formats import read_state_dict
from trainers.teacher_sources._library import (
    LIBRARIES,
    TIMM_MISSING,
    LibraryRecipe,
    build_library_model,
    library_preprocessing,
)
from trainers.teacher_training import TeacherResult

__all__ = ["LIBRARIES", "PREPROCESSING", "TIMM_MISSING", "TeacherCheckpointError", "TeacherSource",
           "is_factory", "is_file_target", "load_teacher", "load_teacher_checkpoint", "source_kind"]

# --teacher-preprocessing: the data's own view, or the one the library's weights entry declares.
PREPROCESSING = ("dataset", "library")


def source_kind(teacher: str) -> str:
    """What ``--teacher`` names: ``"registered"`` (kdsearch's own), ``"torchvision"``, ``"timm"`` or ``"factory"``."""
    prefix, _, _ = teacher.partition(":")
    if prefix in LIBRARIES and ":" in teacher:
        return prefix
    return "factory" if is_factory(teacher) else "registered"


@dataclass(frozen=True)
class TeacherSource:
    """Where a user's teacher comes from and how it sees images: the ``--teacher*`` flags, validated.

    ``teacher`` is a library or factory source (``None`` with ``checkpoint``); ``input_size``, ``mean`` and
    ``std`` override the preprocessing ``preprocessing`` picks; ``features`` names the layers feature
    losses read.
    """

    teacher: str | None = None
    weights: str | None = None
    checkpoint: str | None = None
    trust_checkpoint: bool = False
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    preprocessing: str = "dataset"
    features: tuple[str, ...] = ()

    @property
    def sets_view(self) -> bool:
        """Whether any flag sets how the teacher sees images (only a foreign teacher has a view of its own)."""
        return (self.input_size is not None or self.mean is not None or self.preprocessing != "dataset"
                or bool(self.features))


def load_teacher(source: TeacherSource, data: TensorSplits) -> TeacherResult:
    """The user's teacher, checked on real training images, with its train and validation accuracy.

    ``TeacherResult.details`` says where it came from and how it sees images (``summary.json``'s teacher).
    """
    started = time.perf_counter()
    if source.checkpoint is not None:
        path = Path(source.checkpoint)
        opened = open_checkpoint(path, data, source.trust_checkpoint)
        if opened.kind == "kdsearch":
            if source.sets_view:
                raise TeacherCheckpointError(
                    f"teacher checkpoint {path} is a kdsearch teacher, which sees the data's own view and gives its "
                    "stage features itself: drop --teacher-input-size, --teacher-mean/--teacher-std, "
                    "--teacher-preprocessing and --teacher-features")
            result = check_and_measure(opened.model, data, f"checkpoint {path}", _kdsearch_name(opened.model),
                                       "checkpoint", started, path)
            result.details = {"source_kind": "kdsearch checkpoint"}
            return result
        description = f"{opened.kind} {path.name}"
        teacher = _wrap(opened.model, source, data, description, opened, f"checkpoint {path}")
        return _finish(teacher, source, data, description, opened.kind, started, path)
    assert source.teacher is not None
    kind = source_kind(source.teacher)
    model, recipe = (_library_model(source, data) if kind in LIBRARIES else _factory_model(source, data))
    teacher = _wrap(model, source, data, source.teacher, None, f"--teacher {source.teacher}", recipe)
    return _finish(teacher, source, data, source.teacher, kind, started,
                   Path(source.weights) if source.weights else None)


def load_teacher_checkpoint(path: str | Path, data: TensorSplits, trust: bool = False) -> TeacherResult:
    """``load_teacher`` of a ``--teacher-checkpoint`` file alone (``trust``: ``--trust-checkpoint``)."""
    return load_teacher(TeacherSource(checkpoint=str(path), trust_checkpoint=trust), data)


def _library_model(source: TeacherSource, data: TensorSplits) -> tuple[nn.Module, LibraryRecipe]:
    library, _, name = source.teacher.partition(":")  # type: ignore[union-attr]
    if source.weights is None:
        raise TeacherCheckpointError(f"--teacher {source.teacher} needs --teacher-weights FILE, a state_dict of the "
                                     "model trained for this dataset (kdsearch downloads no weights)")
    state_dict = read_state_dict(Path(source.weights), "--teacher-weights")
    model = build_library_model(library, name, data.info.num_classes)
    channels = fit_input_channels(model, state_dict)
    load_exactly(model, state_dict, source.weights, _what(source.teacher, data))  # type: ignore[arg-type]
    return model, LibraryRecipe(library, name, data.info.num_classes, channels)


def _factory_model(source: TeacherSource, data: TensorSplits) -> tuple[nn.Module, FactoryRecipe]:
    assert source.teacher is not None
    channels, classes = data.info.input_shape[0], data.info.num_classes
    model, root = call_factory(source.teacher, classes, channels)
    if source.weights is not None:
        state_dict = read_state_dict(Path(source.weights), "--teacher-weights")
        load_exactly(model, state_dict, source.weights, _what(source.teacher, data))
    return model, FactoryRecipe(source.teacher, root, classes, channels)


def _what(teacher: str, data: TensorSplits) -> str:
    return f"{teacher} with {data.info.num_classes} classes"


def _wrap(model: nn.Module, source: TeacherSource, data: TensorSplits, description: str,
          opened: OpenedFile | None, where: str, recipe: Any = None) -> ForeignTeacher:
    """``model`` behind its preprocessing and feature taps; a bad flag is one line naming it."""
    opaque = opened is not None and opened.kind in ("torchscript", "torch.export")
    if opaque and source.features:
        raise TeacherCheckpointError(
            f"--teacher-features: the teacher {where} is a {opened.kind} program, whose layers kdsearch cannot "  # type: ignore[union-attr]
            "tap; drop --teacher-features (feature losses are then left out of the search)")
    channels = (opened.in_channels if opened is not None and opened.in_channels is not None
                else input_channels(model, data.info.input_shape[0]))
    try:
        preprocessing = _preprocessing(source, data, channels, model, opened)
    except ValueError as error:
        raise TeacherCheckpointError(f"teacher {where}: {error} (see --teacher-mean, --teacher-std)") from None
    layers = [name for name, _ in model.named_modules() if name]
    missing = [name for name in source.features if name not in layers]
    if missing:
        close = difflib.get_close_matches(missing[0], layers, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its layers include {', '.join(layers[:6])}"
        raise TeacherCheckpointError(f"--teacher-features: the teacher has no layer {missing[0]!r} ({hint})")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    teacher = ForeignTeacher(model, preprocessing, description=description, num_classes=data.info.num_classes,
                             feature_layers=source.features, opaque=opaque,
                             batch_size=opened.batch_size if opened is not None else None,
                             recipe=recipe if recipe is not None else (opened.recipe if opened else None))
    if source.features:
        _check_features(teacher, data, where)
    return teacher


def _preprocessing(source: TeacherSource, data: TensorSplits, channels: int, model: nn.Module,
                   opened: OpenedFile | None) -> TeacherPreprocessing:
    """Explicit flags first, then the library's declared view (``--teacher-preprocessing library``), then an
    exported program's fixed size, then the data's own view."""
    size: tuple[int, int] | None = opened.input_size if opened is not None else None
    mean, std = None, None
    if source.preprocessing == "library":
        if source.teacher is None or source_kind(source.teacher) not in LIBRARIES:
            raise ValueError("--teacher-preprocessing library reads a torchvision or timm weights entry, and this "
                             "teacher is neither")
        library, _, name = source.teacher.partition(":")
        declared_size, mean, std = library_preprocessing(library, name, model)
        size = (declared_size, declared_size) if declared_size else size
    if source.input_size is not None:
        size = (source.input_size, source.input_size)
    if source.mean is not None:
        mean, std = source.mean, source.std
    if size == tuple(data.info.input_shape[1:]):
        size = None
    return TeacherPreprocessing(data_mean=tuple(data.mean), data_std=tuple(data.std), channels=channels,
                                input_size=size, mean=mean, std=std)


def _check_features(teacher: ForeignTeacher, data: TensorSplits, where: str) -> None:
    try:
        with torch.no_grad():
            _, features = teacher.forward_features(data.train_x[:2])
    except Exception as error:  # noqa: BLE001 - a user's model can raise anything
        raise TeacherCheckpointError(f"teacher {where} fails on {data.info.name} images "
                                     f"({first_line(error)})") from None
    for name, feature in zip(teacher.feature_layers, features, strict=True):
        if not isinstance(feature, torch.Tensor) or feature.dim() != 4:
            shape = tuple(feature.shape) if isinstance(feature, torch.Tensor) else type(feature).__name__
            raise TeacherCheckpointError(f"--teacher-features: layer {name!r} outputs {shape}; feature losses need "
                                         "(N, C, H, W) maps: name convolutional stages such as layer2,layer3")


def _finish(teacher: ForeignTeacher, source: TeacherSource, data: TensorSplits, description: str, kind: str,
            started: float, path: Path | None) -> TeacherResult:
    result = check_and_measure(teacher, data, description, description, kind, started, path)
    result.details = {"source_kind": kind, "preprocessing": teacher.preprocessing.to_dict(),
                      "feature_layers": list(teacher.feature_layers)}
    return result


def _kdsearch_name(model: KDModel) -> str:
    return str(model.arch.get("name") or model.arch.get("family"))
