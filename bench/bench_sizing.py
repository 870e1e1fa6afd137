"""Benchmark: how long the size bounds take to size each student family, before any trial trains.

    .venv/bin/python bench/bench_sizing.py --input-shape 1,8,8 --max-latency-ms 0.1 --max-flops 5M

For each registered family alone (its default depth and width ranges), side by side in one run, with a cold
cache (a fresh latency folder, and the registry's in-process caches cleared):

a. parameters: ``spaces.bound_space_to`` with the parameter bound only (``--max-params``, default: no bound is
   met by any student above 10M, so the whole bisection runs);
b. FLOPs: the same with ``--max-flops`` (torch's ``FlopCounterMode`` on the meta device);
c. latency: the same with ``--max-latency-ms`` (each student the bisection asks about exported to ONNX and timed
   with onnxruntime at batch 1 on one thread), with the number of students timed;
d. the same latency bound again on the warm cache (a rerun, or a resume): nothing timed.

Each line prints the seconds, the students sized and the widest fitting student per depth. The bounds are the
search's own code (``tuning.bounds.student_measures``), so the figures are what ``search.py`` spends before its
first trial (the log line ``students: latency bound ...`` says the same for a whole space).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spaces import (  # noqa: E402
    SearchSpace,  # noqa: E402
    SizeBound,
    bound_space_to,
)
from trainers.models import _registry, student_family_bounds  # noqa: E402
from tuning.bounds import UNITS, parse_max_flops, student_measures  # noqa: E402
from tuning.spec import registered_families  # noqa: E402


def size_family(family: str, input_shape: tuple[int, ...], classes: int, key: str, limit: float,
                latency_folder: Path) -> tuple[float, int, dict[int, int]]:
    """Seconds to bound ``family`` by ``key`` <= ``limit``, students measured, and the widest fit per depth."""
    measures, latency = student_measures(input_shape, classes, latency_folder)
    measured = [0]
    measure = measures.of(key)

    def counted(name: str, depth: int, width: int) -> float:
        measured[0] += 1
        return measure(name, depth, width)

    space = SearchSpace(families={family: registered_families(all_families=True)[family]})
    started = time.perf_counter()
    try:
        bounded = bound_space_to(space, [SizeBound(key, limit, counted, UNITS[key])])
        widest = dict(bounded.families[family].max_width)
    except ValueError:
        widest = {}
    seconds = time.perf_counter() - started
    return seconds, latency.measured if key == "latency_ms" else measured[0], widest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-shape", default="1,8,8", help="C,H,W of the data (default digits' 1,8,8)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--max-params", type=int, default=10_000_000)
    parser.add_argument("--max-flops", default="5M")
    parser.add_argument("--max-latency-ms", type=float, default=0.1)
    parser.add_argument("--families", default=",".join(student_family_bounds(all_families=True)))
    args = parser.parse_args(argv)
    shape = tuple(int(part) for part in args.input_shape.split(","))
    limits = {"params": args.max_params, "flops": parse_max_flops(args.max_flops), "latency_ms": args.max_latency_ms}
    print(f"input {shape}, {args.classes} classes; bounds: {args.max_params:,} params, {limits['flops']:,} FLOPs, "
          f"{args.max_latency_ms} ms (onnxruntime, batch 1, one thread)")
    print("family | params s (sized) | FLOPs s (sized) | latency s (timed) | warm latency s (timed) | "
          "widest by latency")
    with tempfile.TemporaryDirectory() as folder:
        for family in args.families.split(","):
            # Cold: the registry's in-process caches of counts are emptied for each family.
            _registry.student_parameter_count.cache_clear()
            _registry._student_flops.cache_clear()
            cells = []
            for key in ("params", "flops", "latency_ms"):
                seconds, sized, widest = size_family(family, shape, args.classes, key, limits[key],
                                                     Path(folder) / "latency")
                cells.append(f"{seconds:.1f} ({sized})")
            warm, timed, widest = size_family(family, shape, args.classes, "latency_ms", limits["latency_ms"],
                                              Path(folder) / "latency")
            cells.append(f"{warm:.2f} ({timed})")
            cells.append(", ".join(f"d{depth} w{width}" for depth, width in sorted(widest.items())) or "none fits")
            print(f"{family} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
