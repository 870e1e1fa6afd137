"""Cost of a model: parameters, FLOPs of one forward pass, CPU latency at batch 1."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

# count_flops lives with the registry, whose student_flops counts the same way on the meta device.
from trainers.models import count_flops, count_parameters


@dataclass(frozen=True)
class ModelCost:
    """What one model costs to keep and to run."""

    params: int
    flops: int
    latency_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def cpu_latency_ms(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 30, warmup: int = 5) -> float:
    """Median wall time of one batch-1 forward pass on one CPU thread, in milliseconds."""
    cpu_model = _cpu_copy(model).eval()
    example = torch.zeros(1, *input_shape)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-sample serving latency, comparable across machines' core counts
    try:
        with torch.inference_mode():
            return median_ms(lambda: cpu_model(example), repeats, warmup)
    finally:
        torch.set_num_threads(threads)


def onnx_latency_ms(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 30, warmup: int = 5) -> float:
    """Median wall time of one batch-1 run of ``model``'s ONNX export on onnxruntime, one CPU thread, in ms.

    The runtime the exported ``best/model.onnx`` deploys on, so a latency bound holds for what a user ships.
    """
    from trainers.export import onnx_export, onnx_session  # export imports the registry, as this module does

    session = onnx_session(onnx_export(copy.deepcopy(model).to("cpu").eval(), tuple(input_shape)), threads=1)
    example = {session.get_inputs()[0].name: torch.zeros(1, *input_shape).numpy()}
    return median_ms(lambda: session.run(None, example), repeats, warmup)


def median_ms(run: Callable[[], object], repeats: int, warmup: int) -> float:
    """The median wall time of ``repeats`` calls of ``run`` after ``warmup`` untimed ones, in milliseconds."""
    for _ in range(warmup):
        run()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings)


def measure(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """Parameters, FLOPs and CPU latency of ``model`` for inputs of ``input_shape`` (C, H, W)."""
    return ModelCost(params=count_parameters(model), flops=count_flops(model, input_shape),
                     latency_ms=cpu_latency_ms(model, input_shape))


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _cpu_copy(model: nn.Module) -> nn.Module:
    if _device_of(model).type == "cpu":
        return model
    return copy.deepcopy(model).to("cpu")
