"""Suite-wide: two streams of tests, run side by side by pytest-xdist (``-n 2``).

The tests that drive whole processes (SLURM jobs, Ray clusters of several nodes, a ``search.py`` killed and
rerun, a full disk, bad input given to the command) spend part of their time waiting on those processes (SLURM's
requeue, Ray's start): they form one stream, run by one worker, while the other worker runs every other test, in
file order, with its module fixtures built once.

The streams are this file's scheduler's two scopes, split by path. xdist's own ``--dist loadgroup`` would do it
from ``xdist_group`` marks, but pytest-xdist 3.8 tags a grouped test by rewriting ``item._nodeid``, which pytest
9 no longer reads: every test became its own unit, spread over both workers, with module fixtures built on each
and process-driving tests run two at a time.

Two streams share this machine's cores, so every process the suite starts trains on one thread
(``OMP_NUM_THREADS=1``, inherited by the ``search.py`` processes and SLURM jobs the tests start; Ray's workers
set their own count from their CPUs). torch's default, one thread per core, is what a run alone on a machine
wants; two such processes on two cores stall each other at every OpenMP barrier of a tiny model's step: the
SLURM time-limit test's teacher check, 200 epochs of a small student on the driver, took 87 s in the suite
against 6 s alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from xdist.scheduler import LoadScopeScheduling  # noqa: E402

# The last: one real search per dataset format, sampler and scheduler, there to even out the two streams.
PROCESS_TESTS = ("tests/cluster/", "tests/tuning/test_resume.py", "tests/tuning/test_disk_full.py",
                 "tests/tuning/test_bad_input.py", "tests/tuning/test_flag_values.py")


def stream_of(nodeid: str) -> str:
    """The stream a test runs in: ``processes`` or ``in-process``."""
    return "processes" if nodeid.startswith(PROCESS_TESTS) else "in-process"


class TwoStreams(LoadScopeScheduling):
    """xdist's scope scheduling with two scopes, the streams: each goes whole to one worker, in file order."""

    def _split_scope(self, nodeid: str) -> str:
        return stream_of(nodeid)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which would build the --dist mode's scheduler
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadScopeScheduling:
    return TwoStreams(config, log)
