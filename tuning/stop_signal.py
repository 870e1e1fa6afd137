"""SIGTERM stops a running search the way Ray Tune stops on SIGUSR1: after its current step, state saved.

``ray.init`` makes SIGTERM raise ``SystemExit`` wherever the driver is. Ray Tune rewrites its experiment state
in place at every step, so a SIGTERM that lands during that write (a batch system's preemption, ``kill``,
``timeout``) leaves the file cut short, and the next attempt can only salvage the experiment (its finished
trials kept, the rest run again in a new one, the sampler started afresh). While a search runs, SIGTERM here
asks Ray Tune to stop instead, as SIGUSR1 and Ctrl-C do: Tune ends its step, saves its state whole and returns,
and the run stops with exit status 3, resumable with Ray's own restore. Outside a search SIGTERM does what
it did before: the driver's own files are written atomically.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def sigterm_stops_the_search() -> Iterator[None]:
    """While the block runs ``Tuner.fit()``, SIGTERM calls the SIGUSR1 handler Ray Tune installs for that run.

    Before Tune has installed its handler (the first moments of ``fit``) SIGTERM keeps its earlier meaning,
    as it does after the block. Only the main thread can install handlers; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    usr1_before_fit = signal.getsignal(signal.SIGUSR1)  # a handler left by an earlier search's Tune is stale

    def stop_the_search(signum: int, frame: FrameType | None) -> None:
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if callable(tune_handler) and tune_handler is not usr1_before_fit:
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
        signal.signal(signal.SIGTERM, previous)
