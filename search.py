"""kdsearch: find the best small student for a teacher, and the best way to distill it.

    python search.py --budget 50

Parses flags, validates them into a frozen ``SearchSpec``, and calls ``tuning.run``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 3
EXIT_FAILED = 1  # every trial failed: nothing to report on
EXIT_DISK_FULL = 1  # the results disk filled up: the run folder is whole, and the same command resumes it


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line (no usage block), with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every flag has a one-line help."""
    parser = _Parser(
        prog="search.py",
        description="Ray Tune schedules Optuna-sampled knowledge-distillation trials; the best student is "
                    "re-checked over seeds, finetuned, compared with the teacher and a no-teacher baseline, "
                    "exported and reported.")
    add = parser.add_argument
    add("--budget", type=int, help="number of trials that end (finished, stopped early or failed); default 50")
    add("--dataset", help="digits (default, offline), mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn, "
                          "imagefolder (class sub-folders, or train/ val/ test/ folders of them) or csv (a manifest)")
    add("--data-dir", help="folder holding the dataset files, the image folder, or the csv manifest FILE.csv "
                           "(columns path,label[,split]; paths relative to it)")
    add("--teacher-cache-gb", type=float, help="disk the teacher's logits on every augmented view may take, as fp16 "
                                               "under --cache-dir (default: half the free space; 0 runs the "
                                               "teacher online on augmented views)")
    add("--cache-dir", help="where datasets are decoded once into uint8 memory maps that later runs and every "
                            "trial open (default RESULTS_DIR/cache; on a cluster: shared storage)")
    add("--download", action="store_true", default=None, help="download a torchvision dataset into --data-dir")
    add("--teacher", help="a kdsearch teacher to train once and cache (default cnn-large on digits, the MNIST "
                          "family and image folders, resnet-large on CIFAR and SVHN), or your own: torchvision:NAME, "
                          "timm:NAME (with --teacher-weights), my_package.my_module:build_model or "
                          "path/to/file.py:build_model")
    add("--teacher-weights", help="the state_dict of a torchvision, timm or factory --teacher: a .pt/.pth file "
                                  "(read with weights_only) or .safetensors")
    add("--teacher-checkpoint", help="your own trained teacher in one file, its format read from its bytes: "
                                     "kdsearch's {'arch': NAME, 'state_dict': ...}, TorchScript, torch.export (.pt2) "
                                     "or a pickled module (with --trust-checkpoint)")
    add("--trust-checkpoint", action="store_true", default=None,
        help="allow a --teacher-checkpoint made by torch.save(model), whose loading runs code from the file")
    add("--teacher-input-size", type=int, help="resize images to S x S for the teacher (default: the data's size, "
                                               "or an exported program's own)")
    add("--teacher-mean", help="the teacher's per-channel mean of [0, 1] pixels, e.g. 0.485,0.456,0.406 (with "
                               "--teacher-std; default: the dataset's normalisation)")
    add("--teacher-std", help="the teacher's per-channel std, e.g. 0.229,0.224,0.225 (with --teacher-mean)")
    add("--teacher-preprocessing", help="dataset (default: the data's own view) or library (the input size, mean "
                                        "and std that the torchvision or timm weights entry declares)")
    add("--teacher-features", help="layers of your teacher whose outputs the feature losses read, shallow to deep, "
                                   "e.g. layer2,layer3 (default: none, and the search leaves feature losses out)")
    add("--teacher-epochs", type=int, help="epochs to train --teacher when it is not cached yet (default 60; the "
                                           "best validation epoch is kept, so it stops at a perfect one)")
    add("--epochs", type=int, help="maximum epochs per trial and for the final re-training (default 15)")
    add("--run-name", help="name of the run folder; rerunning with the same name resumes it (default: dated)")
    add("--results-dir", help="where run folders and the teacher cache go (default results)")
    add("--seed", type=int, help="seed for splits, sampling and training (default 0)")
    add("--sampler", help="Optuna sampler: tpe (default), random, cmaes or nsga2")
    add("--scheduler", help="asha (default: stop weak trials early on the epoch) or none")
    add("--objective", help="accuracy (default) or pareto (accuracy vs student size: latency with --max-latency-ms, "
                            "FLOPs with --max-flops, else parameters)")
    add("--families", help="student families to search, separated by commas: cnn, resnet, mobilenet (the default "
                            "three), mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, shufflenet_v2, "
                            "resnet_basic, efficientnet_b0 (torchvision's), or all")
    add("--space", dest="space_file", help="YAML or JSON file narrowing, widening or fixing search parameters")
    add("--cpus-per-trial", type=float, help="CPUs reserved per trial (default 1)")
    add("--gpus-per-trial", type=float, help="GPUs per trial, fractions share a GPU (default 0.25 with GPUs, else 0)")
    add("--max-concurrent", type=int, help="at most this many trials at once (default: as resources allow)")
    add("--address", help="connect to an existing Ray cluster: auto or HOST:PORT (default: start Ray here)")
    add("--allow-insecure-cluster", action="store_true", default=None,
        help="join an --address cluster that does not authenticate (anyone who reaches it can run code on it): "
             "only on a network only trusted machines can reach")
    add("--storage-path", help="shared folder for the Ray Tune experiment (cluster runs); default the run folder")
    add("--time-budget", type=float, help="stop starting trials after this many seconds of search")
    add("--smoke", action="store_true", default=None, help="a tiny run (4 short trials) to check a setup")
    add("--top-k", type=int, help="configurations re-trained over seeds in the final stage, the best of each "
                              "architecture (default 3, 0 skips it)")
    add("--final-seeds", type=int, help="seeds for the final re-training and the baseline (default 5)")
    add("--max-params", help="largest student allowed: a parameter count (50000), a percentage of the teacher, or "
                             "none (default 2%%, unless --max-flops or --max-latency-ms is given)")
    add("--max-flops", help="most FLOPs of one forward pass at the data's input size, as torch counts them (a "
                            "multiply-add is 2): 20000000, 2e7, 20M or 1.5G")
    add("--max-latency-ms", type=float, help="slowest student allowed, in ms at batch 1 on one thread of this "
                                             "machine with onnxruntime (the exported model.onnx's runtime)")
    add("--augment", help="training augmentation: auto (default: the dataset's recipe), none, crop or crop+flip")
    add("--image-size", type=int, help="resize imagefolder or csv images to this square size (default: their own "
                                       "size)")
    add("--baseline-budget", type=int, help="trials of the no-teacher baseline's own recipe search "
                                            "(default max(8, budget / 5); 0: no search, the baseline trains on "
                                            "the winner's lr, weight decay, batch size and augmentation)")
    add("--recipe-budget", type=int, help="trials of the recipe phase: the KD recipe searched again on the "
                                          "architecture the final stage's re-check chose (default max(4, budget / 4 "
                                          "rounded up), 0 skips it)")
    add("--gain-curve", type=int, help="student sizes on which the final stage measures the KD gain (default 3, "
                                       "0 skips it)")
    add("--rounds", help="rounds of distillation, round k+1 a fresh student taught by the teacher and round k's "
                          "student: auto (default: another round while the last one helped, at most 3) or N (exactly "
                          "N; 1: none extra)")
    add("--finetune-epochs", type=int, help="epochs of low-lr finetuning of the winner (default 5, 0 to skip)")
    add("--max-failures", type=int, help="retries of a trial, or of a final-stage task, after a transient failure "
                                         "such as a lost node (default 2)")
    add("--max-train-samples", type=int, help="use a stratified subset of the training split (quick runs)")
    return parser.parse_args(argv)


