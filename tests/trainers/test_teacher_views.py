"""The teacher's per-view logits on disk (trainers/teacher_views.py): fp16, built once, mapped, not copied."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from trainers import Teacher, TensorSplits, build_teacher, load_dataset
from trainers import teacher as teacher_module
from trainers.data import fingerprint, view_count
from trainers.teacher import compute_view_outputs, fits_view_cache
from trainers.teacher_views import ViewLogitsStopped, ViewStore, build_logits

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits() -> TensorSplits:
    return load_dataset("digits", max_train_samples=200)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_teacher("cnn-large", 1, 10).eval()


def _store(tmp_path: Path, digits: TensorSplits, budget: int = 2**30) -> ViewStore:
    return ViewStore(tmp_path / "teacher-views", budget, fingerprint(digits))


def test_logits_on_disk_are_the_in_memory_ones_in_fp16(model: nn.Module, digits: TensorSplits, tmp_path: Path) -> None:
    in_memory = compute_view_outputs(model, digits.train_x, digits.info, digits.background)
    store = _store(tmp_path, digits)
    on_disk = compute_view_outputs(model, digits.train_x, digits.info, digits.background, store, "cnn-large")
    assert on_disk.logits_path is not None and Path(on_disk.logits_path).parent == store.folder
    assert on_disk.logits.dtype == torch.float16 and on_disk.logits.shape == in_memory.logits.shape
    torch.testing.assert_close(on_disk.logits.float(), in_memory.logits, atol=0.02, rtol=1e-3)
    rows = (torch.tensor([0, 8, 3]), torch.tensor([5, 0, 199]))
    signal = on_disk.rows(rows, "none")
    assert signal.logits.dtype == torch.float32  # the loss is computed in float32
    torch.testing.assert_close(signal.logits, in_memory.logits[rows], atol=0.02, rtol=1e-3)


def test_a_teacher_pickles_as_the_path_of_its_logits(model: nn.Module, digits: TensorSplits, tmp_path: Path) -> None:
    store = _store(tmp_path, digits)
    teacher = Teacher.with_cached_outputs(model, "cnn-large", digits.train_x, views_of=digits.info,
                                          background=digits.background, view_store=store)
    assert teacher.outputs is not None and teacher.outputs.per_view is not None
    logits = teacher.outputs.per_view.logits
    # The per-view logits (9 views x 200 images x 10 classes x 2 bytes = 36 kB) do not travel: their path does.
    payload = pickle.dumps(teacher)
    assert logits.numel() * 2 == 36_000 and logits.numpy().tobytes() not in payload
    again = pickle.loads(payload)
    mapped = again.outputs.per_view.logits
    assert torch.equal(mapped, logits)
    with open("/proc/self/maps") as maps:  # the unpickled tensor is a view of the file, not a copy
        name = Path(teacher.outputs.per_view.logits_path).name
        regions = [line.split() for line in maps if line.rstrip().endswith(name)]
    assert any(int(start, 16) <= mapped.data_ptr() < int(end, 16)
               for start, end in (region[0].split("-") for region in regions))


def test_the_file_is_built_once(model: nn.Module, digits: TensorSplits, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no per-view feature maps are kept (over their memory bound), a second run reads every view's
    logits from the file: only the first view runs (it sizes the feature maps)."""
    monkeypatch.setattr(teacher_module, "MAX_VIEW_BYTES", 1)
    store = _store(tmp_path, digits)
    first = compute_view_outputs(model, digits.train_x, digits.info, digits.background, store, "cnn-large")
    written = Path(first.logits_path).stat().st_mtime_ns
    batches = []
    hook = next(model.children()).register_forward_pre_hook(lambda *_: batches.append(1))
    try:
        again = compute_view_outputs(model, digits.train_x, digits.info, digits.background, store, "cnn-large")
    finally:
        hook.remove()
    assert Path(again.logits_path).stat().st_mtime_ns == written and torch.equal(again.logits, first.logits)
    assert len(batches) == 1  # one batch of the first view; the other eight views are read from the file
    other = build_teacher("cnn-large", 1, 10).eval()  # other weights: another file
    assert store.path_for(other, "cnn-large", digits.info, digits.background) != Path(first.logits_path)


def test_over_the_disk_budget_the_teacher_runs_online(digits: TensorSplits, tmp_path: Path) -> None:
    needed = view_count(digits.info) * len(digits.train_x) * digits.info.num_classes * 2
    assert fits_view_cache(digits.info, digits.train_x, _store(tmp_path, digits, budget=needed))
    assert not fits_view_cache(digits.info, digits.train_x, _store(tmp_path, digits, budget=needed - 1))
    plain = dataclasses.replace(digits.info, crop_padding=0)
    assert view_count(plain) == 1


