"""Benchmark: data at real size (issue 23). Decode time, cache open time and a search's whole memory, in one run.

    .venv/bin/python bench/make_large_folder.py /tmp/large-folder       # 100,000 64x64 RGB PNGs, about 2.5 min
    .venv/bin/python bench/bench_data.py --data-dir /tmp/large-folder

Side by side, on the code of the checkout this script lives in (its folder is put first on PYTHONPATH, Ray
workers included):

a. first decode: ``trainers.load_dataset("imagefolder", ROOT)`` in a fresh process, timed around the call,
   with a fresh ``cache_dir`` when ``load_dataset`` takes one (the new code: decode and write the cache);
   without one (the old code) every load decodes;
b. second open: the same call again in a fresh process (the new code opens its cache; the old decodes again);
c. the dataset's uint8 size, N x C x H x W bytes;
d. the peak memory of ``search.py --dataset imagefolder --data-dir ROOT --budget 4 ...``, summed over the
   driver and every Ray process (the whole process tree of the ``search.py`` process, plus any process once
   in it that was re-parented), sampled every 0.5 s: the RSS sum and the PSS sum (``/proc/PID/smaps_rollup``).
   RSS counts a shared page in every process that maps it (Ray's object store in /dev/shm, a memory-mapped
   cache), PSS splits it between them, so the PSS sum is the memory the search really holds; the verdict
   uses it, and both are printed, with the PSS sum's part in shared memory (``Pss_Shmem``: the object store's
   pages, held by the processes that map them; a page no live process maps is in neither sum);
e. Ray's own baseline: the same search command on the embedded ``--dataset digits``, sampled the same way;
f. the verdict: peak PSS(folder) <= 1.5 x uint8 size + peak PSS(digits), printed as a ratio (<= 1 passes).

The searches use a tiny untrained teacher (``bench/tiny_teacher.py``: no teacher training, two strided
convolutions online), ``--epochs 1`` and ``--top-k 0`` (no final stage), so each of the 4 trials trains one epoch
over the whole training split and validates on the whole validation split; ``--max-params 20000`` bounds the
students (a percentage of a 5,450-parameter teacher would allow a few hundred parameters); ``--space`` keeps
resnet students at 8 channels or more (narrower ones crash torch 2.14.1's CPU backward in channels_last).
``--reference-dir`` adds the same search on a small folder of the same image size (a few thousand images), the
baseline without the data's size; its verdict is printed beside the issue's. Anything that fails (a load or search
killed for memory, a timeout) is recorded with its exit status and the peak it reached, and the script goes on. To
protect a shared machine, a sampled command is killed when its PSS sum passes ``--memory-cap-gb`` or the machine's
available memory falls under ``--min-available-gb``; the report then says so, with the peak reached.
Everything, with the exact commands, is also written to ``RESULTS_DIR/bench_data.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import psutil
except ModuleNotFoundError:
    # Ray ships its own psutil in ray/thirdparty_files, which `import ray` puts on sys.path.
    import ray  # noqa: F401, I001 - must come first: it puts its psutil on sys.path
    import psutil

REPO = Path(__file__).resolve().parents[1]
TINY_TEACHER = REPO / "bench" / "tiny_teacher.py"
GIB = 2**30
TARGET_FACTOR = 1.5  # the target: peak <= 1.5 x the uint8 size + Ray's baseline
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

# Both searches, folder and digits, run exactly these flags (see the module docstring for why each).
SEARCH_FLAGS: tuple[str, ...] = (
    "--budget", "4",
    "--epochs", "1",
    "--teacher", f"{TINY_TEACHER}:build_teacher",
    "--max-params", "20000",
    "--top-k", "0",
    "--gain-curve", "0",
    "--seed", "0",
    "--run-name", "bench",
)
# Written to RESULTS_DIR/space.json and passed as --space: resnet students narrower than 8 channels crash
# torch 2.14.1's CPU backward in channels_last (double free / segfault, reproduced outside Ray), which would
# end trials as failed and start fresh workers mid-measurement. cnn and mobilenet keep their default bounds.
SPACE = {"families": {"cnn": {}, "mobilenet": {}, "resnet": {"width": {"low": 8, "high": 32}}}}

# Run in a fresh process: the load alone, timed around the call. Prints one JSON line.
LOAD_SNIPPET = """
import inspect, json, resource, sys, time
from trainers import load_dataset
data_dir, cache_dir = sys.argv[1], sys.argv[2]
takes_cache = "cache_dir" in inspect.signature(load_dataset).parameters
kwargs = {"cache_dir": cache_dir} if takes_cache else {}
started = time.perf_counter()
data = load_dataset("imagefolder", data_dir, **kwargs)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "takes_cache_dir": takes_cache, "sizes": data.sizes(),
                  "input_shape": list(data.info.input_shape),
                  "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


