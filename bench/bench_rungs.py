"""Benchmark: does ASHA's early stop rank distillation trials the way their full training does?

    .venv/bin/python bench/bench_rungs.py --results-dir /tmp/rungs -- --budget 30            # digits
    .venv/bin/python bench/bench_rungs.py --results-dir /tmp/rungs -- --dataset mnist \\
        --data-dir ../shared/data/mnist-10k --budget 16
    .venv/bin/python bench/bench_rungs.py --run-dir results/<run>                          # an existing run

Runs ``search.py`` with ``--scheduler none --top-k 0`` and the flags after ``--`` (every trial trains every
epoch, no final stage), then, over the trials that completed, prints the Spearman rank correlation between the
validation accuracy at each of ASHA's rungs (the epochs where ``tuning.tuner.make_scheduler`` would compare
trials: ``grace_period = epochs // 5``, then x4) and at the last epoch, and how many of the final top 5 each rung
keeps in its own top quarter (the share ASHA's reduction factor 4 lets through). A rung that ranks trials as
the full training does (rho near 1) stops nothing that would have won; a low rho means ASHA misleads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1 (smallest); tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(first: Sequence[float], second: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the two rank vectors (ties averaged)."""
    a, b = ranks(first), ranks(second)
    count = len(a)
    mean_a, mean_b = sum(a) / count, sum(b) / count
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    spread = (sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b)) ** 0.5
    return covariance / spread if spread else float("nan")


def rungs(epochs: int) -> list[int]:
    """ASHA's rungs as ``make_scheduler`` sets them: grace period ``epochs // 5`` (at least 1), factor 4."""
    rung, found = max(1, epochs // 5), []
    while rung < epochs:
        found.append(rung)
        rung *= 4
    return found


def rung_table(records: list[dict], epochs: int) -> list[dict]:
    """For each rung: trials compared, Spearman's rho with the last epoch, and the final top 5 kept in the rung's
    top quarter."""
    full = [r for r in records if r.get("state") == "COMPLETE" and len(r.get("curve") or []) >= epochs]
    final = {r["trial_id"]: r["curve"][epochs - 1]["val_accuracy"] for r in full}
    top_final = set(sorted(final, key=final.get, reverse=True)[:5])
    table = []
    for rung in rungs(epochs):
        at_rung = {r["trial_id"]: r["curve"][rung - 1]["val_accuracy"] for r in full}
        ids = sorted(at_rung)
        keep = max(1, len(ids) // 4)
        kept = set(sorted(ids, key=at_rung.get, reverse=True)[:keep])
        table.append({"rung": rung, "trials": len(ids),
                      "spearman": spearman([at_rung[i] for i in ids], [final[i] for i in ids]),
                      "top5_kept": len(top_final & kept), "kept": keep})
    return table


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    search_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--run-name", default="rungs")
    parser.add_argument("--run-dir", help="read this finished run folder instead of running a search")
    args = parser.parse_args(own)
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        command = [sys.executable, str(REPO / "search.py"), "--scheduler", "none", "--top-k", "0",
                   "--results-dir", args.results_dir, "--run-name", args.run_name, *search_flags]
        print("running:", " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=REPO)
        run_dir = Path(args.results_dir) / args.run_name
    records = json.loads((run_dir / "trials.json").read_text())
    epochs = int(json.loads((run_dir / "spec.json").read_text())["epochs"])
    print(f"{run_dir}: {len(records)} trials, {epochs} epochs each (ASHA rungs {rungs(epochs)})")
    print("rung (epoch) | trials | Spearman rho with the last epoch | final top 5 kept in the rung's top quarter")
    for row in rung_table(records, epochs):
        print(f"{row['rung']} | {row['trials']} | {row['spearman']:.2f} | {row['top5_kept']} of 5 "
              f"(quarter = {row['kept']})")


if __name__ == "__main__":
    main()
