"""Benchmark of the distillation loop on digits, on one CPU thread (a benchmark, not a test).

    .venv/bin/python bench/bench_trainers.py [--rounds 5] [--epochs 15] [--online-epochs 5]

Measures, side by side in one run:

(a) the wall time of one KD trial (cnn depth 1 width 16, batch 64, alpha 0.5, cached teacher outputs);
(b) a KD epoch with cached teacher outputs over a student-alone epoch (alpha 0): reading cached logits
    and the KL term should cost next to nothing;
(c) with an online teacher on every step (an augmented view of digits, a Teacher without cached outputs):
    a KD epoch over (a student-alone epoch on the same augmented data + the teacher's forward passes for
    one epoch, timed on their own): the loop should add nothing beyond the teacher forward.
(d) on the same augmented data, a KD epoch reading the teacher's per-view cache (``Teacher.with_cached_outputs``
    with ``views_of``: logits of every crop view of every image, computed once) over the student-alone epoch
    (target <= 1.1, issue 10 target 3), and the online KD epoch over it (what the cache saves).

Interleaving: the runs compared with each other are started together, each in its own thread, and take
turns epoch by epoch (A1 B1 A2 B2 ...; only one computes at any time, the others wait in ``on_epoch``), so
noise from the rest of the machine hits both sides of a ratio within a fraction of a second. Each round
rotates which side goes first. An epoch's time runs from the moment its thread gets its turn to its
``on_epoch`` call (training steps plus the validation pass); the first epoch of each run (warm-up, model
construction) is left out of the ratios. Each ratio is the median over all (round, epoch) pairs; times are
medians. Every time is taken on two clocks: wall (what the targets are about) and the thread's CPU time,
which does not count time the scheduler gives to other processes.

The teacher is ``get_teacher("resnet-large", ...)``, trained once and cached under ``results/teachers``.
Prints a table and pass/fail against the targets; always exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import DistillConfig, Teacher, TensorSplits, distill, get_teacher, load_dataset  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TEACHER = "resnet-large"
TRIAL_TARGET_S = (1.0, 2.0)
CACHED_RATIO_TARGET = 1.1
PER_VIEW_RATIO_TARGET = 1.1
ONLINE_RATIO_TARGET = 1.1

# A job runs its epochs and calls the given function after each one.
Job = Callable[[Callable[[], None]], None]
Segment = tuple[float, float]  # (wall seconds, CPU seconds)


class Clock:
    """The wall clock and the calling thread's CPU clock, read together."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.thread_time()

    def since(self, earlier: Clock) -> Segment:
        return self.wall - earlier.wall, self.cpu - earlier.cpu


def run_in_lockstep(jobs: list[Job], first: int) -> list[list[Segment]]:
    """Run ``jobs`` in threads taking turns epoch by epoch, starting with ``jobs[first]``.

    Returns, per job, the time of each of its turns (turn ``i`` ends with epoch ``i + 1``).
    """
    condition = threading.Condition()
    turn = [first % len(jobs)]
    finished = [False] * len(jobs)
    segments: list[list[Segment]] = [[] for _ in jobs]
    errors: list[BaseException] = []

    def pass_turn(index: int) -> None:  # with the condition held
        for offset in range(1, len(jobs) + 1):
            candidate = (index + offset) % len(jobs)
            if not finished[candidate]:
                turn[0] = candidate
                break
        condition.notify_all()

    def worker(index: int) -> None:
        torch.set_num_threads(1)  # the intra-op setting is per thread under OpenMP
        with condition:
            condition.wait_for(lambda: turn[0] == index)
        resumed = [Clock()]

        def epoch_done() -> None:
            segments[index].append(Clock().since(resumed[0]))
            with condition:
                pass_turn(index)
                condition.wait_for(lambda: turn[0] == index)
            resumed[0] = Clock()

        try:
            jobs[index](epoch_done)
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            with condition:
                finished[index] = True
                pass_turn(index)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return segments


