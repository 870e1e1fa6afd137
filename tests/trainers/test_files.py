"""Tests of atomic writes and safe loads: no partial files under the real name, corrupt files detected."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

from trainers.files import (
    CorruptFileError,
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    safe_torch_load,
)


class WriterCrashed(RuntimeError):
    pass


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name not in keep)


def _half_then_raise(error: BaseException) -> Callable[[BinaryIO], None]:
    def write(stream: BinaryIO) -> None:
        stream.write(b"new content, first ha")
        stream.flush()
        raise error

    return write


def test_atomic_write_writes_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.bin"
    assert atomic_write(target, lambda stream: stream.write(b"payload")) == target
    assert target.read_bytes() == b"payload"
    assert _leftovers(target.parent, {"file.bin"}) == []


@pytest.mark.parametrize("error", [WriterCrashed("disk full"), KeyboardInterrupt()], ids=["exception", "interrupt"])
def test_a_writer_failing_midway_keeps_the_previous_file_intact(error: BaseException, tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    target.write_bytes(b"previous content")
    with pytest.raises(type(error)):
        atomic_write(target, _half_then_raise(error))
    assert target.read_bytes() == b"previous content"
    assert _leftovers(tmp_path, {"state.pt"}) == []  # the temp file is gone


def test_a_writer_failing_midway_leaves_no_target_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "new.json"
    with pytest.raises(WriterCrashed):
        atomic_write(target, _half_then_raise(WriterCrashed("boom")))
    assert not target.exists()
    assert _leftovers(tmp_path, set()) == []


def test_the_target_is_never_partial_while_writing(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_bytes(b"old")
    seen: list[bytes] = []

    def write(stream: BinaryIO) -> None:
        stream.write(b"new ")
        seen.append(target.read_bytes())  # what a concurrent reader sees mid-write
        stream.write(b"content")

    atomic_write(target, write)
    assert seen == [b"old"]
    assert target.read_bytes() == b"new content"


def test_atomic_torch_save_round_trips_through_safe_torch_load(tmp_path: Path) -> None:
    payload = {"weights": torch.arange(6.0).reshape(2, 3), "epoch": 3, "history": [{"loss": 0.5}], "name": "x"}
    path = atomic_torch_save(payload, tmp_path / "state.pt")
    loaded = safe_torch_load(path)
    assert torch.equal(loaded["weights"], payload["weights"])
    assert {key: loaded[key] for key in ("epoch", "history", "name")} == {"epoch": 3, "history": [{"loss": 0.5}],
                                                                         "name": "x"}


def test_an_unpicklable_payload_leaves_the_previous_file(tmp_path: Path) -> None:
    path = atomic_torch_save({"v": torch.ones(2)}, tmp_path / "state.pt")
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises, the old file must survive
        atomic_torch_save({"v": lambda: None}, path)
    assert torch.equal(safe_torch_load(path)["v"], torch.ones(2))
    assert _leftovers(tmp_path, {"state.pt"}) == []


@pytest.mark.parametrize("keep", [0, 1, 50, 0.5, 0.9], ids=["empty", "1-byte", "50-bytes", "half", "90%"])
def test_safe_torch_load_on_a_truncated_file_raises_corrupt_file_error(keep: float, tmp_path: Path) -> None:
    path = atomic_torch_save({"weights": torch.randn(64, 64), "epoch": 1}, tmp_path / "state.pt")
    raw = path.read_bytes()
    size = int(len(raw) * keep) if isinstance(keep, float) else keep
    path.write_bytes(raw[:size])
    with pytest.raises(CorruptFileError, match="state.pt"):
        safe_torch_load(path)


def test_safe_torch_load_refuses_garbage_and_pickled_objects(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not torch" * 10)
    with pytest.raises(CorruptFileError, match="garbage.pt"):
        safe_torch_load(garbage)
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled module: weights_only refuses it
    with pytest.raises(CorruptFileError, match="module.pt"):
        safe_torch_load(pickled)


def test_safe_torch_load_keeps_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        safe_torch_load(tmp_path / "missing.pt")


def test_json_and_text_helpers(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "x.json", {"t": torch.tensor([1, 2]), "s": torch.tensor(0.5),
                                                   "p": tmp_path, "n": 3})
    assert json.loads(path.read_text()) == {"t": [1, 2], "s": 0.5, "p": str(tmp_path), "n": 3}
    assert path.read_text().endswith("\n")
    with pytest.raises(TypeError, match="object"):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
    assert atomic_write_text(tmp_path / "t.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert _leftovers(tmp_path, {"x.json", "t.txt"}) == []
