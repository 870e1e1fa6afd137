"""Getting a kdsearch teacher: train it once per (data, architecture, recipe, seed) and cache it.

A user's own trained teacher is loaded by :mod:`trainers.teacher_sources` instead.

Cache files live at ``<cache_dir>/<fingerprint>.pt`` and hold plain tensors and dicts only
(``{"format", "arch", "state_dict", "fingerprint", "digest", "val_accuracy"}``), written atomically and
loaded with ``weights_only=True``. ``digest`` is a SHA-256 of the state_dict's tensors: torch does not
check its own CRCs on load, so without it flipped bytes inside a tensor would load as wrong weights.
A cache file that does not load, does not match or fails its digest is reported through ``log`` and
retrained, never used.

A training in progress keeps its state in ``<cache_dir>/<fingerprint>.training.pt`` (weights, optimizer,
schedule, random generators, history and the best epoch's weights so far), written atomically at the end of an
epoch at most every ``SAVE_EVERY_S`` seconds and whenever the caller asks training to stop. The next
``get_teacher`` of the same fingerprint goes on from there, to the weights an uninterrupted training gives, and
removes the file once the teacher is cached. A long teacher training stopped by a batch system's time limit, a
preemption or Ctrl-C is therefore not lost.
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
from trainers.distill import DistillConfig, EpochReport, distill, evaluate, missing_state_keys
from trainers.files import CorruptFileError, atomic_torch_save, safe_torch_load, state_digest
from trainers.models import build_from_arch, build_teacher, stem_stride_for

# 2: the payload carries a digest of its state_dict; 3: best-validation weights; 4: inputs from 28 px on get a
# stride-2 stem (an older cache of such a teacher is retrained, not loaded into the faster architecture).
CACHE_FORMAT = 4
Log = Callable[[str], None]
TRAINING_SUFFIX = ".training.pt"  # a training in progress: <cache_dir>/<fingerprint>.training.pt
# Seconds between two saves of a training in progress: a teacher of 8x8 digits (0.4 s an epoch) is never saved
# unless asked to stop, and a large one loses at most about this much work to a kill -9.
SAVE_EVERY_S = 60.0


class TeacherTrainingStopped(Exception):
    """Training stopped at the caller's request after ``epoch`` of ``epochs``; its state is saved at ``path``."""

    def __init__(self, name: str, epoch: int, epochs: int, path: Path) -> None:
        super().__init__(f"teacher {name}: training stopped after epoch {epoch}/{epochs}, its state saved in {path}")
        self.epoch, self.epochs, self.path = epoch, epochs, path


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
    stop_requested: Callable[[], bool] | None = None,
    save_every_s: float = SAVE_EVERY_S,
) -> TeacherResult:
    """Load the cached teacher for this fingerprint, or train it (going on from a saved training in progress,
    if there is one) and cache it.

    ``stop_requested()`` is asked after every epoch: true saves the training's state and raises
    ``TeacherTrainingStopped``; a later call goes on from that epoch.
    """
    started = time.perf_counter()
    key = teacher_fingerprint(name, data, recipe)
    path = Path(cache_dir) / f"{key}.pt"
    progress = TrainingProgress(Path(cache_dir) / f"{key}{TRAINING_SUFFIX}", key, save_every_s)
    if path.exists():
        model = _load_cached(path, key, log)
        if model is not None:
            progress.path.unlink(missing_ok=True)  # another driver's training of this teacher, stopped: not needed
            model = model.to(data.train_x.device)
            val_accuracy, _ = evaluate(model, data.val_x, data.val_y)
            train_accuracy, _ = evaluate(model, data.train_x, data.train_y)
            log(f"teacher {name}: loaded from cache {path} (train accuracy {train_accuracy:.4f}, "
                f"val accuracy {val_accuracy:.4f})")
            return TeacherResult(model, name, "cache", path, val_accuracy, time.perf_counter() - started,
                                 train_accuracy)
    model, val_accuracy = train_teacher(name, data, recipe, log, progress, stop_requested)
    train_accuracy, _ = evaluate(model, data.train_x, data.train_y)
    state_dict = model.state_dict()
    atomic_torch_save({"format": CACHE_FORMAT, "arch": model.arch, "state_dict": state_dict,
                       "fingerprint": key, "digest": state_digest(state_dict), "val_accuracy": val_accuracy}, path)
    progress.path.unlink(missing_ok=True)  # cached whole: nothing left to go on from
    log(f"teacher {name}: cached at {path} (train accuracy {train_accuracy:.4f}, val accuracy {val_accuracy:.4f})")
    return TeacherResult(model, name, "trained", path, val_accuracy, time.perf_counter() - started, train_accuracy)