def distill_job(config: DistillConfig, data: TensorSplits, teacher: Teacher | None) -> Job:
    """One ``distill`` run as a lockstep job."""
    return lambda epoch_done: distill(config, data, teacher, on_epoch=lambda report, get_state: epoch_done())


def teacher_forwards_job(teacher: Teacher, data: TensorSplits, batch_size: int, epochs: int) -> Job:
    """The teacher forwards online KD needs, epoch by epoch (one per batch, through ``signal`` like the loop)."""

    def run(epoch_done: Callable[[], None]) -> None:
        images = data.train_x
        for _ in range(epochs):
            for start in range(0, len(images), batch_size):
                teacher.signal(images[start:start + batch_size], None, "none")
            epoch_done()

    return run


def kd_config(epochs: int) -> DistillConfig:
    """The benchmarked trial: a small CNN student distilled with alpha 0.5."""
    return DistillConfig(family="cnn", depth=1, width=16, batch_size=64, alpha=0.5, temperature=4.0, epochs=epochs)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def median_of(segments: list[list[Segment]], clock: int) -> float:
    """Median over rounds and epochs (first epoch of each run left out) of one clock."""
    return statistics.median(segment[clock] for run in segments for segment in run[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions of each comparison")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the cached-teacher trials")
    parser.add_argument("--online-epochs", type=int, default=5, help="epochs of the online-teacher runs")
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
    augmented = dataclasses.replace(data, info=dataclasses.replace(data.info, crop_padding=1, student_augment=True))
    started = time.perf_counter()
    per_view_teacher = Teacher.with_cached_outputs(teacher_result.model, TEACHER, data.train_x,
                                                   views_of=augmented.info, background=data.background)
    per_view_seconds = time.perf_counter() - started
    per_view = per_view_teacher.outputs.per_view if per_view_teacher.outputs is not None else None
    if per_view is None:
        raise SystemExit("the per-view cache was not built (outside its bounds): (d) cannot be measured")

    kd, kd_online = kd_config(args.epochs), kd_config(args.online_epochs)
    cached_jobs = [distill_job(kd, data, cached_teacher), distill_job(kd.without_teacher(), data, None)]
    online_jobs = [
        distill_job(kd_online, augmented, online_teacher),
        distill_job(kd_online.without_teacher(), augmented, None),
        teacher_forwards_job(online_teacher, augmented, kd_online.batch_size, args.online_epochs),
        distill_job(kd_online, augmented, per_view_teacher),
    ]
    run_in_lockstep([distill_job(dataclasses.replace(kd, epochs=2), data, cached_teacher)], 0)  # warm-up

    kd_runs: list[list[Segment]] = []
    alone_runs: list[list[Segment]] = []
    online_runs: list[list[Segment]] = []
    alone_aug_runs: list[list[Segment]] = []
    forward_runs: list[list[Segment]] = []
    per_view_runs: list[list[Segment]] = []
    for round_index in range(args.rounds):
        kd_run, alone_run = run_in_lockstep(cached_jobs, round_index)
        kd_runs.append(kd_run)
        alone_runs.append(alone_run)
        online_run, alone_aug_run, forward_run, per_view_run = run_in_lockstep(online_jobs, round_index)
        per_view_runs.append(per_view_run)
        online_runs.append(online_run)
        alone_aug_runs.append(alone_aug_run)
        forward_runs.append(forward_run)

    def ratios(numerators: list[list[Segment]], parts: list[list[list[Segment]]], clock: int) -> float:
        values = [numerators[r][e][clock] / sum(part[r][e][clock] for part in parts)
                  for r in range(args.rounds) for e in range(1, len(numerators[r]))]
        return statistics.median(values)

    trials = [sum(wall for wall, _ in run) for run in kd_runs]
    trials_cpu = [sum(cpu for _, cpu in run) for run in kd_runs]
    alone_trials = [sum(wall for wall, _ in run) for run in alone_runs]
    alone_trials_cpu = [sum(cpu for _, cpu in run) for run in alone_runs]
    trial = statistics.median(trials)
    cached_ratio = {clock: ratios(kd_runs, [alone_runs], clock) for clock in (0, 1)}
    online_ratio = {clock: ratios(online_runs, [alone_aug_runs, forward_runs], clock) for clock in (0, 1)}
    per_view_ratio = {clock: ratios(per_view_runs, [alone_aug_runs], clock) for clock in (0, 1)}
    online_over_view = {clock: ratios(online_runs, [per_view_runs], clock) for clock in (0, 1)}
    steps = math.ceil(len(data.train_y) / kd.batch_size)

    print()
    print(f"trainers benchmark: digits ({len(data.train_y)} train images, {steps} steps/epoch), torch "
          f"{torch.__version__}, 1 thread, {platform.machine()}, {args.rounds} rounds, epoch-by-epoch interleaving")
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores")
    print(f"teacher {TEACHER}: {teacher_result.source} ({teacher_result.seconds:.1f} s), val accuracy "
          f"{teacher_result.val_accuracy:.4f}; caching its outputs on the train split: {cache_seconds:.3f} s")
    print(f"per-view cache ({tuple(per_view.logits.shape)} logits: views x images x classes, "
          f"{per_view.logits.dtype}): built in {per_view_seconds:.3f} s")
    print()

    def epoch_ms(runs: list[list[Segment]]) -> tuple[str, str]:
        return f"{1000 * median_of(runs, 0):.1f} ms", f"{1000 * median_of(runs, 1):.1f} ms"

    rows = [
        (f"(a) KD trial, cached teacher, {args.epochs} epochs", f"{trial:.3f} s",
         f"{statistics.median(trials_cpu):.3f} s", f"{TRIAL_TARGET_S[0]:g}-{TRIAL_TARGET_S[1]:g} s",
         verdict(trial <= TRIAL_TARGET_S[1])),
        (f"    student-alone trial, {args.epochs} epochs", f"{statistics.median(alone_trials):.3f} s",
         f"{statistics.median(alone_trials_cpu):.3f} s", "", ""),
        ("    KD epoch, cached teacher", *epoch_ms(kd_runs), "", ""),
        ("    student-alone epoch", *epoch_ms(alone_runs), "", ""),
        ("(b) KD epoch (cached) / student-alone epoch", f"{cached_ratio[0]:.3f}", f"{cached_ratio[1]:.3f}",
         f"<= {CACHED_RATIO_TARGET}", verdict(cached_ratio[0] <= CACHED_RATIO_TARGET)),
        ("    KD epoch, online teacher (augmented)", *epoch_ms(online_runs), "", ""),
        ("    student-alone epoch (augmented)", *epoch_ms(alone_aug_runs), "", ""),
        ("    teacher forwards, one epoch", *epoch_ms(forward_runs), "", ""),
        ("(c) KD epoch (online) / (student-alone + teacher fwd)", f"{online_ratio[0]:.3f}", f"{online_ratio[1]:.3f}",
         f"<= {ONLINE_RATIO_TARGET}", verdict(online_ratio[0] <= ONLINE_RATIO_TARGET)),
        ("    KD epoch, per-view cached teacher (augmented)", *epoch_ms(per_view_runs), "", ""),
        ("(d) KD epoch (per-view cache) / student-alone epoch (augmented)", f"{per_view_ratio[0]:.3f}",
         f"{per_view_ratio[1]:.3f}", f"<= {PER_VIEW_RATIO_TARGET}",
         verdict(per_view_ratio[0] <= PER_VIEW_RATIO_TARGET)),
        ("    KD epoch (online) / KD epoch (per-view cache)", f"{online_over_view[0]:.3f}",
         f"{online_over_view[1]:.3f}", "", ""),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"{'measurement':{width}s}  {'wall':>10s}  {'cpu':>10s}  {'target':>8s}  (verdict on wall)")
    for name, wall, cpu, target, result in rows:
        print(f"{name:{width}s}  {wall:>10s}  {cpu:>10s}  {target:>8s}  {result}")
    print(f"(a) per round: {' '.join(f'{seconds:.3f}' for seconds in trials)} s")


if __name__ == "__main__":
    main()
