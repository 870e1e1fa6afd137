"""A tiny untrained teacher for benchmarks that measure the data path, not distillation.

``bench/bench_data.py`` runs its searches with ``--teacher bench/tiny_teacher.py:build_teacher`` (a factory
teacher, used as it is built: no teacher training). On 100,000 64x64 images kdsearch's cnn-large would spend
about 4 minutes on 2 cores training one epoch (252 images/s, measured) and then run online in every trial's epoch
(its per-view logits do not fit the cache at 64 px), none of which touches how the data is held.
"""

from __future__ import annotations

from torch import nn


def build_teacher(num_classes: int, in_channels: int) -> nn.Module:
    """Two strided convolutions, global pooling and a linear head: about 5,000 parameters, any input size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
