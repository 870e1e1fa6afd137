"""What a Ray worker costs before its first trial or task: the import it makes in a fresh process.

Every trial actor imports ``tuning.trainable`` and every final-stage task worker ``tuning.seed_runs`` in a new
Python process (Ray never hands a worker that ran tasks to an actor, and an actor's process ends with it), so a
default run pays this import for each of its three Ray Tune runs' actors and for its task workers, and the test
suite for every search it runs. This script times those imports in fresh interpreters, CPU seconds (user +
system, from the child's rusage) and wall, and lists the heavy modules each one loads.

    python bench/bench_worker_import.py                        # this checkout
    python bench/bench_worker_import.py --against ../old-tree  # and another checkout, interleaved
    python bench/bench_worker_import.py --module tuning.trainable --repeats 15   # one module, more imports

With ``--against``, the two checkouts are run alternately (this one first, then the other, ``--repeats`` times)
and the ratio of their medians is printed: side by side on the same machine, in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# What each kind of Ray worker imports, and the modules it has no use for (each one loaded is reported); an older
# checkout given to --against is timed on the same module names.
from tuning import DRIVER_ONLY_MODULES as HEAVY  # noqa: E402
from tuning import WORKER_MODULES  # noqa: E402


def time_import(checkout: Path, module: str) -> tuple[float, float, list[str]]:
    """CPU seconds and wall seconds of ``python -c 'import module'`` in ``checkout``, and the heavy modules it
    loaded."""
    code = (f"import sys; import {module}; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=checkout, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"import {module} failed in {checkout}: {err.strip().splitlines()[-1:]}")
    return usage.ru_utime + usage.ru_stime, wall, [m for m in out.strip().split(",") if m]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout of kdsearch, timed alternately with this one")
    parser.add_argument("--repeats", type=int, default=7, help="imports per module and checkout (default 7)")
    parser.add_argument("--module", action="append", choices=WORKER_MODULES,
                        help="time only this worker module (repeatable; default: both)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    checkouts = {"this": REPO}
    if args.against is not None:
        if not (args.against / "tuning" / "trainable.py").exists():
            parser.error(f"--against {args.against} is not a kdsearch checkout (no tuning/trainable.py)")
        checkouts["against"] = args.against.resolve()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeats} fresh imports per module")
    for module in args.module or WORKER_MODULES:
        cpu: dict[str, list[float]] = {name: [] for name in checkouts}
        wall: dict[str, list[float]] = {name: [] for name in checkouts}
        loaded: dict[str, list[str]] = {}
        for _ in range(args.repeats):
            for name, checkout in checkouts.items():
                seconds, elapsed, heavy = time_import(checkout, module)
                cpu[name].append(seconds)
                wall[name].append(elapsed)
                loaded[name] = heavy
        for name in checkouts:
            print(f"import {module:18s} {name:8s} CPU median {statistics.median(cpu[name]):.2f} s "
                  f"(min {min(cpu[name]):.2f}), wall median {statistics.median(wall[name]):.2f} s; "
                  f"loads {', '.join(loaded[name]) or 'none of ' + '/'.join(HEAVY[:5])}")
        if "against" in checkouts:
            ratio = statistics.median(cpu["this"]) / statistics.median(cpu["against"])
            print(f"import {module:18s} CPU this / against: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
