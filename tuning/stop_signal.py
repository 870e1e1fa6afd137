"""Signals stop a run where it can be resumed: a search after Ray Tune's step, the final stage at once.

SIGTERM stops a running search the way Ray Tune stops on SIGUSR1: after its current step, state saved.

``ray.init`` makes SIGTERM raise ``SystemExit`` wherever the driver is. Ray Tune rewrites its experiment state
in place at every step, so a SIGTERM that lands during that write (a batch system's preemption, ``kill``,
``timeout``) leaves the file cut short, and the next attempt can only salvage the experiment (its finished
trials kept, the rest run again in a new one, the sampler started afresh). While a search runs, SIGTERM here
asks Ray Tune to stop instead, as SIGUSR1 and Ctrl-C do: Tune ends its step, saves its state whole and returns,
and the run stops with exit status 3, resumable with Ray's own restore. Outside a search SIGTERM does what
it did before: the driver's own files are written atomically.

In the final stage (``signals_stop_the_final_stage``) SIGTERM, SIGUSR1 (a batch system's warning that the time
limit is near) and SIGINT (Ctrl-C) raise the caller's exception within a second, from the stage's next wait on
its tasks (``check_stop``): its finished trainings are on disk (``tuning.seed_store``), so a rerun goes on from
them. Ray Tune leaves its SIGINT and SIGUSR1 handlers behind after a search, where they would only set that
finished search's stop flag: each search gives all three signals back their earlier handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

FINAL_STAGE_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


@contextlib.contextmanager
def sigterm_stops_the_search() -> Iterator[None]:
    """While the block runs ``Tuner.fit()``, SIGTERM calls the SIGUSR1 handler Ray Tune installs for that run.

    Before Tune has installed its handler (the first moments of ``fit``) SIGTERM keeps its earlier meaning,
    as it does after the block. Only the main thread can install handlers; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before_fit = {number: signal.getsignal(number) for number in FINAL_STAGE_SIGNALS}
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


# The exception of a signal the final stage received, raised by the next ``check_stop``: a handler must not raise
# itself, as it can run inside Ray's compiled calls (``ray.wait``), which then fail with a SystemError.
_requested_stop: list[BaseException] = []


@contextlib.contextmanager
def signals_stop_the_final_stage(error: Callable[[signal.Signals], BaseException]) -> Iterator[None]:
    """While the block runs, SIGTERM, SIGUSR1 and SIGINT make the next ``check_stop`` raise ``error(the signal)``
    (the final stage's waits call it at least every second); the earlier handlers come back after. The searches
    the block runs take SIGTERM, SIGUSR1 and SIGINT over while they run (``sigterm_stops_the_search``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in FINAL_STAGE_SIGNALS}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        _requested_stop[:] = [error(signal.Signals(signum))]

    for number in FINAL_STAGE_SIGNALS:
        signal.signal(number, request_stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _requested_stop.clear()  # a signal after the stage's last wait: the run is about done, let it finish


def check_stop() -> None:
    """Raise the exception of a signal received in the final stage, if one was; a wait calls it where it is safe."""
    if _requested_stop:
        raise _requested_stop.pop()