# Below this many test images one image is worth 0.1 points or more: coarse against the gains distillation
# usually gives (a few tenths of a point to about one point), so the console says so once.
MIN_TEST_IMAGES = 1000


def final_table(summary: dict[str, Any]) -> str:
    """Teacher / baseline / textbook / student accuracy and size, and what distillation and the search bought."""
    rows = [("model", "test accuracy", "params")]
    teacher, student = summary.get("teacher") or {}, summary.get("student")
    if "test_accuracy" in teacher:
        rows.append(("teacher " + str(teacher["arch"]), f"{teacher['test_accuracy']:.4f}", f"{teacher['params']:,}"))
    for label, entry in (("baseline (no teacher)", summary.get("baseline")),
                         ("textbook KD recipe", summary.get("textbook")), ("distilled student", student)):
        if entry:
            params = f"{(entry.get('params') or student['params']):,}"
            rows.append((label, f"{entry['test_accuracy_mean']:.4f} ± {entry['test_accuracy_std']:.4f}", params))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    if summary.get("kd_gain") is not None:
        lines.append(gain_line(summary))
    if summary.get("search_gain") is not None:
        lines.append(gain_line(summary, "search"))
    recipe = summary.get("recipe_search")
    if recipe and recipe.get("best_val_accuracy") is not None:
        main = recipe["main_best_val_accuracy"]
        against = f" against {main:.4f} in the main search" if main is not None else ""
        lines.append(f"recipe search: {recipe['trials']} trials of {recipe['arch']}, best val "
                     f"{recipe['best_val_accuracy']:.4f}{against} ({'chosen' if recipe['chosen'] else 'not chosen'} "
                     "when re-checked over the seeds)")
    bound = size_line(summary)
    if bound:
        lines.append(bound)
    caveat = resolution_caveat(summary)
    if caveat:
        lines.append(caveat)
    lines += rounds_lines(summary)
    return "\n".join(lines)


