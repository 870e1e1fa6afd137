"""Benchmark: is the distillation recipe's surface flat at the winning architecture? (issue 21)

    .venv/bin/python bench/bench_recipe_surface.py --run-dir /tmp/m21/s0 -- --dataset mnist \\
        --data-dir ../shared/data/mnist-10k --seed 0 --results-dir /tmp/m21 --run-name s0

Reads a finished run's ``summary.json`` (its winner's architecture and its baseline's lr, weight decay and
batch size), prepares data and teacher through ``tuning.prepare`` with the ``search.py`` flags after ``--``
(the run's own, its ``--run-name`` included: the teacher comes from the cache, nothing is
written to the run), and trains the winner's architecture with
the textbook recipe (``tuning.gain_curve.textbook_recipe``: no feature loss, every step distilled, the
baseline's optimisation settings, the dataset's default augmentation) at every alpha x temperature of the
grid, over the run's final seeds, finetuned by the final stage's rule, as Ray tasks. It prints each cell's
validation and test mean ± std and its paired test gain over the textbook cell (alpha 0.9, T 4) with the
95 % interval and verdict: a surface on which no cell differs from the textbook one is flat at the test
split's resolution, and then no recipe search can show a gain there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402

import search  # noqa: E402
from runfolder import mean_std, paired_gain, resolution_points  # noqa: E402
from tuning import build_spec  # noqa: E402
from tuning.gain_curve import TEXTBOOK_KD_TERMS, arch_of, arch_text, textbook_recipe  # noqa: E402
from tuning.prepare import prepare  # noqa: E402
from tuning.seed_runs import SeedTasks, seed_test_accuracy  # noqa: E402


def grid_configs(winner: dict, baseline: dict, alphas: list[float],
                 temperatures: list[float]) -> dict[tuple[float, float], dict]:
    """The textbook recipe of ``winner``'s architecture at each (alpha, temperature) of the grid."""
    textbook = textbook_recipe(winner, baseline)
    return {(alpha, temperature): {**textbook, "alpha": alpha, "temperature": temperature}
            for alpha in alphas for temperature in temperatures}


def surface_rows(results: dict[tuple[float, float], dict[str, list[float]]],
                 reference_cell: tuple[float, float]) -> list[dict]:
    """Per cell (sorted): validation and test mean ± std, and the paired test gain over ``reference_cell``."""
    reference = results[reference_cell]["test"]
    rows = []
    for (alpha, temperature), result in sorted(results.items()):
        gain = paired_gain(result["test"], reference)
        rows.append({"alpha": alpha, "temperature": temperature, "val_mean_std": mean_std(result["val"]),
                     "test_mean_std": mean_std(result["test"]), "test": result["test"], "gain": gain.gain,
                     "ci95": gain.ci95, "verdict": gain.verdict})
    return rows


def numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run: its winner and baseline recipe")
    parser.add_argument("--alphas", type=numbers, default=[0.5, 0.75, 0.9])
    parser.add_argument("--temperatures", type=numbers, default=[2.0, 4.0, 8.0])
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv[:split])
    summary = json.loads((args.run_dir / "summary.json").read_text())
    winner, baseline = summary["best_config"], summary["baseline"]["recipe"]
    # The run's own flags and --run-name: its teacher comes from the cache and its teacher check from the run folder.
    spec = build_spec(**vars(search.parse_args(argv[split + 1:])))
    started = time.perf_counter()
    prepared = prepare(spec, log=print)
    data, teacher = prepared.data, prepared.teacher
    tasks = SeedTasks(spec, data, teacher, prepared.gpus_per_trial)
    configs = grid_configs(winner, baseline, args.alphas, args.temperatures)
    textbook_cell = (TEXTBOOK_KD_TERMS["alpha"], TEXTBOOK_KD_TERMS["temperature"])
    if textbook_cell not in configs:
        configs[textbook_cell] = {**next(iter(configs.values())), "alpha": textbook_cell[0],
                                  "temperature": textbook_cell[1]}
    print(f"recipe surface: {arch_text(arch_of(winner))}, {len(configs)} cells x seeds {tasks.seeds}, "
          f"optimisation {[baseline.get(key) for key in ('lr', 'weight_decay', 'batch_size')]}")
    pending = {cell: tasks.finetune(tasks.launch(config)) for cell, config in configs.items()}
    results = {}
    for cell, futures in pending.items():
        runs = ray.get(futures)
        results[cell] = {"val": [run.val_accuracy for run in runs],
                         "test": [seed_test_accuracy(run, data) for run in runs]}
    ray.shutdown()
    rows = surface_rows(results, textbook_cell)
    resolution = resolution_points(len(data.test_y))
    print("\n| alpha | T | val mean ± std | test mean ± std | test gain over alpha 0.9, T 4 [95 % CI] |\n"
          "|---|---|---|---|---|")
    for row in rows:
        interval = f"[{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}] {row['verdict']}" if row["ci95"] else "reference"
        if (row["alpha"], row["temperature"]) == textbook_cell:
            interval = "reference (the textbook recipe)"
        print(f"| {row['alpha']:g} | {row['temperature']:g} | {row['val_mean_std'][0]:.4f} ± "
              f"{row['val_mean_std'][1]:.4f} | {row['test_mean_std'][0]:.4f} ± {row['test_mean_std'][1]:.4f} | "
              f"{row['gain']:+.2f} {interval} |")
    print(f"\none test image = {resolution:.3f} points; {len(tasks.seeds)} paired seeds; "
          f"{time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"arch": arch_text(arch_of(winner)), "seeds": tasks.seeds,
                                        "resolution_points": resolution, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
