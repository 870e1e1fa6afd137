"""Benchmark: batch norm in the training step on the CPU, and the two ways around oneDNN's channels_last kernel
that were measured and not kept. A benchmark, not a test.

    .venv/bin/python bench/bench_batch_norm.py [--rounds 5]

1. Per layer, forward and backward at batch 64, one thread: batch norm on a channels_last activation (what
   ``trainers.distill`` trains in), the same on a contiguous one, and batch norm written as a handful of eager
   operations on the channels_last activation seen as a (pixels, channels) matrix.
2. Whole training steps (forward, cross-entropy, backward, SGD) of digits' and MNIST's typical students in
   channels_last, with each batch norm as it is, and with each batch norm of at most 16 channels run on a
   contiguous copy (the convolutions stay in channels_last, where they are faster).

Prints microseconds per layer, milliseconds per step (medians over ``--rounds`` rounds, the variants alternating
in every round) and the ratio variant / as it is (above 1: slower). Always exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.models import build_student  # noqa: E402

LAYERS = ((64, 5, 8, 8), (64, 12, 8, 8), (64, 32, 8, 8), (64, 9, 28, 28), (64, 18, 14, 14))
STEPS = (("cnn", 2, 5, 8), ("mobilenet", 3, 3, 8), ("resnet", 1, 8, 8), ("cnn", 2, 9, 28), ("resnet", 1, 8, 28))
DETOUR_MAX_CHANNELS = 16


class _EagerBatchNorm(torch.autograd.Function):
    """Training-mode batch norm over the rows of a (pixels, channels) matrix, in eager operations."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, rows: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        centered = rows - rows.sum(0) / rows.shape[0]
        inverse_std = torch.rsqrt((centered * centered).sum(0) / rows.shape[0] + 1e-5)
        scale = weight * inverse_std
        ctx.save_for_backward(centered, inverse_std, scale)
        return centered * scale + bias

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        centered, inverse_std, scale = ctx.saved_tensors
        count = centered.shape[0]
        grad_bias = grad.sum(0)
        dot = (grad * centered).sum(0)
        grad_rows = (grad * scale - centered * (scale * inverse_std * inverse_std * dot / count)
                     - scale * grad_bias / count)
        return grad_rows, dot * inverse_std, grad_bias


def _median_us(step: Callable[[], None], rounds: int, repeats: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            step()
        times.append((time.perf_counter() - started) / repeats * 1e6)
    return statistics.median(times)


def layer_times(shape: tuple[int, int, int, int], rounds: int) -> dict[str, float]:
    """Microseconds of one batch norm's forward and backward, three ways."""
    batch, channels, height, width = shape
    norm = nn.BatchNorm2d(channels)
    channels_last = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
    contiguous = channels_last.detach().contiguous().requires_grad_()
    grad_last, grad_contiguous = torch.randn(shape).contiguous(memory_format=torch.channels_last), torch.randn(shape)

    def eager() -> None:
        rows = channels_last.permute(0, 2, 3, 1).reshape(-1, channels)
        out = _EagerBatchNorm.apply(rows, norm.weight, norm.bias)
        out.reshape(batch, height, width, channels).permute(0, 3, 1, 2).backward(grad_last)

    repeats = max(5, 200_000 // (batch * channels * height * width) * 20)
    return {"channels_last": _median_us(lambda: norm(channels_last).backward(grad_last), rounds, repeats),
            "contiguous": _median_us(lambda: norm(contiguous).backward(grad_contiguous), rounds, repeats),
            "eager": _median_us(eager, rounds, repeats)}


def _contiguous_detour(norm: nn.BatchNorm2d, images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] > DETOUR_MAX_CHANNELS or images.is_contiguous():
        return nn.BatchNorm2d.forward(norm, images)
    return nn.BatchNorm2d.forward(norm, images.contiguous()).contiguous(memory_format=torch.channels_last)


def step_times(family: str, depth: int, width: int, pixels: int, rounds: int) -> dict[str, float]:
    """Milliseconds of one training step at batch 64, batch norm as it is and with the contiguous detour."""
    model = build_student(family, depth, width, 1, 10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, foreach=True)
    images = torch.randn(64, 1, pixels, pixels).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (64,))
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    repeats = 40 if pixels <= 8 else 8
    times: dict[str, list[float]] = {"as it is": [], "detour": []}
    for _ in range(rounds):
        for variant in times:
            for norm in norms:
                if variant == "detour":
                    norm.forward = _contiguous_detour.__get__(norm)  # type: ignore[method-assign]
                else:
                    norm.__dict__.pop("forward", None)
            times[variant].append(_median_us(step, 1, repeats) / 1000)
    return {variant: statistics.median(values) for variant, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("batch norm, forward and backward, batch 64, one thread (us; ratio to channels_last)")
    for shape in LAYERS:
        times = layer_times(shape, args.rounds)
        base = times["channels_last"]
        print(f"  {'x'.join(map(str, shape[1:]))}: channels_last {base:.0f}, contiguous {times['contiguous']:.0f} "
              f"({times['contiguous'] / base:.2f}), eager ops {times['eager']:.0f} ({times['eager'] / base:.2f})")
    print(f"training step, batch 64, one thread (ms; batch norms of <= {DETOUR_MAX_CHANNELS} channels on a "
          "contiguous copy, ratio to as it is)")
    for family, depth, width, pixels in STEPS:
        times = step_times(family, depth, width, pixels, args.rounds)
        print(f"  {family} d{depth} w{width} at {pixels} px: as it is {times['as it is']:.2f}, "
              f"detour {times['detour']:.2f} ({times['detour'] / times['as it is']:.3f})")


if __name__ == "__main__":
    main()
