"""Benchmark: does TPE + ASHA at budget N match random search without early stopping at budget 2N?

    .venv/bin/python bench/bench_search_efficiency.py                 # N = 20, seeds 0 1 2, digits (~20 min)
    .venv/bin/python bench/bench_search_efficiency.py --budget 10 --seeds 0

Hyperband's bar: random search given twice the trials and no early stopping. For each seed, both searches run
the real kdsearch search (``tuning.prepare`` + ``tuning.runner.search``: Ray Tune, OptunaSearch, the default space,
15 epochs per full trial, 2 CPU slots) on the same prepared data and teacher; the final stage is not run. Both
searchers start from the standard hand-set recipe (kdsearch's warm start), so both see it.

Per search it prints the best validation accuracy any trial reached and the epochs all trials consumed.
Target (issue 10, target 5): TPE + ASHA at least as good (best validation accuracy >= random's, within one
validation image) with at most a third of random's epochs, on every seed. Always exits 0.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402

from tuning import build_spec  # noqa: E402
from tuning.prepare import prepare  # noqa: E402
from tuning.runner import search  # noqa: E402

EPOCH_FRACTION_TARGET = 1 / 3


def run_search(budget: int, sampler: str, scheduler: str, seed: int, results_dir: str, prepared=None):
    """One search; returns (best val accuracy, epochs consumed, trials, wall seconds, prepared, val size)."""
    spec = build_spec(budget=budget, sampler=sampler, scheduler=scheduler, seed=seed, results_dir=results_dir,
                      run_name=f"bench-eff-{sampler}-{scheduler}-{budget}-s{seed}-{int(time.time())}")
    try:
        if prepared is None:
            prepared = prepare(spec, log=lambda line: None)
        started = time.perf_counter()
        records = search(spec, prepared, log=lambda line: None)
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(spec.run_dir, ignore_errors=True)
    best = max((r.get("best_val_accuracy") or 0.0) for r in records)
    epochs = sum(int(r.get("epochs") or 0) for r in records)
    return best, epochs, len(records), wall, prepared, len(prepared.data.val_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20, help="N: TPE + ASHA trials (random gets 2N)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results-dir", default="results", help="the teacher cache under it is reused")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    # A Ray of its own: a bare ray.init() would join a cluster someone started with `ray start` on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for seed in args.seeds:
            # Alternate which side runs first, so a slow patch of the shared machine does not always hit one.
            sides = [("tpe", "asha", args.budget), ("random", "none", 2 * args.budget)]
            if seed % 2:
                sides.reverse()
            prepared = None
            results = {}
            for sampler, scheduler, budget in sides:
                best, epochs, trials, wall, prepared, val_size = run_search(
                    budget, sampler, scheduler, seed, args.results_dir, prepared)
                results[sampler] = (best, epochs, trials, wall)
                print(f"seed {seed} {sampler}+{scheduler} budget {budget}: best val {best:.4f}, {epochs} epochs, "
                      f"{trials} trials, {wall:.0f} s", flush=True)
            rows.append((seed, results, val_size))
    finally:
        if ray.is_initialized():
            ray.shutdown()

    print()
    print(f"search efficiency on digits: TPE+ASHA budget {args.budget} vs random without early stopping budget "
          f"{2 * args.budget}, 15 epochs per full trial, {time.perf_counter() - started:.0f} s in all")
    header = (f"{'seed':>4s}  {'TPE+ASHA best val':>17s}  {'random best val':>15s}  {'TPE+ASHA epochs':>15s}  "
              f"{'random epochs':>13s}  {'epoch ratio':>11s}  verdict")
    print(header)
    passes = []
    for seed, results, val_size in rows:
        tpe_best, tpe_epochs, _, _ = results["tpe"]
        random_best, random_epochs, _, _ = results["random"]
        fraction = tpe_epochs / random_epochs
        ok = tpe_best >= random_best - 1 / val_size + 1e-9 and fraction <= EPOCH_FRACTION_TARGET
        passes.append(ok)
        print(f"{seed:>4d}  {tpe_best:>17.4f}  {random_best:>15.4f}  {tpe_epochs:>15d}  {random_epochs:>13d}  "
              f"{fraction:>11.3f}  {'PASS' if ok else 'FAIL'}")
    tpe_mean = statistics.mean(r["tpe"][0] for _, r, _ in rows)
    random_mean = statistics.mean(r["random"][0] for _, r, _ in rows)
    fraction = sum(r["tpe"][1] for _, r, _ in rows) / sum(r["random"][1] for _, r, _ in rows)
    print(f"mean best val: TPE+ASHA {tpe_mean:.4f}, random {random_mean:.4f}; epochs TPE+ASHA / random "
          f"{fraction:.3f} (target: at least as good, <= {EPOCH_FRACTION_TARGET:.3f}): "
          f"{'PASS' if all(passes) else 'FAIL'} on {sum(passes)} of {len(passes)} seeds")


if __name__ == "__main__":
    main()
