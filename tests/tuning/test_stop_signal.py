"""SIGTERM during a search asks Ray Tune to stop (its SIGUSR1 handler), and means what it meant elsewhere."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import pytest

from tuning.stop_signal import sigterm_stops_the_search


@pytest.fixture
def handlers() -> Iterator[list[str]]:
    """Records which handler each signal reached; the process's own handlers come back afterwards."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGUSR1)}
    calls: list[str] = []
    signal.signal(signal.SIGTERM, _recorder(calls, "earlier SIGTERM handler"))
    signal.signal(signal.SIGUSR1, _recorder(calls, "a finished search's Tune"))
    try:
        yield calls
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _recorder(calls: list[str], name: str) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(f"{name} got {signal.Signals(signum).name}")
    return handler


def test_sigterm_reaches_the_running_searchs_tune(handlers: list[str]) -> None:
    with sigterm_stops_the_search():
        signal.signal(signal.SIGUSR1, _recorder(handlers, "this search's Tune"))  # what Tuner.fit installs
        os.kill(os.getpid(), signal.SIGTERM)
    assert handlers == ["this search's Tune got SIGTERM"]
    os.kill(os.getpid(), signal.SIGTERM)  # after the search: the earlier meaning again
    assert handlers[1:] == ["earlier SIGTERM handler got SIGTERM"]


def test_before_tune_has_its_handler_sigterm_keeps_its_meaning(handlers: list[str]) -> None:
    """A SIGUSR1 handler left by an earlier search would only set that finished search's stop flag."""
    with sigterm_stops_the_search():
        os.kill(os.getpid(), signal.SIGTERM)
    assert handlers == ["earlier SIGTERM handler got SIGTERM"]
