"""The memory format training runs in: channels_last where oneDNN trains it faster and safely."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def training_memory_format(*models: nn.Module | None) -> Iterator[torch.memory_format]:
    """Train in the channels_last memory format, and give the models back in the default one.

    On the CPU, oneDNN's convolutions train 5-45 % faster in channels_last for every model measured but the
    very smallest (BENCHMARKS.md: cnn depth 1 width 2, a 3 ms step, is 14 % slower), 8x8 digits included.
    Back in the default format afterwards, a trained model computes exactly what its exported copy does.
    Yields the format the batches must be given in: a channels_last batch of several channels would take
    oneDNN's channels_last path even through a model kept in the default format.
    """
    present = [model for model in models if model is not None]
    if not all(map(channels_last_is_safe, present)):
        yield torch.contiguous_format
        return
    for model in present:
        model.to(memory_format=torch.channels_last)
    try:
        yield torch.channels_last
    finally:
        for model in present:
            model.to(memory_format=torch.contiguous_format)


# oneDNN's weight gradient of a 1x1 stride-2 convolution with 2 to 6 input channels corrupts the heap in
# channels_last on one thread (torch 2.14.1 on an AVX2-only CPU: "corrupted double-linked list", then the
# process dies). ResNet students of width 2-3 have such shortcuts, so those models train in the default format.
_UNSAFE_CHANNELS_LAST_IN_CHANNELS = range(2, 8)


def channels_last_is_safe(model: nn.Module) -> bool:
    """Whether ``model`` has none of the convolutions oneDNN cannot train in channels_last (see above)."""
    return not any(isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and max(layer.stride) > 1
                   and layer.in_channels in _UNSAFE_CHANNELS_LAST_IN_CHANNELS for layer in model.modules())
