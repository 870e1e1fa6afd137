"""Benchmark of the distillation loop on digits, on one CPU thread (a benchmark, not a test).

    .venv/bin/python bench/bench_trainers.py [--rounds 5] [--epochs 15] [--online-epochs 4]

Measures, side by side in one run:

(a) the wall time of one KD trial (cnn depth 1 width 16, batch 64, alpha 0.5, cached teacher outputs);
(b) a KD epoch with cached teacher outputs over a student-alone epoch (alpha 0): reading cached logits
    and the KL term should cost next to nothing;
(c) with an online teacher on every step (an augmented view of digits, a Teacher without cached outputs):
    a KD epoch over (a student-alone epoch on the same augmented data + the teacher's forward passes for
    one epoch, timed on their own): the loop should add nothing beyond the teacher forward.

The sides are interleaved (each round rotates their order) so machine noise hits all of them; medians are
reported. An epoch is timed between two ``on_epoch`` calls (its training steps plus the validation pass),
the first epoch of each run excluded (warm-up). Every time is taken twice: wall clock (what the targets
are about) and this process's CPU time, which a busy machine disturbs much less (other processes take
the core away, which stops the process's CPU clock but not the wall clock). The teacher is
``get_teacher("resnet-large", ...)``, trained once and cached under ``results/teachers``. Prints a table
and pass/fail against the targets; always exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainers import DistillConfig, EpochReport, Teacher, TensorSplits, distill, get_teacher, load_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
TEACHER = "resnet-large"
TRIAL_TARGET_S = (1.0, 2.0)
CACHED_RATIO_TARGET = 1.1
ONLINE_RATIO_TARGET = 1.1


@dataclass
class Samples:
    """Wall-clock and CPU seconds of repeated measurements of one thing."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


