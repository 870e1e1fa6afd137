"""``--teacher-checkpoint FILE``: a whole model in a file, its format told from its bytes.

kdsearch's own ``{"arch", "state_dict"}`` dict, a TorchScript archive (``torch.jit.save``), a ``torch.export``
program (``torch.export.save``, ``.pt2``), or a whole pickled module (``torch.save(model)``), which runs code
from the file to load and so needs ``--trust-checkpoint``.
"""

from __future__ import annotations

import io
import pickle
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from trainers.data import TensorSplits
from trainers.models import KDModel, build_from_arch, build_teacher
from trainers.teacher_sources._common import TeacherCheckpointError, first_line
from trainers.teacher_sources._factory import import_root
from trainers.teacher_sources._formats import (
    SAFETENSORS,
    TORCH,
    TORCH_EXPORT,
    TORCHSCRIPT,
    detect,
    holds_plain_pickle,
    unwrap_state_dict,
)

KDSEARCH_FORMAT = "torch.save({'arch': NAME, 'state_dict': model.state_dict()}, PATH)"
SAFER_FORMATS = ("torch.export.save(torch.export.export(model, (example,)), 'teacher.pt2'), or "
                 "model.state_dict() saved with torch.save and passed as --teacher-weights beside "
                 "--teacher torchvision:NAME, timm:NAME or module:function")


@dataclass
class OpenedFile:
    """A teacher file read: the model, its format, how a worker rebuilds it, and what the file declares."""

    model: nn.Module
    kind: str  # "kdsearch", "torchscript", "torch.export" or "pickled module"
    recipe: FileRecipe | PickledRecipe | None = None
    batch_size: int | None = None  # an exported program's fixed batch size
    input_size: tuple[int, int] | None = None  # an exported program's fixed height and width
    in_channels: int | None = None


@dataclass(frozen=True)
class FileRecipe:
    """Loads the same TorchScript or exported program again (in a Ray worker) from the file's bytes."""

    carries_weights: ClassVar[bool] = True
    kind: str
    contents: bytes

    def build(self) -> nn.Module:
        stream = io.BytesIO(self.contents)
        if self.kind == TORCHSCRIPT:
            with warnings.catch_warnings():  # deprecated for new files; users still bring TorchScript teachers
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(stream, map_location="cpu")
        return torch.export.load(stream).module()