def rounds_lines(summary: dict[str, Any]) -> list[str]:
    """One line per repeated round (its gain over the round before, interval and verdict), why the rounds
    stopped and which one is exported; and the teacher-assistant hint when the run gives one."""
    from tuning.rounds import round_line  # here: --help must not wait for torch and Ray

    rounds = summary.get("rounds") or []
    lines = [round_line(entry, summary.get("test_resolution_points")) for entry in rounds[1:]]
    if lines:
        lines.append(f"rounds: stopped ({summary['rounds_stop']}); exported round {summary['rounds_best']} "
                     "(best by validation)")
    if summary.get("teacher_assistant"):
        lines.append(f"teacher assistant: {summary['teacher_assistant']['how']}")
    return lines


def size_line(summary: dict[str, Any]) -> str | None:
    """The distilled student against a FLOPs or latency bound (measured as the bound measures), or ``None``."""
    bound, student = summary.get("size_bound") or {}, summary.get("student") or {}
    parts = []
    if bound.get("max_flops") is not None and student.get("flops") is not None:
        parts.append(f"{student['flops']:,} FLOPs (bound {bound['max_flops']:,})")
    if bound.get("max_latency_ms") is not None and student.get("onnx_latency_ms") is not None:
        within = "within" if student["onnx_latency_ms"] <= bound["max_latency_ms"] else "over, as re-measured now"
        parts.append(f"{student['onnx_latency_ms']:.3g} ms with onnxruntime at batch 1 on one thread (bound "
                     f"{bound['max_latency_ms']:g} ms: {within})")
    return "student size: " + "; ".join(parts) if parts else None


def gain_line(summary: dict[str, Any], prefix: str = "kd") -> str:
    """One verdict on one line: the paired gain (``kd`` or ``search``), its 95 % interval, the test set's
    resolution and the smallest gain these seeds could detect (the interval's half width)."""
    from runfolder import format_points, interval_words  # here: --help imports nothing of the project

    gain, interval = summary[f"{prefix}_gain"], summary.get(f"{prefix}_gain_ci95")
    seeds = summary["student"]["seeds"]
    if prefix == "search" and (summary.get("textbook") or {}).get("same_as_winner"):
        return ("search_gain (searched minus textbook recipe): 0 by construction: the winner is the textbook recipe "
                "on the baseline's settings, so the search found nothing better than it")
    spread, detectable = interval_words(interval)
    resolution = "; ".join(filter(None, (f"one test image = {summary['test_resolution_points']:.2f} points",
                                         detectable)))
    what = "kd_gain" if prefix == "kd" else "search_gain (searched minus textbook recipe)"
    return (f"{what}: {format_points(gain)} points, {spread} over {len(seeds)} paired seeds: "
            f"{summary[f'{prefix}_verdict']} ({resolution})")


def resolution_caveat(summary: dict[str, Any]) -> str | None:
    """The one line saying the test split is too small for the gains at stake, and which flag adds seeds."""
    test_images = (summary.get("dataset") or {}).get("test")
    if summary.get("kd_gain") is None or not test_images or test_images >= MIN_TEST_IMAGES:
        return None
    seeds = len(summary["student"]["seeds"])
    return (f"note: {test_images:,} test images (one = {100 / test_images:.2f} points) are too few to resolve the "
            f"0.1-1 point gains distillation usually gives; more paired seeds narrow the intervals: "
            f"--final-seeds {2 * seeds} (now {seeds})")


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status: 0, 1 (every trial failed, or the results disk is full), 2 (bad
    input) or 3 (stopped by a signal)."""
    args = parse_args(argv)
    if args.run_name is not None:
        # Refuse a second driver of a running run at once, before seconds of importing torch and Ray;
        # tuning.run takes the lock itself for the whole run.
        from runfolder import RunLocked, check_not_running

        try:
            check_not_running(args.results_dir or "results", args.run_name)
        except RunLocked as error:
            print(f"search.py: error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    # Imported here so that --help answers at once, without loading torch and ray.
    from tuning import ResultsDiskFull, SearchFailed, SearchInterrupted, UserError, build_spec, run

    try:
        spec = build_spec(**vars(args))
        outcome = run(spec)
    except UserError as error:
        print(f"search.py: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SearchInterrupted as error:
        print(f"search.py: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SearchFailed as error:
        print(f"search.py: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ResultsDiskFull as error:
        print(error, file=sys.stderr)
        return EXIT_DISK_FULL
    trials = outcome.summary["trials"]
    print(f"\nrun '{spec.run_name}': {trials['completed']} completed, {trials['stopped_early']} stopped early, "
          f"{trials['failed']} failed")
    print(final_table(outcome.summary))
    print(f"results: {outcome.run_dir}")
    if outcome.report is not None:
        print(f"report: {outcome.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