SHAPE = (5, 40, 10)


def _view(view: int) -> torch.Tensor:
    """View ``view``'s logits: distinct per view, the same every time."""
    return torch.randn(SHAPE[1:], generator=torch.Generator().manual_seed(view))


def _built(tmp_path: Path) -> torch.Tensor:
    return build_logits(tmp_path / "whole" / "logits.npy", SHAPE, _view)


def test_a_stopped_build_keeps_its_views_and_the_next_goes_on_to_the_same_logits(tmp_path: Path) -> None:
    path = tmp_path / "views" / "logits.npy"
    computed: list[int] = []

    def fill(view: int) -> torch.Tensor:
        computed.append(view)
        return _view(view)

    with pytest.raises(ViewLogitsStopped, match=r"stopped after view 3/5") as stopped:
        build_logits(path, SHAPE, fill, stop_requested=lambda: len(computed) == 3)
    assert stopped.value.done == 3 and not path.exists() and stopped.value.partial.is_file()
    lines: list[str] = []
    logits = build_logits(path, SHAPE, fill, log=lines.append)
    assert computed == [0, 1, 2, 3, 4]  # no view computed twice
    assert lines == [f"teacher logits: going on from view 3/5, kept by an earlier build in {stopped.value.partial}"]
    assert torch.equal(logits, _built(tmp_path))
    assert sorted(p.name for p in path.parent.iterdir()) == ["logits.npy"]  # the partial and its record are gone


KILLED_AT_VIEW_3 = """
import os, sys, torch
from pathlib import Path
from trainers.teacher_views import build_logits
def fill(view):
    if view == 3:
        os._exit(9)  # killed: no handler, no cleanup runs
    return torch.randn(40, 10, generator=torch.Generator().manual_seed(view))
build_logits(Path(sys.argv[1]), (5, 40, 10), fill, save_every_s=0.0)
"""


def test_a_build_killed_between_views_goes_on_from_the_last_kept(tmp_path: Path) -> None:
    path = tmp_path / "views" / "logits.npy"
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_VIEW_3, str(path)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    computed: list[int] = []
    lines: list[str] = []
    logits = build_logits(path, SHAPE, lambda view: computed.append(view) or _view(view), log=lines.append)
    assert computed == [3, 4] and "going on from view 3/5" in lines[0]
    assert torch.equal(logits, _built(tmp_path))


@pytest.mark.parametrize("damage", ["bit flip", "truncated", "foreign record"])
def test_damaged_kept_views_are_said_and_computed_again(damage: str, tmp_path: Path) -> None:
    path = tmp_path / "views" / "logits.npy"
    with pytest.raises(ViewLogitsStopped) as stopped:
        build_logits(path, SHAPE, _view, stop_requested=lambda: True)
    partial, record = stopped.value.partial, path.with_name(f".{path.name}.progress.json")
    if damage == "bit flip":
        data = bytearray(partial.read_bytes())
        data[-SHAPE[1] * SHAPE[2] * 2 * (SHAPE[0] - 1) - 7] ^= 0x10  # inside view 0, the one kept
        partial.write_bytes(bytes(data))
    elif damage == "truncated":
        partial.write_bytes(partial.read_bytes()[:100])
    else:
        record.write_text(json.dumps({"shape": [5, 40, 11], "digests": ["0" * 64]}))
    computed: list[int] = []
    lines: list[str] = []
    logits = build_logits(path, SHAPE, lambda view: computed.append(view) or _view(view), log=lines.append)
    assert computed == [0, 1, 2, 3, 4]
    assert len(lines) == 1 and "are not used (" in lines[0] and "computing all" in lines[0]
    assert torch.equal(logits, _built(tmp_path)) and not record.exists()


def test_a_build_beside_another_of_the_same_logits_keeps_to_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "views" / "logits.npy"
    path.parent.mkdir()
    shared = path.with_name(f".{path.name}.partial")
    with open(shared, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the other builder
        logits = build_logits(path, SHAPE, _view, save_every_s=0.0)
        assert torch.equal(logits, _built(tmp_path))
        assert sorted(p.name for p in path.parent.iterdir()) == [shared.name, "logits.npy"]  # no record of its own


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "views" / "logits.npy"

    def fill(view: int) -> torch.Tensor:
        if view == 3:
            raise OSError(28, "No space left on device")
        return _view(view)

    with pytest.raises(OSError, match="No space left"):
        build_logits(path, SHAPE, fill, save_every_s=0.0)
    assert list(path.parent.iterdir()) == []
