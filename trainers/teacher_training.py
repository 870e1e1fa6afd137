"""Getting a kdsearch teacher: train it once per (data, architecture, recipe, seed) and cache it.

A user's own trained teacher is loaded by :mod:`trainers.teacher_sources` instead.

Cache files live at ``<cache_dir>/<fingerprint>.pt`` and hold plain tensors and dicts only
(``{"format", "arch", "state_dict", "fingerprint", "digest", "val_accuracy"}``), written atomically and
loaded with ``weights_only=True``. ``digest`` is a SHA-256 of the state_dict's tensors: torch does not
check its own CRCs on load, so without it flipped bytes inside a tensor would load as wrong weights.
A cache file that does not load, does not match or fails its digest is reported through ``log`` and
retrained, never used.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.data import TensorSplits, fingerprint
from trainers.distill import DistillConfig, EpochReport, distill, evaluate
from trainers.files import CorruptFileError, atomic_torch_save, safe_torch_load, state_digest
from trainers.models import build_from_arch, build_teacher, stem_stride_for

# 2: the payload carries a digest of its state_dict; 3: best-validation weights; 4: inputs from 28 px on get a
# stride-2 stem (an older cache of such a teacher is retrained, not loaded into the faster architecture).
CACHE_FORMAT = 4
Log = Callable[[str], None]


class TeacherCheckpointError(ValueError):
    """A user's teacher (``--teacher-checkpoint``, ``--teacher-weights``, a library or factory ``--teacher``) is
    missing, corrupt or does not fit the dataset; the message is one line naming the file or flag and the fix."""


@dataclass(frozen=True)
class TeacherRecipe:
    """How a teacher is trained from scratch (hard labels, SGD + cosine, the dataset's augmentation).

    The weights of the epoch with the best validation accuracy are kept (the earliest, on ties), not
    the last epoch's; training stops at the first epoch with perfect validation accuracy, which no later
    epoch could replace.
    """

    epochs: int = 60
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    augment: bool = True


@dataclass
class TeacherResult:
    """A ready teacher model and where it came from."""

    model: nn.Module
    name: str
    source: str  # "trained", "cache" or "checkpoint"
    path: Path | None
    val_accuracy: float
    seconds: float
    # On the plain training images: next to val_accuracy it shows whether the teacher memorised them.
    train_accuracy: float | None = None
    # A user's teacher: where it came from and how it sees images (summary.json's "teacher" entry).
    details: dict[str, Any] = field(default_factory=dict)


def teacher_fingerprint(name: str, data: TensorSplits, recipe: TeacherRecipe) -> str:
    """A stable key for the (dataset and split, architecture, recipe, seed) a teacher was trained on."""
    key = {"format": CACHE_FORMAT, "teacher": name, "data": fingerprint(data), "recipe": asdict(recipe)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def get_teacher(
    name: str,
    data: TensorSplits,
    cache_dir: str | Path,
    recipe: TeacherRecipe = TeacherRecipe(),
    log: Log = print,
) -> TeacherResult:
    """Load the cached teacher for this fingerprint, or train it and cache it."""
    started = time.perf_counter()
    key = teacher_fingerprint(name, data, recipe)
    path = Path(cache_dir) / f"{key}.pt"
    if path.exists():
        model = _load_cached(path, key, log)
        if model is not None:
            model = model.to(data.train_x.device)
            val_accuracy, _ = evaluate(model, data.val_x, data.val_y)
            train_accuracy, _ = evaluate(model, data.train_x, data.train_y)
            log(f"teacher {name}: loaded from cache {path} (train accuracy {train_accuracy:.4f}, "
                f"val accuracy {val_accuracy:.4f})")
            return TeacherResult(model, name, "cache", path, val_accuracy, time.perf_counter() - started,
                                 train_accuracy)
    model, val_accuracy = train_teacher(name, data, recipe, log)
    train_accuracy, _ = evaluate(model, data.train_x, data.train_y)
    state_dict = model.state_dict()
    atomic_torch_save({"format": CACHE_FORMAT, "arch": model.arch, "state_dict": state_dict,
                       "fingerprint": key, "digest": state_digest(state_dict), "val_accuracy": val_accuracy}, path)
    log(f"teacher {name}: cached at {path} (train accuracy {train_accuracy:.4f}, val accuracy {val_accuracy:.4f})")
    return TeacherResult(model, name, "trained", path, val_accuracy, time.perf_counter() - started, train_accuracy)


def train_teacher(name: str, data: TensorSplits, recipe: TeacherRecipe, log: Log = print) -> tuple[nn.Module, float]:
    """Train teacher ``name`` from scratch on hard labels; returns it with the weights of its best
    validation epoch (the earliest, on ties) and that accuracy, stopping at the first perfect one."""
    torch.manual_seed(recipe.seed)
    model = build_teacher(name, data.info.input_shape[0], data.info.num_classes,
                          stem_stride_for(data.info.input_shape)).to(data.train_x.device)
    config = DistillConfig(alpha=0.0, lr=recipe.lr, weight_decay=recipe.weight_decay,
                           batch_size=recipe.batch_size, augment=recipe.augment, epochs=recipe.epochs,
                           seed=recipe.seed)
    best: dict[str, Any] = {"val_accuracy": -1.0, "state": None}

    def progress(report: EpochReport, _: Any) -> None:
        if report.val_accuracy > best["val_accuracy"]:
            best.update(val_accuracy=report.val_accuracy,
                        state={key: value.detach().clone() for key, value in model.state_dict().items()})
        log(f"teacher {name}: epoch {report.epoch}/{recipe.epochs} val accuracy {report.val_accuracy:.4f} "
            f"({report.epoch_seconds:.1f}s)")
        if report.epoch == 1 and recipe.epochs > 1:
            log(eta_line(name, report.epoch_seconds, recipe.epochs - 1))

    def perfect(report: EpochReport) -> bool:
        # The earliest best epoch is kept, so once validation is perfect no later epoch can be: stop.
        if report.val_accuracy == 1.0 and report.epoch < recipe.epochs:
            log(f"teacher {name}: validation accuracy 1.0000 at epoch {report.epoch}: no later epoch can be kept, "
                f"stopping {recipe.epochs - report.epoch} epochs early")
            return True
        return False

    result = distill(config, data, None, student=model, on_epoch=progress, stop_after=perfect)
    result.model.load_state_dict(best["state"])
    return result.model.eval(), float(best["val_accuracy"])


def eta_line(name: str, epoch_seconds: float, epochs_left: int) -> str:
    """The one line printed after the teacher's first epoch: about how long the remaining epochs take."""
    seconds = round(epoch_seconds * epochs_left)
    minutes, seconds = divmod(seconds, 60)
    left = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    return (f"teacher {name}: ETA about {left} for the remaining {epochs_left} epochs "
            f"(at {epoch_seconds:.1f} s per epoch; cached afterwards, later runs load it)")


def _load_cached(path: Path, key: str, log: Log) -> nn.Module | None:
    try:
        payload = safe_torch_load(path)
        if payload.get("format") != CACHE_FORMAT or payload.get("fingerprint") != key:
            raise CorruptFileError(f"{path} belongs to another teacher or cache format")
        if payload.get("digest") != state_digest(payload["state_dict"]):
            raise CorruptFileError(f"{path} has weights that do not match their digest")
        model = build_from_arch(payload["arch"])
        model.load_state_dict(payload["state_dict"])
        return model
    except (CorruptFileError, KeyError, TypeError, AttributeError, RuntimeError, ValueError) as error:
        log(f"teacher cache {path} is unusable ({error}); retraining the teacher")
        return None
