"""Torch files written atomically (``runfolder``'s writer) and loaded safely."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from runfolder import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["CorruptFileError", "atomic_torch_save", "atomic_write", "atomic_write_json", "atomic_write_text",
           "safe_torch_load"]


class CorruptFileError(ValueError):
    """A file exists but cannot be read back (truncated, not a torch file, wrong contents)."""


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that never leaves a partial file at ``path``."""
    return atomic_write(path, lambda stream: torch.save(obj, stream))


def safe_torch_load(path: str | Path) -> Any:
    """Load tensors, dicts and plain values only (``weights_only``); corrupt files raise ``CorruptFileError``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CorruptFileError(f"{path} is corrupt or not a kdsearch file ({type(error).__name__})") from None


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of a state_dict's tensors, in order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
