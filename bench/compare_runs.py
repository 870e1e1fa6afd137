"""Two finished runs' students, paired by seed: did the second route give a better student than the first?

    .venv/bin/python bench/compare_runs.py /tmp/m21/n0 /tmp/m21/ta0-student

For a teacher-assistant step (issue 18): the first run distils the student straight from the teacher; the
second distils it from that teacher's mid-size student (``--teacher-checkpoint <assistant run>/best/model.pt2``,
as the run's ``teacher_assistant`` hint says). Both runs' final stages trained their students with the same
seeds on the same splits, so each shared seed gives one paired difference of test accuracy, as the final
stage's own ``kd_gain`` does: the gain (second minus first, in points), its 95 % interval and verdict.

Refuses runs whose test splits differ (dataset, sizes or class counts) or that share no seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reports.text import format_points  # noqa: E402
from runfolder import SUMMARY_FILE, mean_std, paired_gain, read_json, resolution_points  # noqa: E402

SPLIT_KEYS = ("name", "train", "val", "test", "class_counts")


def compare(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The paired test gain of ``second``'s student over ``first``'s (two ``summary.json`` contents).

    Raises ``ValueError`` when the runs were not tested on the same split or share no final seed.
    """
    differing = [key for key in SPLIT_KEYS if first["dataset"].get(key) != second["dataset"].get(key)]
    if differing:
        raise ValueError(f"the runs were not tested on the same split: their dataset {', '.join(differing)} differ")
    accuracies = [dict(zip(run["student"]["seeds"], run["student"]["test_accuracies"], strict=True))
                  for run in (first, second)]
    seeds = [seed for seed in accuracies[0] if seed in accuracies[1]]
    if not seeds:
        raise ValueError("the runs share no final seed: nothing to pair")
    gain = paired_gain([accuracies[1][seed] for seed in seeds], [accuracies[0][seed] for seed in seeds])
    return {"seeds": seeds, "gain": gain, "resolution_points": resolution_points(first["dataset"]["test"]),
            "students": [_student(run, [by_seed[seed] for seed in seeds]) for run, by_seed in
                         zip((first, second), accuracies, strict=True)]}


def _student(run: dict[str, Any], accuracies: list[float]) -> dict[str, Any]:
    mean, std = mean_std(accuracies)
    teacher = run.get("teacher") or {}
    return {"run": run.get("run"), "arch": run["student"]["arch"], "params": run["student"]["params"],
            "teacher": f"{teacher.get('arch', '?')} ({teacher.get('params', 0):,} parameters, test "
                       f"{teacher.get('test_accuracy', float('nan')):.4f})",
            "test_mean": mean, "test_std": std, "test_accuracies": accuracies}


def format_comparison(result: dict[str, Any]) -> list[str]:
    """The comparison as console lines."""
    lines = []
    for label, student in zip(("first", "second"), result["students"], strict=True):
        lines.append(f"{label}: run '{student['run']}', {student['arch']} ({student['params']:,} parameters), "
                     f"taught by {student['teacher']}: test {student['test_mean']:.4f} ± {student['test_std']:.4f}"
                     f" ({', '.join(f'{a:.4f}' for a in student['test_accuracies'])})")
    gain = result["gain"]
    interval = (f"[{format_points(gain.ci95[0])}, {format_points(gain.ci95[1])}]" if gain.ci95 is not None
                else "(no interval: one seed)")
    lines.append(f"second minus first, paired over seeds {result['seeds']}: {format_points(gain.gain)} points "
                 f"{interval}: {gain.verdict} (one test image = {result['resolution_points']:.2f} points)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="a finished run folder (its summary.json is read)")
    parser.add_argument("second", type=Path, help="another finished run folder, on the same data")
    args = parser.parse_args(argv)
    runs = [read_json(folder / SUMMARY_FILE) for folder in (args.first, args.second)]
    unfinished = [str(folder) for folder, run in zip((args.first, args.second), runs, strict=True) if run is None]
    try:
        if unfinished:
            raise ValueError(f"no {SUMMARY_FILE} in {', '.join(unfinished)}: give finished run folders")
        result = compare(*runs)
    except (ValueError, KeyError) as error:
        print(f"compare_runs: {error}", file=sys.stderr)
        return 2
    print("\n".join(format_comparison(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
