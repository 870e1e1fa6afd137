"""Signals stop a run where it can be resumed: a search after Ray Tune's step, the final stage at once, a
teacher's training after its epoch.

SIGTERM stops a running search the way Ray Tune stops on SIGUSR1: after its current step, state saved.

``ray.init`` makes SIGTERM raise ``SystemExit`` wherever the driver is. Ray Tune rewrites its experiment state
in place at every step, so a SIGTERM that lands during that write (a batch system's preemption, ``kill``,
``timeout``) leaves the file cut short, and the next attempt can only salvage the experiment (its finished
trials kept, the rest run again in a new one, the sampler started afresh). While a search runs, SIGTERM here
asks Ray Tune to stop instead, as SIGUSR1 and Ctrl-C do: Tune ends its step, saves its state whole and returns,
and the run stops with exit status 3, resumable with Ray's own restore. Outside a search SIGTERM does what
it did before: the driver's own files are written atomically.

In the final stage and while a teacher trains (``signals_request_a_stop``) SIGTERM, SIGUSR1 (a batch system's
warning that the time limit is near) and SIGINT (Ctrl-C) ask the work to stop where it can be gone on with: the
final stage raises the caller's exception within a second, from its next wait on its tasks (``check_stop``), its
finished trainings on disk (``tuning.seed_store``); a teacher's training saves its state after the epoch it is in
(``trainers.teacher_training``). A rerun goes on from there. While a teacher trains the same signal again
stops at once.

Ray Tune leaves its SIGINT and SIGUSR1 handlers behind after a search, where they would only set that finished
search's stop flag: each search gives all three signals back their earlier handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class SearchInterrupted(Exception):
    """The run stopped before its end (a signal); rerunning the same command goes on from where it stopped."""


@contextlib.contextmanager
def sigterm_stops_the_search() -> Iterator[None]:
    """While the block runs ``Tuner.fit()``, SIGTERM calls the SIGUSR1 handler Ray Tune installs for that run.

    Before Tune has installed its handler (the first moments of ``fit``) SIGTERM keeps its earlier meaning,
    as it does after the block. Only the main thread can install handlers; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before_fit = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    previous = before_fit[signal.SIGTERM]

    def stop_the_search(signum: int, frame: FrameType | None) -> None:
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if callable(tune_handler) and tune_handler is not before_fit[signal.SIGUSR1]:
            tune_handler(signum, frame)
        elif callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_the_search)
    try:
        yield
    finally:
        # Ray Tune leaves its SIGINT and SIGUSR1 handlers installed after the search: they would only set the
        # finished search's stop flag (a first Ctrl-C after it did nothing).
        for number, handler in before_fit.items():
            signal.signal(number, handler)


# The signal received in a ``signals_request_a_stop`` block and the exception it asks for, raised by the next
# ``check_stop``: a handler must not raise itself, as it can run inside Ray's compiled calls (``ray.wait``), which
# then fail with a SystemError.
_requested_stop: list[BaseException] = []


@contextlib.contextmanager
def signals_request_a_stop(error: Callable[[signal.Signals], BaseException],
                           announce: Callable[[signal.Signals], None] | None = None,
                           again_stops_at_once: bool = False) -> Iterator[None]:
    """While the block runs, SIGTERM, SIGUSR1 and SIGINT request a stop: ``stop_requested()`` turns true and the
    next ``check_stop`` raises ``error(the signal)``; ``announce(the signal)`` is called when it arrives.

    The block's work asks where it can stop whole: the final stage's waits at least every second, a teacher's
    training after each epoch, which can take minutes. With ``again_stops_at_once`` a second signal does what it
    would outside the block, at once (a block whose work makes Ray calls leaves it off: an exception raised by a
    handler inside ``ray.wait`` surfaces as Ray's SystemError). The earlier handlers come back after the block.
    The searches the block runs take the three signals over while they run (``sigterm_stops_the_search``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        received = signal.Signals(signum)
        if _requested_stop and again_stops_at_once:  # asked twice: what the signal did before the block, now
            for number, handler in previous.items():
                signal.signal(number, handler)
            handler = previous[received]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received)
            return
        _requested_stop[:] = [error(received)]
        if announce is not None:
            announce(received)

    for number in STOP_SIGNALS:
        signal.signal(number, request_stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _requested_stop.clear()  # a signal after the block's last check: its work is about done, let it finish


def stop_requested() -> bool:
    """Whether a signal has asked the current ``signals_request_a_stop`` block to stop."""
    return bool(_requested_stop)


def check_stop() -> None:
    """Raise the exception of the signal that asked the block to stop, if one did; called where stopping is safe."""
    if _requested_stop:
        raise _requested_stop.pop()