@dataclass(frozen=True)
class PickledRecipe:
    """Unpickles the same module again (in a Ray worker), with the folders its classes were imported from on
    ``sys.path`` (the run was already trusted with ``--trust-checkpoint``)."""

    carries_weights: ClassVar[bool] = True
    contents: bytes
    roots: tuple[str, ...]

    def build(self) -> nn.Module:
        for root in self.roots:
            if root not in sys.path:
                sys.path.insert(0, root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.load(io.BytesIO(self.contents), map_location="cpu", weights_only=False)


def _class_roots(model: nn.Module) -> tuple[str, ...]:
    """The sys.path folders the modules defining ``model``'s classes were imported from."""
    roots = []
    for module in model.modules():
        name = type(module).__module__
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is None or name.startswith(("torch", "torchvision", "timm")):
            continue
        root = import_root(name, file)
        if root not in roots:
            roots.append(root)
    return tuple(roots)


def open_checkpoint(path: Path, data: TensorSplits, trust: bool) -> OpenedFile:
    """Read ``path`` in the format its bytes say; every problem is a one-line ``TeacherCheckpointError``."""
    if not path.is_file():
        raise TeacherCheckpointError(f"teacher checkpoint {path} does not exist; check --teacher-checkpoint")
    kind = detect(path)
    if kind is None:
        raise TeacherCheckpointError(
            f"teacher checkpoint {path} is corrupt or truncated, or not a model file (kdsearch reads torch.save, "
            "TorchScript, torch.export and safetensors files)")
    if kind == SAFETENSORS:
        raise TeacherCheckpointError(
            f"teacher checkpoint {path} is a safetensors file, which holds weights only: name the architecture with "
            "--teacher torchvision:NAME, timm:NAME or module:function and pass the file as --teacher-weights")
    if kind == TORCHSCRIPT:
        return _torchscript(path)
    if kind == TORCH_EXPORT:
        return _exported(path)
    assert kind == TORCH
    return _torch_save(path, data, trust)


def _torchscript(path: Path) -> OpenedFile:
    contents = path.read_bytes()
    try:
        model = FileRecipe(TORCHSCRIPT, contents).build()
    except Exception as error:  # noqa: BLE001 - torch raises many types for damaged archives
        raise TeacherCheckpointError(f"teacher checkpoint {path} is a TorchScript archive that does not load "
                                     f"({first_line(error)})") from None
    return OpenedFile(model.eval(), TORCHSCRIPT, FileRecipe(TORCHSCRIPT, contents))


def _exported(path: Path) -> OpenedFile:
    contents = path.read_bytes()
    try:
        program = torch.export.load(io.BytesIO(contents))
        model = program.module()
    except Exception as error:  # noqa: BLE001 - torch raises many types for damaged archives
        raise TeacherCheckpointError(f"teacher checkpoint {path} is a torch.export archive that does not load "
                                     f"({first_line(error)})") from None
    shape = _input_shape(program)
    if shape is None:
        raise TeacherCheckpointError(f"teacher checkpoint {path} is a torch.export program whose input is not one "
                                     "(N, C, H, W) image batch; export it with one image-batch argument")
    batch, channels, height, width = shape
    return OpenedFile(model, TORCH_EXPORT, FileRecipe(TORCH_EXPORT, contents), batch_size=batch,
                      input_size=(height, width) if height is not None and width is not None else None,
                      in_channels=channels)


def _input_shape(program: Any) -> tuple[int | None, ...] | None:
    """The exported program's one user input as (N, C, H, W), ``None`` for each dynamic size."""
    user_inputs = [spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    if len(user_inputs) != 1:
        return None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0]:
            value = node.meta.get("val")
            if value is None or value.dim() != 4:
                return None
            return tuple(size if isinstance(size, int) else None for size in value.shape)
    return None


def _torch_save(path: Path, data: TensorSplits, trust: bool) -> OpenedFile:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not holds_plain_pickle(path):
            raise TeacherCheckpointError(f"teacher checkpoint {path} is corrupt (its pickle does not parse)") from None
        return _pickled_module(path, trust)
    except Exception as error:  # noqa: BLE001 - torch raises many types for damaged archives
        raise TeacherCheckpointError(f"teacher checkpoint {path} is corrupt ({first_line(error)})") from None
    if isinstance(payload, dict) and "arch" in payload and "state_dict" in payload:
        return OpenedFile(_kdsearch_model(path, payload, data), "kdsearch")
    if isinstance(payload, dict) and ("arch" in payload or "state_dict" in payload):
        raise TeacherCheckpointError(f"teacher checkpoint {path} must be a dict with 'arch' and 'state_dict' keys; "
                                     f"save it with {KDSEARCH_FORMAT}")
    if unwrap_state_dict(payload) is not None:
        raise TeacherCheckpointError(
            f"teacher checkpoint {path} is a state_dict without its architecture: name it with --teacher "
            "torchvision:NAME, timm:NAME or module:function and pass the file as --teacher-weights, or save "
            f"{KDSEARCH_FORMAT} for a kdsearch teacher")
    raise TeacherCheckpointError(f"teacher checkpoint {path} holds a {type(payload).__name__}; save {KDSEARCH_FORMAT} "
                                 f"or {SAFER_FORMATS}")


def _pickled_module(path: Path, trust: bool) -> OpenedFile:
    if not trust:
        raise TeacherCheckpointError(
            f"teacher checkpoint {path} is a pickled Python object (torch.save(model)), and loading it runs code "
            f"from the file: pass --trust-checkpoint if you trust its source, or save a safer format: {SAFER_FORMATS}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - unpickling runs the file's code, which can raise anything
        raise TeacherCheckpointError(
            f"teacher checkpoint {path} is a pickled model that does not load ({first_line(error)}); the module "
            "defining its class must be importable (run from its project folder or add it to PYTHONPATH)") from None
    if not isinstance(model, nn.Module):
        raise TeacherCheckpointError(f"teacher checkpoint {path} unpickles to a {type(model).__name__}, not a "
                                     "torch.nn.Module")
    return OpenedFile(model.eval(), "pickled module", PickledRecipe(path.read_bytes(), _class_roots(model)))


def _kdsearch_model(path: Path, payload: dict[str, Any], data: TensorSplits) -> KDModel:
    """kdsearch's own format: a registered teacher NAME (stride-1 stem) or a ``model.arch`` dict."""
    arch = payload["arch"]
    channels, num_classes = data.info.input_shape[0], data.info.num_classes
    if not isinstance(arch, str | dict):
        raise TeacherCheckpointError(f"teacher checkpoint {path}: 'arch' must be a teacher name or an arch dict")
    try:
        model = (build_teacher(arch, channels, num_classes) if isinstance(arch, str)
                 else build_from_arch({**arch, "in_channels": channels, "num_classes": num_classes}))
    except ValueError as error:
        raise TeacherCheckpointError(f"teacher checkpoint {path}: {error}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as error:
        raise TeacherCheckpointError(
            f"teacher checkpoint {path} does not match architecture {_arch_name(arch)} with {num_classes} classes "
            f"and {channels} input channels ({first_line(error)})") from None
    return model


def _arch_name(arch: Any) -> str:
    if isinstance(arch, dict):
        return str(arch.get("name") or arch.get("family") or arch)
    return str(arch)
