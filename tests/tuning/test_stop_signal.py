"""SIGTERM during a search asks Ray Tune to stop (its SIGUSR1 handler); in the final stage a signal stops at once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import pytest
import ray

from tests.tuning.conftest import sleep_then_return
from tuning.seed_runs import wait_with_progress
from tuning.stop_signal import check_stop, signals_request_a_stop, sigterm_stops_the_search, stop_requested


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


def test_a_search_gives_sigint_and_sigusr1_back(handlers: list[str]) -> None:
    """Ray Tune leaves its handlers installed after a search; a first Ctrl-C after it would do nothing."""
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGUSR1, signal.SIGTERM)}
    with sigterm_stops_the_search():
        for number in (signal.SIGINT, signal.SIGUSR1):  # what Tuner.fit installs, and does not undo
            signal.signal(number, _recorder(handlers, "this search's Tune"))
    assert {number: signal.getsignal(number) for number in before} == before


class _Stopped(Exception):
    pass


def test_without_again_stops_at_once_a_second_signal_only_repeats_the_request() -> None:
    """The final stage's block: its waits are Ray calls, where a handler's exception would become a SystemError."""
    handlers: list[str] = []
    previous = signal.signal(signal.SIGUSR1, _recorder(handlers, "before"))
    try:
        with pytest.raises(_Stopped, match="SIGUSR1"):
            with signals_request_a_stop(lambda number: _Stopped(number.name)):
                for _ in range(2):
                    os.kill(os.getpid(), signal.SIGUSR1)
                    time.sleep(0.05)
                assert handlers == [] and stop_requested()
                check_stop()
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_signal_requests_a_stop_once_and_the_same_signal_again_stops_at_once() -> None:
    """The first signal is announced and requested (``check_stop`` raises it where the work stops whole); a
    second one does what it did before the block, as a second Ctrl-C during a long teacher epoch should."""
    handlers: list[str] = []
    previous = signal.signal(signal.SIGUSR1, _recorder(handlers, "before"))
    announced: list[signal.Signals] = []
    try:
        with signals_request_a_stop(lambda number: _Stopped(number.name), announce=announced.append,
                                    again_stops_at_once=True):
            assert not stop_requested()
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)  # the handler runs in the main thread, between two bytecodes
            assert stop_requested() and announced == [signal.SIGUSR1] and handlers == []
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
            assert handlers == ["before got SIGUSR1"] and announced == [signal.SIGUSR1]
            with pytest.raises(_Stopped, match="SIGUSR1"):
                check_stop()
            assert not stop_requested()
        assert not stop_requested()
    finally:
        signal.signal(signal.SIGUSR1, previous)



@pytest.mark.parametrize("received", [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_final_stage_ends_a_wait_on_its_tasks_at_once(ray_cluster: None,
                                                                       received: signal.Signals) -> None:
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGUSR1, signal.SIGTERM)}
    task = sleep_then_return.remote(30.0, 0)
    started = time.perf_counter()
    with pytest.raises(_Stopped, match=received.name):
        with signals_request_a_stop(lambda number: _Stopped(number.name)):
            threading.Timer(0.5, os.kill, (os.getpid(), received)).start()
            wait_with_progress([task], "trainings", log=None)  # how the final stage waits on its tasks
    assert time.perf_counter() - started < 10  # not the task's 30 s
    assert {number: signal.getsignal(number) for number in before} == before
    ray.cancel(task, force=True)