class Clock:
    """Both clocks at once."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def since(self, earlier: Clock) -> tuple[float, float]:
        return self.wall - earlier.wall, self.cpu - earlier.cpu


def kd_config(epochs: int) -> DistillConfig:
    """The benchmarked trial: a small CNN student distilled with alpha 0.5."""
    return DistillConfig(family="cnn", depth=1, width=16, batch_size=64, alpha=0.5, temperature=4.0, epochs=epochs)


def run_timed(config: DistillConfig, data: TensorSplits, teacher: Teacher | None, trials: Samples | None,
              epochs: Samples) -> None:
    """Run ``distill``, adding its whole time to ``trials`` and each epoch after the first to ``epochs``."""
    marks = [Clock()]

    def mark(report: EpochReport, _: object) -> None:
        marks.append(Clock())

    distill(config, data, teacher, on_epoch=mark)
    if trials is not None:
        trials.add(*marks[-1].since(marks[0]))
    for earlier, later in zip(marks[1:], marks[2:], strict=False):
        epochs.add(*later.since(earlier))


def time_teacher_forwards(teacher: Teacher, data: TensorSplits, batch_size: int, epochs: int,
                          samples: Samples) -> None:
    """The teacher forwards an online KD epoch needs (one per batch, through ``signal`` as the loop calls it)."""
    images = data.train_x
    for _ in range(epochs):
        started = Clock()
        for start in range(0, len(images), batch_size):
            teacher.signal(images[start:start + batch_size], None, "none")
        samples.add(*Clock().since(started))


def alternate(round_index: int, sides: list[Callable[[], None]]) -> None:
    """Run every side once, rotating the order from round to round."""
    shift = round_index % len(sides)
    for side in sides[shift:] + sides[:shift]:
        side()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions of each side")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the cached-teacher trials")
    parser.add_argument("--online-epochs", type=int, default=4, help="epochs of the online-teacher runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]

    data = load_dataset("digits")
    teacher_result = get_teacher(TEACHER, data, REPO_ROOT / "results" / "teachers",
                                 log=lambda line: None if ": epoch " in line else print(line))
    started = time.perf_counter()
    cached_teacher = Teacher.with_cached_outputs(teacher_result.model, TEACHER, data.train_x)
    cache_seconds = time.perf_counter() - started
    online_teacher = Teacher(teacher_result.model, TEACHER)  # no outputs: every KD step runs the model
    augmented = dataclasses.replace(data, info=dataclasses.replace(data.info, crop_padding=1))

    kd = kd_config(args.epochs)
    alone = kd.without_teacher()
    kd_online = kd_config(args.online_epochs)
    alone_online = kd_online.without_teacher()
    for config in (kd, alone):  # warm-up: allocator, oneDNN primitives, first-call overheads
        distill(dataclasses.replace(config, epochs=2), data, cached_teacher)

    kd_trials, alone_trials = Samples(), Samples()
    kd_epochs, alone_epochs = Samples(), Samples()
    online_epochs, alone_aug_epochs, forward_epochs = Samples(), Samples(), Samples()
    sides_cached = [
        lambda: run_timed(kd, data, cached_teacher, kd_trials, kd_epochs),
        lambda: run_timed(alone, data, None, alone_trials, alone_epochs),
    ]
    sides_online = [
        lambda: run_timed(kd_online, augmented, online_teacher, None, online_epochs),
        lambda: run_timed(alone_online, augmented, None, None, alone_aug_epochs),
        lambda: time_teacher_forwards(online_teacher, augmented, kd_online.batch_size, args.online_epochs - 1,
                                      forward_epochs),
    ]
    for round_index in range(args.rounds):
        alternate(round_index, sides_cached)
        alternate(round_index, sides_online)

    trial = kd_trials.median_wall
    cached_ratio = kd_epochs.median_wall / alone_epochs.median_wall
    cached_ratio_cpu = kd_epochs.median_cpu / alone_epochs.median_cpu
    online_ratio = online_epochs.median_wall / (alone_aug_epochs.median_wall + forward_epochs.median_wall)
    online_ratio_cpu = online_epochs.median_cpu / (alone_aug_epochs.median_cpu + forward_epochs.median_cpu)
    steps = math.ceil(len(data.train_y) / kd.batch_size)

    print()
    print(f"trainers benchmark: digits ({len(data.train_y)} train images, {steps} steps/epoch), torch "
          f"{torch.__version__}, 1 thread, {platform.machine()}, {args.rounds} interleaved rounds, medians")
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores")
    print(f"teacher {TEACHER}: {teacher_result.source} ({teacher_result.seconds:.1f} s), val accuracy "
          f"{teacher_result.val_accuracy:.4f}; caching its outputs on the train split: {cache_seconds:.3f} s")
    print()

    def seconds(samples: Samples, unit: str = "ms") -> tuple[str, str]:
        scale = 1000 if unit == "ms" else 1
        return f"{scale * samples.median_wall:.1f} {unit}", f"{scale * samples.median_cpu:.1f} {unit}"

    rows = [
        (f"(a) KD trial, cached teacher, {args.epochs} epochs", f"{trial:.3f} s", f"{kd_trials.median_cpu:.3f} s",
         f"{TRIAL_TARGET_S[0]:g}-{TRIAL_TARGET_S[1]:g} s", verdict(trial <= TRIAL_TARGET_S[1])),
        (f"    student-alone trial, {args.epochs} epochs", *seconds(alone_trials, "s"), "", ""),
        ("    KD epoch, cached teacher", *seconds(kd_epochs), "", ""),
        ("    student-alone epoch", *seconds(alone_epochs), "", ""),
        ("(b) KD epoch (cached) / student-alone epoch", f"{cached_ratio:.3f}", f"{cached_ratio_cpu:.3f}",
         f"<= {CACHED_RATIO_TARGET}", verdict(cached_ratio <= CACHED_RATIO_TARGET)),
        ("    KD epoch, online teacher (augmented)", *seconds(online_epochs), "", ""),
        ("    student-alone epoch (augmented)", *seconds(alone_aug_epochs), "", ""),
        ("    teacher forwards, one epoch", *seconds(forward_epochs), "", ""),
        ("(c) KD epoch (online) / (student-alone + teacher fwd)", f"{online_ratio:.3f}", f"{online_ratio_cpu:.3f}",
         f"<= {ONLINE_RATIO_TARGET}", verdict(online_ratio <= ONLINE_RATIO_TARGET)),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"{'measurement':{width}s}  {'wall':>10s}  {'cpu':>10s}  {'target':>8s}  (verdict on wall)")
    for name, wall, cpu, target, result in rows:
        print(f"{name:{width}s}  {wall:>10s}  {cpu:>10s}  {target:>8s}  {result}")


if __name__ == "__main__":
    main()