def train_teacher(name: str, data: TensorSplits, recipe: TeacherRecipe, log: Log = print,
                  progress: TrainingProgress | None = None,
                  stop_requested: Callable[[], bool] | None = None) -> tuple[nn.Module, float]:
    """Train teacher ``name`` from scratch on hard labels; returns it with the weights of its best
    validation epoch (the earliest, on ties) and that accuracy, stopping at the first perfect one.

    With ``progress`` the training goes on from the state saved there, if any, and saves its own as it goes
    (``TrainingProgress``); ``stop_requested`` is as ``get_teacher``'s.
    """
    torch.manual_seed(recipe.seed)
    model = build_teacher(name, data.info.input_shape[0], data.info.num_classes,
                          stem_stride_for(data.info.input_shape)).to(data.train_x.device)
    config = DistillConfig(alpha=0.0, lr=recipe.lr, weight_decay=recipe.weight_decay,
                           batch_size=recipe.batch_size, augment=recipe.augment, epochs=recipe.epochs,
                           seed=recipe.seed)
    best: dict[str, Any] = {"val_accuracy": -1.0, "state": None}
    saved = None
    if progress is not None and (saved := progress.load(log)) is not None:
        best.update(val_accuracy=saved["best_val_accuracy"], state=saved["best_state"])
        log(f"teacher {name}: going on from epoch {saved['training']['epoch']}/{recipe.epochs}, saved by an "
            f"earlier attempt in {progress.path}")
    first_epoch = saved["training"]["epoch"] + 1 if saved is not None else 1

    def on_epoch(report: EpochReport, get_state: Callable[[], dict[str, Any]]) -> None:
        if report.val_accuracy > best["val_accuracy"]:
            best.update(val_accuracy=report.val_accuracy,
                        state={key: value.detach().clone() for key, value in model.state_dict().items()})
        log(f"teacher {name}: epoch {report.epoch}/{recipe.epochs} val accuracy {report.val_accuracy:.4f} "
            f"({report.epoch_seconds:.1f}s)")
        if report.epoch == first_epoch and report.epoch < recipe.epochs:
            log(eta_line(name, report.epoch_seconds, recipe.epochs - report.epoch))
        if report.epoch == recipe.epochs or report.val_accuracy == 1.0:
            return  # the training ends with this epoch (``perfect``): nothing is left to save or stop
        stop = stop_requested is not None and stop_requested()
        if progress is not None and (stop or progress.due()):
            progress.save(get_state(), best["val_accuracy"], best["state"])
        if stop:
            if progress is None:
                raise ValueError("a teacher training asked to stop needs a TrainingProgress to save its state in")
            raise TeacherTrainingStopped(name, report.epoch, recipe.epochs, progress.path)

    def perfect(report: EpochReport) -> bool:
        # The earliest best epoch is kept, so once validation is perfect no later epoch can be: stop.
        if report.val_accuracy == 1.0 and report.epoch < recipe.epochs:
            log(f"teacher {name}: validation accuracy 1.0000 at epoch {report.epoch}: no later epoch can be kept, "
                f"stopping {recipe.epochs - report.epoch} epochs early")
            return True
        return False

    result = distill(config, data, None, student=model, on_epoch=on_epoch, stop_after=perfect,
                     resume_state=saved["training"] if saved is not None else None)
    result.model.load_state_dict(best["state"])
    return result.model.eval(), float(best["val_accuracy"])


