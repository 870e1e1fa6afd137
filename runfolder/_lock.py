"""One driver per run: an exclusive lock on ``<results-dir>/.<run>.lock``, held for the whole run.

The lock file lies beside the run folder, not in it, so that a run refused for bad input after the lock was
taken leaves no run folder behind. It is never unlinked: removing a lock file races with a process that has
it open and is about to lock it (both would then hold "the" lock, on two different files). An empty leftover
is harmless; while held it records who holds it (pid, host, start time, command line) so that a second
driver's one-line refusal names the running process.

We use ``fcntl.lockf`` (POSIX record locks) rather than ``fcntl.flock``: POSIX locks are the ones NFS
implements (NLM, NFSv4 byte-range locks) and other shared file systems (Lustre, GPFS) honour across nodes,
and they are not inherited by forked children, so a data-loader worker or any other child that outlives a
killed driver never keeps its lock. The OS drops them when the process dies, so ``kill -9`` never blocks a
resume. Their catch: they belong to the process, and closing *any* descriptor of the file drops them, so
this module opens the file once per hold and refuses a second hold of the same run in the same process.

Storage without working locks (``ENOLCK``, ``EOPNOTSUPP``: NFS mounted with ``nolock``, some FUSE file
systems) gets a warning and the run goes on unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_HELD_ERRNOS = (errno.EACCES, errno.EAGAIN)  # what a non-blocking lockf raises when another process holds it
_UNSUPPORTED_ERRNOS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
_MAX_COMMAND_CHARS = 300  # the refusal is one line; a very long command line is cut
_MAX_HOLDER_BYTES = 4096

_held: set[Path] = set()  # lock files this process holds (POSIX locks cannot tell us: they never conflict within it)


class RunLocked(Exception):
    """Another driver is running the same run; the message names it on one line."""


def lock_path(results_dir: str | Path, run_name: str) -> Path:
    """The lock file of run ``run_name``: ``<results-dir>/.<run>.lock``, beside its run folder."""
    return Path(results_dir).expanduser().absolute() / f".{run_name}.lock"


@contextlib.contextmanager
def hold_run_lock(results_dir: str | Path, run_name: str, warn: Callable[[str], None]) -> Iterator[None]:
    """Hold the run's lock for the ``with`` block, or raise ``RunLocked`` at once (no waiting).

    ``warn`` gets one line when the storage does not support locks; the block then runs unlocked.
    """
    path = lock_path(results_dir, run_name)
    if path in _held:
        raise RunLocked(f"run '{run_name}' is already running in this process; use another --run-name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the whole file: from offset 0 (just opened) to its end
    except OSError as error:
        holder = _read_holder(fd) if error.errno in _HELD_ERRNOS else None
        os.close(fd)
        if error.errno in _HELD_ERRNOS:
            raise RunLocked(_refusal(run_name, holder, path)) from None
        if error.errno not in _UNSUPPORTED_ERRNOS:
            raise
        unsupported = error.strerror or errno.errorcode.get(error.errno, str(error.errno))
    else:
        unsupported = None
    if unsupported is not None:
        warn(f"warning: {path.parent} does not support file locks ({unsupported}); run '{run_name}' goes on "
             "unlocked, so make sure no other search.py uses the same --run-name and --results-dir")
        yield
        return
    _held.add(path)
    try:
        _write_holder(fd)
        yield
    finally:
        _held.discard(path)
        with contextlib.suppress(OSError):  # clear who held it before letting go, so the file never lies
            os.ftruncate(fd, 0)
        os.close(fd)  # closing releases the POSIX lock


def check_not_running(results_dir: str | Path, run_name: str) -> None:
    """Raise ``RunLocked`` if another process holds the run's lock; creates nothing.

    A cheap early probe (``search.py`` calls it before importing torch and Ray, so a second driver is
    refused at once); ``hold_run_lock`` remains the real guard.
    """
    path = lock_path(results_dir, run_name)
    if path in _held:
        raise RunLocked(f"run '{run_name}' is already running in this process; use another --run-name")
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:  # no lock file (never run), or unreadable: hold_run_lock will decide
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in _HELD_ERRNOS:
            raise RunLocked(_refusal(run_name, _read_holder(fd), path)) from None
    finally:
        os.close(fd)  # also releases the probe's lock if it got one


def _write_holder(fd: int) -> None:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    command = shlex.join(argv)
    if len(command) > _MAX_COMMAND_CHARS:
        command = command[:_MAX_COMMAND_CHARS - 3] + "..."
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": command}
    data = json.dumps(holder).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    with contextlib.suppress(OSError):  # so that a driver on another node reads it (NFS writes back lazily)
        os.fsync(fd)


def _read_holder(fd: int) -> dict | None:
    try:
        holder = json.loads(os.pread(fd, _MAX_HOLDER_BYTES, 0) or b"null")
    except (OSError, ValueError):  # being written at this instant, or not ours: the refusal still stands
        return None
    return holder if isinstance(holder, dict) else None


def _refusal(run_name: str, holder: dict | None, path: Path) -> str:
    if holder:
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('started', '?')}, "
               f"`{holder.get('command', '?')}`")
    else:
        who = f"by another process, which holds {path}"
    return f"run '{run_name}' is already running ({who}); wait for it or use another --run-name"
