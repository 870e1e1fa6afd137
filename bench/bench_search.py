"""Benchmark: is the search dominated by the trials, not by scheduling? (Not a test: prints ratios.)

    python bench/bench_search.py            # --budget 50 on digits, as `python search.py --budget 50`
    python bench/bench_search.py --budget 20 --skip-reuse
    python bench/bench_search.py --dataset imagefolder --data-dir /tmp/digits-folder --budget 20 --skip-reuse

Part 1 runs the real search (Ray Tune + OptunaSearch + ASHA + the final stage) and prints
``search_s / (trial_busy_s / slots)``: 1.0 would mean no scheduling cost at all; the target is <= 1.10.
It also prints the end-to-end wall time against its target on 2 cores: the default digits run 60 s with
the teacher cached, 90 s training it; a 20-trial search on a 10,000-image folder 10 minutes, teacher included.

Part 1 also profiles the final stage from Ray's own task timeline (``ray.timeline()``): how many training
tasks it ran, their summed busy seconds, and that sum over the slots against the stage's wall time, phase by
phase. A stage whose wall time is close to busy / slots is compute-bound: only less work makes it shorter.
Last, the run's compute floor: the teacher phase plus every training's busy seconds (the search's trials, the
recipe phase's and the baseline search's, the final stage's tasks) over the slots. No scheduling can bring the
run under it; when the floor is over the wall target, only less or cheaper training can meet it.

Last in part 1, where the machine's CPU went: a thread samples every process under the driver (from
``/proc``, every 0.2 s) and sums each one's CPU seconds by role: the driver (Tune's controller and its snapshots,
Optuna, the final stage's bookkeeping, the report and export), the trials' actors, the final stage's task
workers, workers that only idled, and Ray's own processes. A worker imports torch, Ray Tune and kdsearch
before its first trial or task; the line says how many were started. Against the wall time on all cores it
shows what the training did not use. CPU a process spent after its last sample is missed (at most 0.2 s each).

Part 2 measures, side by side in one run, the per-trial scheduling overhead of Ray Tune function
trainables with and without ``reuse_actors`` on a trainable that does a fixed small amount of work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.logger import JsonLoggerCallback  # noqa: E402

from runfolder import TRIALS_FILE, read_json  # noqa: E402
from tuning import build_spec, run  # noqa: E402
from tuning.prepare import start_ray  # noqa: E402

TARGET_RATIO = 1.10


def wall_target(dataset: str, teacher_source: str) -> float:
    """The end-to-end target in seconds: digits with its teacher cached or trained, or an image folder."""
    if dataset == "digits":
        return 60.0 if teacher_source == "cache" else 90.0
    return 10 * 60.0


FINAL_STAGE_TASKS = ("train_seed", "finetune_seed")


def final_stage_busy(timeline: list[dict]) -> dict[str, tuple[int, float]]:
    """Per final-stage task function: (tasks, summed seconds) from ``ray.timeline()``'s complete events."""
    busy = {name: (0, 0.0) for name in FINAL_STAGE_TASKS}
    for event in timeline:
        category = str(event.get("cat", ""))  # "task::<function>" for a task's whole execution
        if event.get("ph") != "X" or not category.startswith("task::"):
            continue
        function = category.removeprefix("task::")
        if function in busy:
            count, seconds = busy[function]
            busy[function] = (count + 1, seconds + float(event.get("dur", 0)) / 1e6)
    return busy


def sub_search_busy(run_dir: Path) -> dict[str, float]:
    """Summed trial busy seconds of the run's sub-searches (the recipe phase, the baseline search) that ran."""
    busy = {}
    for name in ("recipe", "baseline"):
        records = read_json(run_dir / name / TRIALS_FILE)
        if records is not None:
            busy[name] = sum(record.get("busy_s") or 0.0 for record in records)
    return busy


def compute_floor(teacher_s: float, trial_busy_s: float, sub_busy: dict[str, float], task_s: float,
                  slots: int) -> float:
    """The least wall time the run's training can take on ``slots``: the teacher phase (nothing else runs
    beside it) plus all trial and task busy seconds spread perfectly over the slots."""
    return teacher_s + (trial_busy_s + sum(sub_busy.values()) + task_s) / slots


