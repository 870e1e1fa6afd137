"""Atomic writes and tolerant reads: a crash mid-write never leaves a half file under the real name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a temp file beside ``path``, flush it to disk, then ``os.replace`` it.

    The temp file is in the same folder, so the replace is a rename on one filesystem (atomic). The file
    ends up readable by others (0644), as results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented, keys in insertion order) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``, or ``None`` when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_cache_entry(path: str | Path) -> dict[str, Any] | None:
    """A cache entry that ``atomic_write_json`` wrote: its dict, or ``None`` when it is missing, unreadable
    (cut mid-write by an older writer, damaged) or not a dict; the caller then computes it again."""
    try:
        entry = read_json(path)
    except (ValueError, OSError):
        return None
    return entry if isinstance(entry, dict) else None


def _json_default(value: Any) -> Any:
    # Tensors and numpy values (arrays and scalars) both have tolist(); paths are written as text.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
