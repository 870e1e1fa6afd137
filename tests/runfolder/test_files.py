"""Atomic writes and tolerant reads of ``runfolder._files``."""

from __future__ import annotations

from pathlib import Path

from runfolder import atomic_write_json, read_cache_entry, read_json


def test_a_cache_entry_is_read_back_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "entry.json"
    assert read_cache_entry(path) is None  # missing
    atomic_write_json(path, {"latency_ms": 1.5})
    assert read_cache_entry(path) == read_json(path) == {"latency_ms": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["entry.json"]  # no temp file left beside it
    path.write_text('{"latency_ms": 1.')  # cut mid-write by an older writer
    assert read_cache_entry(path) is None
    path.write_bytes(b"\xff\xfe")  # not text
    assert read_cache_entry(path) is None
    path.write_text("[1, 2]")  # JSON, but not an entry
    assert read_cache_entry(path) is None
