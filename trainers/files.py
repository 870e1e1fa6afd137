"""Torch files written atomically (``runfolder``'s writer) and loaded safely."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from runfolder import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["CorruptFileError", "atomic_torch_save", "atomic_write", "atomic_write_json", "atomic_write_text",
           "fsync_path", "lock_without_waiting", "safe_torch_load"]

# What flock raises on storage that has no locks (NFS mounted with nolock, some FUSE file systems).
_NO_LOCKS_ERRNOS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


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


def fsync_path(path: str | Path) -> None:
    """Flush ``path``'s written pages (a memory map's included) to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def lock_without_waiting(path: str | Path) -> int | None:
    """An exclusive lock on ``path`` (created if missing), taken without waiting: its descriptor (closing it releases
    the lock), or ``None`` while another process holds it. On storage without locks the descriptor comes back
    unlocked: the caller goes on as the only builder.

    ``flock``, not ``runfolder``'s ``lockf``: a partial build's lock must outlast numpy opening and closing the locked
    file (closing any descriptor of a file drops a process's ``lockf`` locks), and it stays held while the decoding
    processes the builder forks still write (they inherit it)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    except OSError as error:
        if error.errno not in _NO_LOCKS_ERRNOS:
            os.close(descriptor)
            raise
    return descriptor