# A Ray worker's title names what it runs ("ray::ImplicitFunc.train", "ray::train_seed", "ray::IDLE").
ROLES = (("trial actors", ("ray::ImplicitFunc",)), ("final-stage task workers", FINAL_STAGE_TASKS),
         ("idle workers", ("ray::IDLE",)))


def process_role(titles: set[str]) -> str:
    """The role of one process under the driver from the titles it was seen with: the first of ``ROLES`` any
    title names, else Ray's own processes (raylet, GCS, log monitor, dashboard)."""
    for role, marks in ROLES:
        if any(mark in title for title in titles for mark in marks):
            return role
    return "Ray's own processes"


def cpu_by_role(cpu_seconds: dict[int, float], titles: dict[int, set[str]]) -> dict[str, tuple[int, float]]:
    """(processes, CPU seconds) per role, from each process's last seen CPU seconds and its titles."""
    roles: dict[str, tuple[int, float]] = {}
    for pid, seconds in cpu_seconds.items():
        role = process_role(titles.get(pid, set()))
        count, total = roles.get(role, (0, 0.0))
        roles[role] = (count + 1, total + seconds)
    return roles


def _process_table() -> dict[int, tuple[int, str, float]]:
    """Every process's (parent pid, title, CPU seconds) from ``/proc`` (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
            title = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended between the listing and the read
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        table[int(entry)] = (int(fields[1]), title.strip()[:80], (int(fields[11]) + int(fields[12])) / ticks)
    return table


def descendants(table: dict[int, tuple[int, str, float]], root: int) -> list[int]:
    """The pids under ``root`` in a ``_process_table``."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class ProcessCpu:
    """Samples the CPU seconds of every process under this one, in a thread, until the ``with`` ends."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.cpu_seconds: dict[int, float] = {}
        self.titles: dict[int, set[str]] = {}
        self.driver_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ProcessCpu:
        self._driver_start = sum(os.times()[:2])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.driver_s = sum(os.times()[:2]) - self._driver_start

    def _sample(self) -> None:
        while not self._stop.wait(self.period_s):
            table = _process_table()
            for pid in descendants(table, os.getpid()):
                _, title, seconds = table[pid]
                self.cpu_seconds[pid] = seconds
                self.titles.setdefault(pid, set()).add(title)


def bench_search(budget: int, results_dir: str, dataset: str | None, data_dir: str | None) -> None:
    spec = build_spec(budget=budget, run_name=f"bench-{int(time.time())}", results_dir=results_dir,
                      dataset=dataset, data_dir=data_dir)
    # Ray is started here (by the run's own start_ray) so that its task timeline outlives the run.
    start_ray(spec, log=lambda message: None)
    try:
        with ProcessCpu() as cpu:
            started = time.perf_counter()
            outcome = run(spec, log=lambda message: None)
            wall = time.perf_counter() - started
        busy = final_stage_busy(ray.timeline())
    finally:
        ray.shutdown()
    timings = outcome.summary["timings"]
    ideal = timings["trial_busy_s"] / timings["slots"]
    ratio = timings["search_s"] / ideal
    trials = outcome.summary["trials"]
    print(f"search --budget {budget} on {spec.dataset}: {trials}")
    print(f"  teacher_s {timings['teacher_s']:.1f}  search_s {timings['search_s']:.1f}  "
          f"trial_busy_s {timings['trial_busy_s']:.1f}  slots {timings['slots']}  final_s {timings['final_s']:.1f}")
    print(f"  search_s / (trial_busy_s / slots) = {ratio:.3f}  (target <= {TARGET_RATIO}: "
          f"{'pass' if ratio <= TARGET_RATIO else 'FAIL'})")
    source = outcome.summary["teacher"]["source"]
    target = wall_target(spec.dataset, source)
    print(f"  end-to-end wall {wall:.1f} s, summary total_s {timings['total_s']:.1f} s, teacher {source}  "
          f"(target <= {target:.0f} s: {'pass' if wall <= target else 'FAIL'})")
    final, slots = outcome.summary["final"], timings["slots"]
    tasks = sum(count for count, _ in busy.values())
    task_s = sum(seconds for _, seconds in busy.values())
    phases = "  ".join(f"{name} {seconds:.1f}" for name, seconds in final["phases"].items())
    print(f"  final stage {timings['final_s']:.1f} s ({phases}): {tasks} training tasks "
          + ", ".join(f"{count} {name} {seconds:.1f} s" for name, (count, seconds) in busy.items())
          + f"; busy / slots = {task_s / slots:.1f} s, plus the baseline search's trials "
          f"({final['phases']['baseline_search_s']:.1f} s wall)")
    print(f"  (recheck_s + compare_s) / (task busy / slots) = "
          f"{(final['phases']['recheck_s'] + final['phases']['compare_s']) / max(task_s / slots, 1e-9):.2f}")
    sub_busy = sub_search_busy(outcome.run_dir)
    floor = compute_floor(timings["teacher_s"], timings["trial_busy_s"], sub_busy, task_s, slots)
    print(f"  compute floor {floor:.1f} s = teacher {timings['teacher_s']:.1f} + (search trials "
          f"{timings['trial_busy_s']:.1f} + " + " + ".join(f"{name} trials {s:.1f}" for name, s in sub_busy.items())
          + f" + final-stage tasks {task_s:.1f}) / {slots} slots; wall / floor = {wall / floor:.2f}  "
          f"(floor {'under' if floor <= target else 'OVER'} the {target:.0f} s target)")
    roles = cpu_by_role(cpu.cpu_seconds, cpu.titles)
    cores = os.cpu_count() or 1
    used = cpu.driver_s + sum(seconds for _, seconds in roles.values())
    print(f"  CPU seconds, {wall:.1f} s on {cores} cores = {wall * cores:.0f}: driver {cpu.driver_s:.1f}, "
          + ", ".join(f"{role} {seconds:.1f} ({count} processes)" for role, (count, seconds) in roles.items())
          + f"; all {used:.0f} ({used / (wall * cores):.0%} of the cores)")
    low, high = outcome.summary["kd_gain_ci95"]
    print(f"  kd_gain {outcome.summary['kd_gain']:+.2f} points, 95% CI [{low:+.2f}, {high:+.2f}]: "
          f"{outcome.summary['kd_verdict']}")


def _fixed_work(config: dict) -> None:
    started = time.perf_counter()
    for epoch in range(1, 6):
        total = 0
        for index in range(40_000):  # about 5 ms of pure Python per epoch
            total += index
        tune.report({"epoch": epoch, "score": config["x"], "busy_s": time.perf_counter() - started})


def _overhead_per_trial(reuse: bool, trials: int, storage: str) -> float:
    started = time.perf_counter()
    results = tune.Tuner(
        _fixed_work,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=trials, reuse_actors=reuse, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[JsonLoggerCallback()]),
    ).fit()
    wall = time.perf_counter() - started
    busy = sum(result.metrics["busy_s"] for result in results)
    return (wall - busy / 2) / trials


def bench_reuse(trials: int) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        rounds = {True: [], False: []}
        for _ in range(2):  # alternate so drifting machine load hits both sides
            for reuse in (True, False):
                rounds[reuse].append(_overhead_per_trial(reuse, trials, storage))
    ray.shutdown()
    with_reuse, without = statistics.median(rounds[True]), statistics.median(rounds[False])
    print(f"Ray Tune scheduling overhead per trial ({trials} trials, 2 at a time, median of 2 rounds):")
    print(f"  reuse_actors=True  {with_reuse:.3f} s")
    print(f"  reuse_actors=False {without:.3f} s   ratio {without / with_reuse:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--results-dir", default="results", help="the teacher cache under it is reused")
    parser.add_argument("--reuse-trials", type=int, default=12)
    parser.add_argument("--skip-reuse", action="store_true")
    parser.add_argument("--dataset", help="as search.py's --dataset (default: search.py's, digits)")
    parser.add_argument("--data-dir", help="as search.py's --data-dir")
    args = parser.parse_args()
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    bench_search(args.budget, args.results_dir, args.dataset, args.data_dir)
    if not args.skip_reuse:
        bench_reuse(args.reuse_trials)


if __name__ == "__main__":
    main()
