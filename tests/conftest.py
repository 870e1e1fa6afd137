"""Suite-wide: two streams of tests, run side by side by pytest-xdist (``-n 2 --dist loadgroup``).

The tests that drive whole processes (SLURM jobs, Ray clusters of several nodes, a ``search.py`` killed and
rerun, a full disk, bad input given to the command) spend part of their time waiting on those processes (SLURM's
requeue, Ray's start): they form one group, run by one worker, while the other worker runs every other test, in
file order, with its module fixtures built once. On 2 cores both streams mostly compete for the CPU, so the
gain is modest: 916 s against 993 s in one process, before the searches of ``test_flag_values.py`` joined
the first group.
"""

from __future__ import annotations

import pytest

# The last: one real search per dataset format, sampler and scheduler, moved here to even out the two streams
# (the other was the longer by about 4 minutes).
PROCESS_TESTS = ("tests/cluster/", "tests/tuning/test_resume.py", "tests/tuning/test_disk_full.py",
                 "tests/tuning/test_bad_input.py", "tests/tuning/test_flag_values.py")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = "processes" if item.nodeid.startswith(PROCESS_TESTS) else "in-process"
            item.add_marker(pytest.mark.xdist_group(group))