# ---------------------------------------------------------------------------------------------------------
# Pure parts (tests/bench/test_bench_data.py)
# ---------------------------------------------------------------------------------------------------------


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` as {field: bytes}, e.g. ``{"Rss": ..., "Pss": ...}`` (the file says kB)."""
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        # The first line is the rollup's address range ("00400000-ffffffffff600000 ---p ... [rollup]").
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * 1024
    return fields


def processes_to_count(parents: Mapping[int, int], started: Mapping[int, float], root: int,
                       seen: Mapping[int, float]) -> dict[int, float]:
    """The processes whose memory belongs to ``root``'s command: pid -> start time.

    ``parents`` maps every live pid to its parent, ``started`` to its start time. Counted: ``root`` and all
    its descendants, plus any process ``seen`` in the tree before that still runs with the same start time
    (one whose parent exited is re-parented to init or a subreaper, and is still the command's; a pid reused
    by another process has another start time).
    """
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, stack = set(), [root] if root in parents else []
    while stack:
        pid = stack.pop()
        if pid not in tree:
            tree.add(pid)
            stack.extend(children.get(pid, ()))
    kept = {pid for pid, start in seen.items() if pid in parents and started.get(pid) == start}
    return {pid: started[pid] for pid in tree | kept}


def process_role(pid: int, root: int, name: str, cmdline: list[str]) -> str:
    """What a counted process is: driver, raylet, gcs, worker (a Ray worker or actor) or other (Ray's agents)."""
    first = cmdline[0] if cmdline else ""
    if pid == root:
        return "driver"
    if "raylet" in name or first.endswith("/raylet"):
        return "raylet"
    if "gcs_server" in name or first.endswith("/gcs_server"):
        return "gcs"
    # Ray renames its workers' processes "ray::IDLE", "ray::ImplicitFunc.train", ...
    if first.startswith("ray::") or name.startswith("ray::"):
        return "worker"
    if any(arg.endswith("default_worker.py") for arg in cmdline):
        return "worker"
    return "other"


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory at one sample, in bytes."""

    pid: int
    role: str
    rss: int
    pss: int
    pss_shmem: int = 0  # the part of pss in shared memory: Ray's object store in /dev/shm


@dataclass(frozen=True)
class MemoryTotals:
    """The sums of one sample, overall and per role: role -> (processes, rss, pss)."""

    rss: int
    pss: int
    by_role: dict[str, tuple[int, int, int]]
    pss_shmem: int = 0


def sum_memory(processes: Iterable[ProcessMemory]) -> MemoryTotals:
    """RSS and PSS summed over ``processes``, overall and per role."""
    processes = list(processes)
    by_role: dict[str, tuple[int, int, int]] = {}
    for process in processes:
        count, rss, pss = by_role.get(process.role, (0, 0, 0))
        by_role[process.role] = (count + 1, rss + process.rss, pss + process.pss)
    return MemoryTotals(rss=sum(rss for _, rss, _ in by_role.values()),
                        pss=sum(pss for _, _, pss in by_role.values()), by_role=by_role,
                        pss_shmem=sum(process.pss_shmem for process in processes))


@dataclass(frozen=True)
class Verdict:
    """Issue 23's memory target: peak <= factor x uint8 size + Ray's baseline peak."""

    limit: int
    ratio: float  # peak / limit; <= 1 passes
    passed: bool


def memory_verdict(peak: int, uint8_bytes: int, baseline_peak: int, factor: float = TARGET_FACTOR) -> Verdict:
    """The verdict for a search whose summed peak is ``peak`` on data of ``uint8_bytes``."""
    limit = int(factor * uint8_bytes) + baseline_peak
    ratio = peak / limit
    return Verdict(limit=limit, ratio=ratio, passed=ratio <= 1.0)


def gib(value: float | None) -> str:
    """Bytes as GiB with two decimals, or "n/a"."""
    return "n/a" if value is None else f"{value / GIB:.2f} GiB"


# ---------------------------------------------------------------------------------------------------------
# Sampling a command's process tree
# ---------------------------------------------------------------------------------------------------------


def read_process_memory(pid: int) -> tuple[int, int, int] | None:
    """(rss, pss, pss_shmem) of ``pid`` in bytes from smaps_rollup; psutil's RSS for the first two (and no
    shared memory) where that file is missing; None once the process is gone."""
    try:
        fields = parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
        return fields["Rss"], fields["Pss"], fields.get("Pss_Shmem", 0)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except (OSError, KeyError):
        try:
            rss = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return None
        return rss, rss, 0


@dataclass
class Peak:
    """The largest sum seen of one measure (RSS or PSS), with the sample it came from."""

    bytes: int = 0
    at_s: float = 0.0
    totals: MemoryTotals | None = None
    log_line: str = ""

    def as_dict(self) -> dict[str, Any]:
        roles = {} if self.totals is None else {
            role: {"processes": count, "rss_bytes": rss, "pss_bytes": pss}
            for role, (count, rss, pss) in sorted(self.totals.by_role.items())}
        shmem = None if self.totals is None else self.totals.pss_shmem
        return {"bytes": self.bytes, "at_s": round(self.at_s, 1), "pss_shmem_bytes": shmem, "by_role": roles,
                "log_line": self.log_line}


class TreeSampler(threading.Thread):
    """Samples the memory of a process tree every ``interval`` seconds until stopped; calls ``on_limit`` once
    when the PSS sum passes ``cap_bytes`` or the machine's available memory falls under ``floor_bytes``."""

    def __init__(self, root: int, interval: float, cap_bytes: int, floor_bytes: int, log_path: Path,
                 on_limit: Callable[[str], None]) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.cap_bytes, self.floor_bytes = root, interval, cap_bytes, floor_bytes
        self.log_path, self.on_limit = log_path, on_limit
        self.started = time.perf_counter()
        self.seen: dict[int, float] = {}  # every process ever counted: pid -> start time
        self.rss, self.pss = Peak(), Peak()
        self.samples = 0
        self.limit_reason: str | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def sample(self) -> None:
        parents, started, names = {}, {}, {}
        for process in psutil.process_iter(["ppid", "create_time", "name"]):
            parents[process.pid] = process.info["ppid"]
            started[process.pid] = process.info["create_time"]
            names[process.pid] = process.info["name"] or ""
        counted = processes_to_count(parents, started, self.root, self.seen)
        self.seen.update(counted)
        readings = []
        for pid in counted:
            memory = read_process_memory(pid)
            if memory is not None:
                readings.append(ProcessMemory(pid, process_role(pid, self.root, names[pid], _cmdline(pid)), *memory))
        totals = sum_memory(readings)
        self.samples += 1
        elapsed = time.perf_counter() - self.started
        for peak, value in ((self.rss, totals.rss), (self.pss, totals.pss)):
            if value > peak.bytes:
                peak.bytes, peak.at_s, peak.totals, peak.log_line = value, elapsed, totals, last_line(self.log_path)
        if self.limit_reason is None:
            available = psutil.virtual_memory().available
            if totals.pss > self.cap_bytes:
                self.limit_reason = f"PSS sum {gib(totals.pss)} passed the cap of {gib(self.cap_bytes)}"
            elif available < self.floor_bytes:
                self.limit_reason = (f"the machine's available memory fell to {gib(available)} (floor "
                                     f"{gib(self.floor_bytes)}) with the PSS sum at {gib(totals.pss)}")
            if self.limit_reason is not None:
                self.on_limit(self.limit_reason)


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def last_line(path: Path) -> str:
    """The last non-empty line of a log file (its last 4 kB read), or ""."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 4096))
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")[:200]


@dataclass
class SampledRun:
    """A command run under the sampler: how it ended and the peaks it reached."""

    label: str
    command: list[str]
    returncode: int | None = None
    wall_s: float = 0.0
    stopped: str | None = None  # why the script killed it (memory limit, timeout), else None
    peak_rss: Peak = field(default_factory=Peak)
    peak_pss: Peak = field(default_factory=Peak)
    samples: int = 0
    log: str = ""
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.stopped is None

    def outcome(self) -> str:
        """How it ended, in words."""
        if self.stopped:
            return f"stopped by the benchmark: {self.stopped}"
        if self.returncode == 0:
            return "finished"
        if self.returncode is not None and self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            why = " (the kernel's OOM killer sends SIGKILL)" if self.returncode == -signal.SIGKILL else ""
            return f"killed by {name}{why}"
        return f"failed with exit status {self.returncode}"

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(command=shlex.join(self.command), outcome=self.outcome(), peak_rss=self.peak_rss.as_dict(),
                    peak_pss=self.peak_pss.as_dict())
        return data


def run_sampled(label: str, command: list[str], log_path: Path, interval: float, cap_bytes: int,
                floor_bytes: int, timeout_s: float) -> SampledRun:
    """Run ``command`` (cwd the repository, its output to ``log_path``) while sampling its process tree."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run = SampledRun(label, command, log=str(log_path))
    shown = [arg if arg != LOAD_SNIPPET else "LOAD_SNIPPET" for arg in command]
    print(f"[{label}] PYTHONPATH={REPO} {shlex.join(shown)}", flush=True)
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    limit_hit = threading.Event()
    sampler = TreeSampler(process.pid, interval, cap_bytes, floor_bytes, log_path, lambda reason: limit_hit.set())
    sampler.start()
    deadline = started + timeout_s
    while process.poll() is None:
        if limit_hit.is_set() or time.perf_counter() > deadline:
            run.stopped = sampler.limit_reason or f"timeout after {timeout_s:.0f} s"
            # SIGKILL at once: a graceful stop of a search that is eating the machine's memory could be too late.
            _kill(sampler.seen)
            break
        time.sleep(0.2)
    run.returncode = process.wait()
    run.wall_s = time.perf_counter() - started
    sampler.stop()
    _reap(sampler.seen)
    run.peak_rss, run.peak_pss, run.samples = sampler.rss, sampler.pss, sampler.samples
    run.log_tail = Path(log_path).read_text(errors="replace").splitlines()[-8:]
    print(f"[{label}] {run.outcome()} in {run.wall_s:.1f} s; peak RSS sum {gib(run.peak_rss.bytes)}, "
          f"peak PSS sum {gib(run.peak_pss.bytes)} ({run.samples} samples)", flush=True)
    return run


def _kill(processes: Mapping[int, float]) -> None:
    """SIGKILL every process of the tree still running as the one counted (same pid and start time)."""
    for pid, start in processes.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == start:
                process.kill()
        except psutil.Error:
            pass


def _reap(processes: Mapping[int, float], grace_s: float = 15.0) -> None:
    """Give Ray's processes ``grace_s`` to exit after their driver, then kill what is left of the tree."""
    deadline = time.perf_counter() + grace_s
    while time.perf_counter() < deadline:
        alive = {pid: start for pid, start in processes.items() if _runs(pid, start)}
        if not alive:
            return
        time.sleep(0.5)
    _kill(processes)


def _runs(pid: int, start: float) -> bool:
    try:
        process = psutil.Process(pid)
        return process.create_time() == start and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ---------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Load:
    """One timed ``load_dataset`` in a fresh process."""

    run: SampledRun
    result: dict[str, Any] | None  # the snippet's JSON line, None when it failed

    @property
    def images(self) -> int | None:
        return None if self.result is None else sum(self.result["sizes"].values())

    def summary(self) -> str:
        if self.result is None:
            return f"{self.run.outcome()} after {self.run.wall_s:.1f} s (peak PSS sum {gib(self.run.peak_pss.bytes)})"
        seconds = self.result["seconds"]
        return (f"{seconds:.1f} s, {self.images / seconds:,.0f} images/s (process wall {self.run.wall_s:.1f} s, "
                f"peak RSS {gib(self.result['max_rss_bytes'])})")


def timed_load(label: str, data_dir: Path, cache_dir: Path, out: Path, options: argparse.Namespace) -> Load:
    command = [sys.executable, "-c", LOAD_SNIPPET, str(data_dir), str(cache_dir)]
    run = run_sampled(label, command, out / f"{label}.log", options.interval, options.cap_bytes,
                      options.floor_bytes, options.load_timeout)
    result = None
    if run.ok:
        try:
            result = json.loads(run.log_tail[-1])
        except (IndexError, json.JSONDecodeError):
            run.stopped = "its last line is not the JSON result"
    return Load(run, result)


def folder_uint8_bytes(root: Path) -> int:
    """N x C x H x W of an image folder whose images share the first one's size (C = 3 unless it is greyscale)."""
    from PIL import Image

    files = [path for path in root.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS]
    with Image.open(files[0]) as first:
        channels = 1 if first.mode in ("1", "L", "LA", "I", "F") else 3
        return len(files) * channels * first.width * first.height


def search_command(dataset_flags: list[str], results_dir: Path, space_file: Path, cache_dir: Path | None) -> list[str]:
    """``search.py`` with ``SEARCH_FLAGS`` on one dataset; ``--cache-dir`` where the new code has it."""
    command = [sys.executable, str(REPO / "search.py"), *dataset_flags, "--results-dir", str(results_dir),
               *SEARCH_FLAGS, "--space", str(space_file)]
    return command + (["--cache-dir", str(cache_dir)] if cache_dir is not None else [])


def search_takes_cache_dir() -> bool:
    """Whether this checkout's search.py has ``--cache-dir`` (the new data code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    helped = subprocess.run([sys.executable, str(REPO / "search.py"), "--help"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    return "--cache-dir" in helped.stdout


def search_trials(results_dir: Path) -> str:
    """The run's trial counts from its summary.json, or "no summary" when it did not get that far."""
    try:
        summary = json.loads((results_dir / "bench" / "summary.json").read_text())
    except (OSError, ValueError):
        return "no summary"
    return str(summary.get("trials", "no trial counts"))


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "mem_total_bytes": memory.total,
            "mem_available_bytes": memory.available, "load_average": os.getloadavg(), "commit": commit,
            "repo": str(REPO)}


def print_search(title: str, run: SampledRun, trials: str) -> None:
    """How a sampled search ended and its two peaks, each split by role."""
    print(f"  {title}: {run.outcome()} in {run.wall_s:.0f} s; trials {trials}")
    for measure, peak in (("RSS", run.peak_rss), ("PSS", run.peak_pss)):
        by_role = peak.totals.by_role if peak.totals is not None else {}
        roles = ", ".join(f"{role} {gib(pss if measure == 'PSS' else rss)} ({count})"
                          for role, (count, rss, pss) in sorted(by_role.items()))
        shmem = f" (shared memory {gib(peak.totals.pss_shmem)})" if measure == "PSS" and peak.totals else ""
        print(f"       peak {measure} sum {gib(peak.bytes)}{shmem} at {peak.at_s:.0f} s: {roles}")
    print(f"       (at the PSS peak the log said: {run.peak_pss.log_line!r})")


def print_verdict(title: str, search: SampledRun, baseline: SampledRun, uint8_bytes: int) -> dict[str, Any] | None:
    """The memory verdict on PSS sums (RSS beside it); a search stopped early gives a lower bound."""
    if not baseline.ok:
        print(f"  {title}: none, the baseline search did not finish ({baseline.outcome()})")
        return None
    verdict = memory_verdict(search.peak_pss.bytes, uint8_bytes, baseline.peak_pss.bytes)
    rss_verdict = memory_verdict(search.peak_rss.bytes, uint8_bytes, baseline.peak_rss.bytes)
    bound = "" if search.ok else "at least "
    passed = verdict.passed and search.ok
    print(f"  {title} (PSS): peak {gib(search.peak_pss.bytes)} / (1.5 x {gib(uint8_bytes)} + "
          f"{gib(baseline.peak_pss.bytes)} = {gib(verdict.limit)}): ratio {bound}{verdict.ratio:.2f} "
          f"(target <= 1.00): {'PASS' if passed else 'FAIL'}")
    print(f"     the same with RSS sums (a shared page counted in every process): ratio {bound}{rss_verdict.ratio:.2f}")
    return {"measure": "pss", **dataclasses.asdict(verdict), "complete": search.ok, "passed": passed,
            "rss_ratio": rss_verdict.ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the image folder (bench/make_large_folder.py)")
    parser.add_argument("--results-dir", type=Path, default=Path("/tmp/kdsearch-bench-data"),
                        help="a run-<date> folder is made under it for caches, search runs and logs")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    total = psutil.virtual_memory().total
    parser.add_argument("--memory-cap-gb", type=float, default=round(0.7 * total / GIB, 1),
                        help="kill a sampled command whose PSS sum passes this (default 70%% of this machine's)")
    parser.add_argument("--min-available-gb", type=float, default=1.5,
                        help="kill a sampled command when the machine's available memory falls under this")
    parser.add_argument("--load-timeout", type=float, default=30 * 60)
    parser.add_argument("--search-timeout", type=float, default=45 * 60)
    parser.add_argument("--skip-search", action="store_true", help="the loads only (a, b, c)")
    parser.add_argument("--reference-dir", type=Path,
                        help="a small folder of the same image size: the same search on it, a second baseline; "
                        "at 64 px give it at least 1,500 images, so that the teacher runs online as on the large "
                        "folder (with under about 870 training images its per-view logits fit the cache instead)")
    options = parser.parse_args()
    options.cap_bytes = int(options.memory_cap_gb * GIB)
    options.floor_bytes = int(options.min_available_gb * GIB)
    data_dir = options.data_dir.resolve()
    out = options.results_dir.resolve() / time.strftime("run-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    cache_dir = out / "cache"

    facts = machine()
    sys.path.insert(0, str(REPO))
    from trainers import load_dataset  # only to read its signature; the loads run in fresh processes

    takes_cache = "cache_dir" in inspect.signature(load_dataset).parameters
    print(f"{facts['date']}: {facts['cores']} cores, {gib(facts['mem_total_bytes'])} "
          f"({gib(facts['mem_available_bytes'])} available), load {facts['load_average'][0]:.2f}; "
          f"code {facts['commit']} at {REPO}: load_dataset {'takes' if takes_cache else 'has no'} cache_dir; "
          f"results in {out}", flush=True)
    report: dict[str, Any] = {"machine": facts, "data_dir": str(data_dir), "takes_cache_dir": takes_cache,
                              "memory_cap_bytes": options.cap_bytes, "min_available_bytes": options.floor_bytes}

    first = timed_load("first-decode", data_dir, cache_dir, out, options)
    second = timed_load("second-open", data_dir, cache_dir, out, options)
    if first.result is not None:
        channels, height, width = first.result["input_shape"]
        uint8_bytes = first.images * channels * height * width
    else:
        uint8_bytes = folder_uint8_bytes(data_dir)
    report.update(first_decode={**first.run.as_dict(), "result": first.result},
                  second_open={**second.run.as_dict(), "result": second.result}, uint8_bytes=uint8_bytes)

    searches: dict[str, SampledRun] = {}
    if not options.skip_search:
        space_file = out / "space.json"
        space_file.write_text(json.dumps(SPACE))
        search_cache = cache_dir if search_takes_cache_dir() else None
        # The baselines first: if the folder's search takes the machine down, they are on record.
        datasets = {"digits": ["--dataset", "digits"]}
        if options.reference_dir is not None:
            datasets["reference"] = ["--dataset", "imagefolder", "--data-dir", str(options.reference_dir.resolve())]
        datasets["imagefolder"] = ["--dataset", "imagefolder", "--data-dir", str(data_dir)]
        for name, dataset_flags in datasets.items():
            results_dir = out / f"search-{name}"
            # The reference folder is a different dataset: it gets its own cache under its results folder.
            cache = search_cache if name == "imagefolder" or search_cache is None else results_dir / "cache"
            command = search_command(dataset_flags, results_dir, space_file, cache)
            searches[name] = run_sampled(f"search-{name}", command, out / f"search-{name}.log", options.interval,
                                         options.cap_bytes, options.floor_bytes, options.search_timeout)
            report[f"search_{name}"] = {**searches[name].as_dict(), "trials": search_trials(results_dir)}

    print(f"\nData at real size: {data_dir} ({first.images or 'unknown number of'} images)")
    print(f"  a. first decode: {first.summary()}")
    print(f"  b. second open:  {second.summary()}"
          + ("" if takes_cache else "  (old code: no cache, so it decodes again)"))
    print(f"  c. uint8 size:   {gib(uint8_bytes)} ({uint8_bytes:,} bytes)")
    titles = {"imagefolder": "d. folder search", "digits": "e. digits search (Ray's baseline)",
              "reference": f"   reference search ({options.reference_dir})"}
    for name in sorted(searches, key=list(titles).index):
        print_search(titles[name], searches[name], report[f"search_{name}"]["trials"])
    if searches:
        report["verdict"] = print_verdict("f. verdict", searches["imagefolder"], searches["digits"], uint8_bytes)
    if "reference" in searches:
        report["verdict_reference"] = print_verdict("   against the reference folder", searches["imagefolder"],
                                                    searches["reference"], uint8_bytes)
    (out / "bench_data.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"  everything: {out / 'bench_data.json'}")


if __name__ == "__main__":
    main()
