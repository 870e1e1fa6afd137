"""Which kind of file a teacher file is, told from its bytes (never its name), and reading weights files.

| kind | how it is recognised |
|---|---|
| ``torch.export`` | a zip archive with ``archive_format`` or ``models/`` (``torch.export.save``, ``.pt2``) |
| ``torchscript`` | a zip archive with ``constants.pkl`` and ``code/`` (``torch.jit.save``) |
| ``torch`` | a zip archive with ``data.pkl`` (``torch.save``), or a pickle (``torch.save`` before torch 1.6) |
| ``safetensors`` | an 8-byte header length, then a JSON header |
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from trainers.teacher_sources._common import TeacherCheckpointError, first_line

TORCH_EXPORT, TORCHSCRIPT, TORCH, SAFETENSORS = "torch.export", "torchscript", "torch", "safetensors"
_PICKLE_PROTOCOL = 0x80


def detect(path: Path) -> str | None:
    """The file's kind (one of the constants above), or ``None`` when it is none of them (corrupt)."""
    with open(path, "rb") as stream:
        head = stream.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                entries = {"/".join(name.split("/")[1:]) for name in archive.namelist()}
        except (zipfile.BadZipFile, OSError):
            return None
        if "archive_format" in entries or any(entry.startswith("models/") for entry in entries):
            return TORCH_EXPORT
        if "constants.pkl" in entries and any(entry.startswith("code/") for entry in entries):
            return TORCHSCRIPT
        return TORCH if "data.pkl" in entries else None
    if head[:1] == bytes([_PICKLE_PROTOCOL]):
        return TORCH
    if len(head) >= 9 and head[8:9] == b"{" and _safetensors_header(path) is not None:
        return SAFETENSORS
    return None


def _safetensors_header(path: Path) -> dict[str, Any] | None:
    with open(path, "rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        if length > path.stat().st_size - 8:
            return None
        try:
            header = json.loads(stream.read(length))
        except (ValueError, UnicodeDecodeError):
            return None
    return header if isinstance(header, dict) else None


def holds_plain_pickle(path: Path) -> bool:
    """Whether a ``torch`` file's pickle parses to its end (it holds Python objects, not damaged bytes)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(name for name in archive.namelist() if name.endswith("/data.pkl"))
                data = archive.read(name)
        else:
            data = path.read_bytes()
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
    except (StopIteration, ValueError, zipfile.BadZipFile, OSError, struct.error):
        return False
    return True


def read_state_dict(path: Path, flag: str) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.pt``/``.pth`` file (``weights_only``) or a ``.safetensors`` file.

    A checkpoint dict that holds it under ``state_dict`` or ``model`` is unwrapped, and a ``module.`` prefix
    on every key (``nn.DataParallel``) is dropped. Anything else is a ``TeacherCheckpointError`` naming ``flag``.
    """
    if not path.is_file():
        raise TeacherCheckpointError(f"{flag} {path} does not exist; check the path")
    kind = detect(path)
    if kind == SAFETENSORS:
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise TeacherCheckpointError(f"{flag} {path} is a safetensors file and the 'safetensors' package is "
                                         "not installed; run 'pip install safetensors'") from None
        try:
            return _without_prefix(load_file(str(path), device="cpu"))
        except Exception as error:  # noqa: BLE001 - the package raises its own types for damaged files
            raise TeacherCheckpointError(f"{flag} {path} is a damaged safetensors file ({first_line(error)})") from None
    if kind in (TORCHSCRIPT, TORCH_EXPORT):
        raise TeacherCheckpointError(f"{flag} {path} is a {kind} file, a whole model: pass it as "
                                     "--teacher-checkpoint instead")
    if kind != TORCH:
        raise TeacherCheckpointError(f"{flag} {path} is corrupt or not a weights file (neither torch.save's "
                                     "format nor safetensors); save model.state_dict() with torch.save")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if holds_plain_pickle(path):
            raise TeacherCheckpointError(
                f"{flag} {path} holds Python objects, not just tensors (a pickled model?); save "
                "model.state_dict() instead, or pass a whole pickled model as --teacher-checkpoint") from None
        raise TeacherCheckpointError(f"{flag} {path} is corrupt (its pickle does not parse)") from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for damaged archives
        raise TeacherCheckpointError(f"{flag} {path} is corrupt ({first_line(error)})") from None
    state_dict = unwrap_state_dict(payload)
    if state_dict is None:
        raise TeacherCheckpointError(f"{flag} {path} holds a {type(payload).__name__}, not a state_dict of tensors; "
                                     "save model.state_dict() with torch.save")
    return state_dict


def unwrap_state_dict(payload: Any) -> dict[str, torch.Tensor] | None:
    """``payload`` as a state_dict (itself, or under ``state_dict`` / ``model``), or ``None``."""
    if isinstance(payload, dict):
        for key in ("state_dict", "model"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
        if payload and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in payload.items()):
            return _without_prefix(payload)
    return None


def _without_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefix = "module."
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    return dict(state_dict)
