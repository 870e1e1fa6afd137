"""A full results disk: found wherever it surfaces, stopped on cleanly, and resumed by the same command.

A disk fills up under a search in three places, and each raises rather than writes half a file:

- our own files (``trials.json``, ``summary.json``, ...) are written atomically (temp file, then
  ``os.replace``; the temp file is removed when the write fails), and an append to the Optuna journal that
  fails is cut back off (``tuning.journal.whole_appends``);
- a trial's checkpoint, copied by Ray into the storage path from the worker: ``tuning.trainable`` removes
  the partial copy and reports ``DISK_FULL`` instead of raising (a raise would be retried by Ray and logged
  as a trial failure); ``DiskFullGuard.on_trial_result`` stops the search on it;
- Ray Tune's experiment state, rewritten in place at every controller step: ``DiskFullGuard`` checks the
  free space before each step and stops the search while Ray still has its last whole snapshot.

Ray wraps what a callback raises (``TuneError`` around the exception being handled, ``RayTaskError`` with
a ``cause``), so ``disk_full_error`` walks the whole chain. ``stop_on_full_disk`` turns any of them into
``ResultsDiskFull``: one line from ``search.py``, and a run folder the same command resumes from Ray's last
snapshot (``tuning.resume``; a snapshot the disk cut short is salvaged). Ray's own log lines about the same
full disk (a trial failure, a snapshot it could not write) are left out (``quiet_ray_disk_full_logs``), so
that the user reads the one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import cloudpickle, tune

from tuning.trainable import DISK_FULL, DISK_FULL_ERRNOS

# Below this much free space the search stops before its next step. Ray rewrites its experiment state in
# place at every step (a file of about 10 kB per trial, plus the searcher's state), and a trial's checkpoint
# is a student's weights and optimiser state: a few MB at most under the default size bounds. 32 MiB leaves
# room for each of those writes to finish whole, so a disk with less counts as full.
MIN_FREE_BYTES = 32 * 2**20
# Ray's loggers that report a full disk before the driver does: trial failures and snapshots it could not save.
RAY_LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.execution.experiment_state")


class ResultsDiskFull(Exception):
    """The disk under the run folder (or Ray's storage path) is full; the run resumes once space is freed."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"results disk full at {path}; free space and rerun the same command")
        self.path = Path(path)


def disk_full_error(error: BaseException) -> BaseException | None:
    """The ``ResultsDiskFull``, or the ``OSError`` of a full disk, anywhere in ``error``'s chain; else ``None``.

    Follows ``__cause__`` and ``__context__`` (``raise ... from``, and what Ray raises while handling a
    callback's exception) and Ray's ``RayTaskError.cause`` (a worker's exception).
    """
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ResultsDiskFull):
            return current
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


def nearest_folder(path: Path) -> Path:
    """``path``, or its closest existing parent (a run folder not made yet is on its parent's disk)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(folders: tuple[Path, ...]) -> None:
    """Raise ``ResultsDiskFull`` naming the first of ``folders`` with less than ``MIN_FREE_BYTES`` free."""
    for folder in folders:
        stats = os.statvfs(nearest_folder(folder))
        if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
            raise ResultsDiskFull(folder)


@contextlib.contextmanager
def stop_on_full_disk(results_dir: Path, *folders: Path) -> Iterator[None]:
    """Check ``results_dir`` and ``folders`` have room first; turn a full disk met inside into ``ResultsDiskFull``.

    The path it names is the file that could not be written when that file is outside ``results_dir``
    (Ray's ``--storage-path``, the data cache), else ``results_dir``.
    """
    check_free_space((results_dir, *folders))
    try:
        yield
    except Exception as error:
        full = disk_full_error(error)
        if full is None:
            raise
        if isinstance(full, ResultsDiskFull):
            raise full from None
        raise ResultsDiskFull(_where(full, results_dir)) from error


def _where(error: BaseException, results_dir: Path) -> Path:
    """The path to name for ``error``: its file when that is outside ``results_dir``, else ``results_dir``."""
    filename = getattr(error, "filename", None)
    return _where_storage(Path(os.fsdecode(filename)), results_dir) if filename else results_dir


def _where_storage(path: Path, results_dir: Path) -> Path:
    """``results_dir`` for a path under it (the user named that folder), else ``path`` itself."""
    path = path.absolute()
    return results_dir if path.is_relative_to(results_dir.absolute()) else path


def _not_about_a_full_disk(record: logging.LogRecord) -> bool:
    """A logging filter: ``False`` for a record whose message or exception is a full disk."""
    if record.exc_info and record.exc_info[1] is not None and disk_full_error(record.exc_info[1]) is not None:
        return False
    message = record.getMessage()
    return not any(os.strerror(number) in message for number in DISK_FULL_ERRNOS)


def quiet_ray_disk_full_logs() -> None:
    """Leave Ray's log lines about a full disk out: the driver says it once, in ``ResultsDiskFull``'s line."""
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        if _not_about_a_full_disk not in logger.filters:
            logger.addFilter(_not_about_a_full_disk)


class DiskFullGuard(tune.Callback):
    """Stops a Ray Tune search when its disk fills up, before Ray writes a snapshot it could not finish.

    The first of the search's callbacks, so it acts before the run's records are touched. Ray pickles it
    with the experiment, so it holds plain paths only.
    """

    def __init__(self, results_dir: Path, storage: Path) -> None:
        self.results_dir, self.storage = results_dir, storage

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        # A statvfs per step: cheap beside the snapshot Ray writes to the same storage at every step.
        check_free_space((self.results_dir, self.storage))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if DISK_FULL in result:  # a worker could not copy its checkpoint (tuning.trainable)
            raise ResultsDiskFull(_where_storage(self.storage, self.results_dir))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stop_if_disk_full(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stop_if_disk_full(trial)

    def _stop_if_disk_full(self, trial: Any) -> None:
        """A trial failed on a full disk elsewhere than its checkpoint: stop, rather than retry it or count it
        as failed. Ray keeps the trial's exception in its pickled error file."""
        path = getattr(trial, "pickled_error_file", None)
        try:
            with open(path, "rb") as stream:
                error = cloudpickle.load(stream)
        except Exception:  # no file (Ray could not write it on the full disk), or none at all
            return
        if isinstance(error, BaseException) and disk_full_error(error) is not None:
            raise ResultsDiskFull(_where_storage(self.storage, self.results_dir))
