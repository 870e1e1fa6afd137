"""Size bounds on the students, checked before any trial trains: ``--max-params``, ``--max-flops`` and
``--max-latency-ms``.

Parameters and FLOPs are counted on the meta device (no memory, no weights), so the whole space is sized
in about a second. Latency has to be measured: each student the bisection of ``spaces.bound_space_to``
asks about (about log2(widths) per family and depth) is built, exported to ONNX and timed at batch 1 on
one thread of this machine with onnxruntime, the runtime the exported ``best/model.onnx`` runs on. Each
timing is cached on disk by architecture, input shape, runtime and machine, so a rerun or a resume
measures nothing again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runfolder import atomic_write_json, read_cache_entry
from spaces import SizeBound

# Measures that the bounds and ``--objective pareto`` know, in the order a Pareto objective prefers them:
# the bound a user gave that is closest to deployment.
SIZE_MEASURES = ("latency_ms", "flops", "params")
NO_PARAMS_BOUND = "none"
_MAX_PARAMS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")
_FLOPS = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e\d+)?|\.\d+)\s*([kmgt]?)\s*$", re.IGNORECASE)
_FLOPS_SUFFIXES = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
LATENCY_RUNTIME = "onnxruntime"
LATENCY_RUNTIME_MISSING = ("--max-latency-ms times students with onnxruntime (the runtime of the exported "
                           "best/model.onnx), which is not installed; run 'pip install onnxruntime' or bound the "
                           "students with --max-params or --max-flops")


class BoundError(ValueError):
    """A size-bound flag that cannot be used; the message names the flag and the fix."""


def parse_max_flops(value: Any) -> int:
    """``--max-flops``: a FLOP count such as 20000000, 2e7, 20M or 1.5G (torch's count: a multiply-add is 2)."""
    text = str(value)
    match = _FLOPS.match(text)
    number = float(match.group(1)) * _FLOPS_SUFFIXES[match.group(2).lower()] if match else 0.0
    if not match or not number >= 1 or not math.isfinite(number):
        raise BoundError(f"--max-flops must be a positive number of FLOPs such as 20000000, 2e7, 20M or 1.5G, "
                         f"got {text!r}")
    return int(number)


def parse_max_latency_ms(value: Any) -> float:
    """``--max-latency-ms``: a positive number of milliseconds; needs onnxruntime to measure."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (number > 0 and math.isfinite(number)):
        raise BoundError(f"--max-latency-ms must be a positive number of milliseconds such as 2.5, got {value!r}")
    if importlib.util.find_spec(LATENCY_RUNTIME) is None:
        raise BoundError(LATENCY_RUNTIME_MISSING)
    return number


def check_bound_flags(flags: dict[str, Any]) -> None:
    """The size-bound flags of ``build_spec``, parsed in place; ``BoundError`` names a bad one.

    A --max-flops or --max-latency-ms bound replaces the default --max-params; a --max-params given with
    them still applies."""
    if "max_flops" in flags:
        flags["max_flops"] = parse_max_flops(flags["max_flops"])
    if "max_latency_ms" in flags:
        flags["max_latency_ms"] = parse_max_latency_ms(flags["max_latency_ms"])
    if "max_params" in flags:
        flags["max_params"] = str(flags["max_params"]).strip()
        if flags["max_params"].lower() == NO_PARAMS_BOUND:
            flags["max_params"] = NO_PARAMS_BOUND
        else:
            parse_max_params(flags["max_params"])
    elif "max_flops" in flags or "max_latency_ms" in flags:
        flags["max_params"] = NO_PARAMS_BOUND
    if flags.get("max_params") == NO_PARAMS_BOUND and "max_flops" not in flags and "max_latency_ms" not in flags:
        raise BoundError("--max-params none leaves the students unbounded: give --max-flops or --max-latency-ms "
                         "with it, or a --max-params count or percentage")


def parse_max_params(text: str) -> tuple[float, bool]:
    """``--max-params`` as (number, is_percentage); ``BoundError`` for anything else (``none`` included)."""
    match = _MAX_PARAMS.match(text)
    number = float(match.group(1)) if match else 0.0
    percent = bool(match and match.group(2))
    if not match or number <= 0 or (percent and number > 100) or (not percent and number != int(number)):
        raise BoundError(f"--max-params must be a parameter count such as 50000, a percentage of the teacher "
                         f"such as 5%, or none (with --max-flops or --max-latency-ms), got {text!r}")
    return number, percent


@dataclass(frozen=True)
class StudentMeasures:
    """How to size a student ``(family, depth, width)`` of one dataset: each measure by its key."""

    params: Callable[[str, int, int], float]
    flops: Callable[[str, int, int], float]
    latency_ms: Callable[[str, int, int], float]

    def of(self, key: str) -> Callable[[str, int, int], float]:
        return getattr(self, key)


UNITS = {"params": "parameters", "flops": "FLOPs", "latency_ms": "ms of latency at batch 1"}


def size_bounds(limits: dict[str, float | None], measures: StudentMeasures) -> list[SizeBound]:
    """The bounds a search applies: one per limit given (``max_params``, ``max_flops``, ``max_latency_ms``),
    cheapest measure first, so a student over the parameter bound is never timed."""
    return [SizeBound(key, limit, measures.of(key), UNITS[key])
            for key in reversed(SIZE_MEASURES) if (limit := limits.get(f"max_{key}")) is not None]


def pareto_measure(limits: dict[str, float | None]) -> str:
    """The size ``--objective pareto`` trades accuracy against: the bound closest to deployment that the
    user gave (latency, then FLOPs), else parameters."""
    return next((key for key in SIZE_MEASURES[:-1] if limits.get(f"max_{key}") is not None), "params")


class LatencyCache:
    """Measured latencies on disk, ``<cache-dir>/latency/<key>.json``, one file per student and machine.

    ``measure(arch)`` times a student the cache does not hold; a damaged entry is measured again.
    """

    def __init__(self, folder: Path, measure: Callable[[dict[str, Any]], float], runtime: str) -> None:
        self.folder = folder
        self.measure = measure
        self.runtime = runtime
        self.measured = 0  # timings taken (not read from the cache) by this object

    def latency_ms(self, arch: dict[str, Any], input_shape: tuple[int, ...]) -> float:
        path = self.folder / f"{self._key(arch, input_shape)}.json"
        cached = read_cache_entry(path)  # None when missing or damaged: measure again and replace it
        if cached is not None and isinstance(cached.get("latency_ms"), int | float):
            return float(cached["latency_ms"])
        latency = self.measure(arch)
        self.measured += 1
        atomic_write_json(path, {"latency_ms": latency, "arch": arch, "input_shape": list(input_shape),
                                 **machine_description(self.runtime)})
        return latency

    def _key(self, arch: dict[str, Any], input_shape: tuple[int, ...]) -> str:
        identity = {"arch": arch, "input_shape": list(input_shape), **machine_description(self.runtime)}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


@functools.cache
def machine_description(runtime: str) -> dict[str, str]:
    """Where a latency is measured: the runtime and its version, the CPU model and the host (read once per
    process: every cache lookup keys on it)."""
    return {"runtime": runtime, "runtime_version": _version(runtime), "cpu": cpu_model(),
            "machine": platform.machine(), "host": platform.node()}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # a runtime without package metadata still measures; the key just lacks its version
        return "unknown"


def student_measures(input_shape: tuple[int, ...], num_classes: int,
                     latency_folder: Path) -> tuple[StudentMeasures, LatencyCache]:
    """Parameters, FLOPs (both counted on the meta device) and latency (timed once per student and machine,
    cached in ``latency_folder``) of a student ``(family, depth, width)`` for inputs of ``input_shape``."""
    from trainers.measure import onnx_latency_ms
    from trainers.models import build_from_arch, build_student_for, student_flops, student_parameter_count

    channels = input_shape[0]

    def params_of(family: str, depth: int, width: int) -> int:
        return student_parameter_count(family, depth, width, channels, num_classes)

    def flops_of(family: str, depth: int, width: int) -> int:
        return student_flops(family, depth, width, tuple(input_shape), num_classes)

    def time_student(arch: dict[str, Any]) -> float:
        return onnx_latency_ms(build_from_arch(arch), tuple(input_shape))

    latency = LatencyCache(latency_folder, time_student, LATENCY_RUNTIME)

    def latency_of(family: str, depth: int, width: int) -> float:
        arch = build_student_for(family, depth, width, tuple(input_shape), num_classes).arch
        return latency.latency_ms(arch, tuple(input_shape))

    return StudentMeasures(params=params_of, flops=flops_of, latency_ms=latency_of), latency
