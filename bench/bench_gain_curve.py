"""Benchmark: a finished run's gain curve again, with other KD terms and more seeds (issue 18).

    .venv/bin/python bench/bench_gain_curve.py --run-dir /tmp/m21/c1 -- --dataset mnist \\
        --data-dir ../shared/data/mnist-10k --seed 1 --results-dir /tmp/m21 --run-name c1 --final-seeds 10

The final stage measures the KD gain at 3 student sizes with the baseline's tuned optimisation recipe in
both arms and the winner's KD terms in the distilled one (``tuning.gain_curve.curve_recipes``). This script
reads a finished run's ``summary.json`` (the curve's architectures, the baseline's recipe, the winner's KD
terms), prepares data and teacher through ``tuning.prepare`` with the ``search.py`` flags after ``--`` (the
run's own, its ``--run-name`` included: the teacher comes from the cache and nothing is written to the run;
``--final-seeds`` sets the seeds), and trains, as the final stage does, at every size: the baseline arm, the
distilled arm with the winner's KD terms, the distilled arm with the textbook terms (alpha 0.9, T 4, no
feature loss), and the textbook arm's recipe (those terms with the dataset's default augmentation, where the
baseline searched its own without a teacher). It prints each arm's paired test gain over the baseline, and
whether the run's own seeds gave the run's own per-seed accuracies again (CPU training is deterministic: they
should)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402

import search  # noqa: E402
from runfolder import (  # noqa: E402
    GainVerdict,
    format_points,
    interval_words,
    mean_std,
    paired_gain,
    resolution_points,
)
from tuning import build_spec  # noqa: E402
from tuning.gain_curve import (  # noqa: E402
    TEXTBOOK_KD_TERMS,
    Arch,
    arch_of,
    arch_text,
    curve_recipes,
    textbook_recipe,
)
from tuning.prepare import prepare  # noqa: E402
from tuning.seed_runs import SeedTasks, seed_test_accuracy  # noqa: E402

# The distilled arms: the final stage's (the winner's KD terms on the baseline's recipe), the textbook KD terms on
# the same recipe, and the textbook arm's recipe (``tuning.gain_curve.textbook_recipe``: the textbook terms, the
# baseline's lr, weight decay and batch size, and the dataset's default augmentation instead of the baseline's).
ARMS = ("winner's terms", "textbook terms", "textbook recipe")


def arm_configs(summary: dict[str, Any], teacher_family: str | None) -> dict[Arch, dict[str, dict[str, Any]]]:
    """Per curve architecture: the ``baseline`` configuration and one distilled configuration per ``ARMS``."""
    # The baseline search's configuration: its recipe, trained without a teacher (``tuning.runner.search_baseline``).
    baseline_recipe = {**summary["gain_curve_recipe"]["recipe"], "alpha": 0.0}
    winner_terms = summary["gain_curve_recipe"]["kd_terms"]
    configs = {}
    for entry in summary["gain_curve"]:
        arch = arch_of(entry["arch_config"])
        winner, baseline = curve_recipes({**summary["best_config"], **winner_terms}, baseline_recipe, arch,
                                         teacher_family)
        textbook = curve_recipes({**summary["best_config"], **TEXTBOOK_KD_TERMS}, baseline_recipe, arch,
                                 teacher_family)[0]
        configs[arch] = {"baseline": baseline, ARMS[0]: winner, ARMS[1]: textbook,
                         ARMS[2]: textbook_recipe(textbook, baseline_recipe)}
    return configs


def reproduces(entry: dict[str, Any], seeds: list[int], baseline: list[float], winner_terms: list[float]) -> bool:
    """Whether the run's own seeds gave the run's own per-seed test accuracies again, in both arms."""
    own = [seeds.index(seed) for seed in entry["seeds"] if seed in seeds]
    return (len(own) == len(entry["seeds"])
            and [baseline[i] for i in own] == entry["baseline_test_accuracies"]
            and [winner_terms[i] for i in own] == entry["kd_test_accuracies"])


def gain_text(gain: GainVerdict) -> str:
    return f"{format_points(gain.gain)}, {interval_words(gain.ci95)[0]}: {gain.verdict}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run with a gain curve")
    parser.add_argument("--out", type=Path, help="write the per-seed accuracies and gains as JSON here")
    args = parser.parse_args(argv[:split])
    summary = json.loads((args.run_dir / "summary.json").read_text())
    if not summary.get("gain_curve"):
        parser.error(f"{args.run_dir} has no gain curve (an unfinished run, or --gain-curve 0)")
    spec = build_spec(**vars(search.parse_args(argv[split + 1:])))
    started = time.perf_counter()
    prepared = prepare(spec, log=print)
    data = prepared.data
    tasks = SeedTasks(spec, data, prepared.teacher, prepared.gpus_per_trial)
    configs = arm_configs(summary, prepared.teacher_family)
    print(f"gain curve again: {len(configs)} sizes x {1 + len(ARMS)} arms x seeds {tasks.seeds}; the winner's "
          f"KD terms {summary['gain_curve_recipe']['kd_terms']}")
    pending = {arch: {name: tasks.launch(config) for name, config in arms.items()} for arch, arms in configs.items()}
    rows = []
    for entry, (arch, arms) in zip(summary["gain_curve"], pending.items(), strict=True):
        tests = {name: [seed_test_accuracy(run, data) for run in ray.get(futures)] for name, futures in arms.items()}
        row = {"arch": arch_text(arch), "params": entry["params"], "seeds": tasks.seeds, "test": tests,
               "reproduces_run": reproduces(entry, tasks.seeds, tests["baseline"], tests[ARMS[0]])}
        row["gains"] = {name: paired_gain(tests[name], tests["baseline"]) for name in ARMS}
        rows.append(row)
    ray.shutdown()
    print(f"\n| size | baseline test | {' | '.join(f'gain, {name} (points, 95 % CI)' for name in ARMS)} "
          f"| the run's seeds reproduced |\n|---|---|{'---|' * len(ARMS)}---|")
    for row in rows:
        baseline_mean = mean_std(row["test"]["baseline"])[0]
        gains = " | ".join(gain_text(row["gains"][name]) for name in ARMS)
        print(f"| {row['arch']}, {row['params']:,} | {baseline_mean:.4f} | {gains} | "
              f"{'yes' if row['reproduces_run'] else 'no'} |")
    print(f"\none test image = {resolution_points(len(data.test_y)):.3f} points; {len(tasks.seeds)} paired seeds; "
          f"{time.perf_counter() - started:.0f} s")
    if args.out:
        for row in rows:
            row["gains"] = {name: {"gain": gain.gain, "ci95": gain.interval(), "verdict": gain.verdict}
                            for name, gain in row["gains"].items()}
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