class TrainingProgress:
    """Where a teacher's training in progress is saved (``path``), and when it is due again."""

    def __init__(self, path: Path, fingerprint: str, save_every_s: float = SAVE_EVERY_S) -> None:
        self.path, self.fingerprint, self.save_every_s = path, fingerprint, save_every_s
        self.last_saved = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last_saved >= self.save_every_s

    def save(self, training: dict[str, Any], best_val_accuracy: float, best_state: dict[str, torch.Tensor]) -> None:
        """Write the training's state (``distill``'s ``get_state()``) and its best epoch so far, atomically."""
        atomic_torch_save({"format": CACHE_FORMAT, "fingerprint": self.fingerprint, "training": training,
                           "digest": state_digest(training["student"]), "best_val_accuracy": best_val_accuracy,
                           "best_state": best_state, "best_digest": state_digest(best_state)}, self.path)
        self.last_saved = time.monotonic()

    def load(self, log: Log) -> dict[str, Any] | None:
        """The saved training in progress, or ``None``: none saved, or one that cannot be used (said in
        ``log``, and the training starts from epoch 0)."""
        if not self.path.exists():
            return None
        try:
            saved = safe_torch_load(self.path)
            _check_identity(saved, self.path, self.fingerprint)
            missing = missing_state_keys(saved.get("training"))
            if missing:
                raise CorruptFileError(f"{self.path} lacks {', '.join(missing)}")
            _check_digests(saved, self.path,
                           {"digest": saved["training"]["student"], "best_digest": saved["best_state"]})
            return saved
        except FileNotFoundError:  # removed since the check above (the teacher was cached meanwhile)
            return None
        except (CorruptFileError, KeyError, TypeError, AttributeError) as error:
            log(f"teacher training in progress {self.path} is unusable ({error}); training the teacher from epoch 0")
            return None


def eta_line(name: str, epoch_seconds: float, epochs_left: int) -> str:
    """The one line printed after the teacher's first epoch: about how long the remaining epochs take."""
    seconds = round(epoch_seconds * epochs_left)
    minutes, seconds = divmod(seconds, 60)
    left = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    return (f"teacher {name}: ETA about {left} for the remaining {epochs_left} epochs "
            f"(at {epoch_seconds:.1f} s per epoch; cached afterwards, later runs load it)")


def _check_identity(payload: Any, path: Path, key: str) -> None:
    """Raise ``CorruptFileError`` unless ``payload`` (a cache or training file) is this fingerprint's, in this
    format."""
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT or payload.get("fingerprint") != key:
        raise CorruptFileError(f"{path} belongs to another teacher or cache format")


def _check_digests(payload: dict[str, Any], path: Path, weights: dict[str, dict[str, torch.Tensor]]) -> None:
    """Raise ``CorruptFileError`` unless each of ``weights`` (``{digest key: state_dict}``) matches its digest."""
    if any(payload.get(digest) != state_digest(state) for digest, state in weights.items()):
        raise CorruptFileError(f"{path} has weights that do not match their digest")


def _load_cached(path: Path, key: str, log: Log) -> nn.Module | None:
    try:
        payload = safe_torch_load(path)
        _check_identity(payload, path, key)
        _check_digests(payload, path, {"digest": payload["state_dict"]})
        model = build_from_arch(payload["arch"])
        model.load_state_dict(payload["state_dict"])
        return model
    except (CorruptFileError, KeyError, TypeError, AttributeError, RuntimeError, ValueError) as error:
        log(f"teacher cache {path} is unusable ({error}); retraining the teacher")
        return None
