"""A student family registered outside ``trainers/``, in this one file: ``tiny``.

Importing the module registers it (``@register_student``, with its own default depth and width bounds).
``tests/tuning/test_registered_family.py`` runs a real search restricted to it. Ray's workers are other
processes: they get the family through ``trial_with_tiny_family``, the trainable the test gives Tune,
since unpickling that function in a worker imports this module (the repository root, the driver's
working directory, is on the workers' path).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

import tuning.trainable
from trainers.models import KDModel, register_student

DEPTH = (1, 2)
WIDTH = (4, 8)


class TinyNet(KDModel):
    """A conv stem, ``depth`` 3x3 conv layers at ``width`` channels (one stage), average pool, linear head."""

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = self.body(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1)), [features]


@register_student("tiny", depth=DEPTH, width=WIDTH)
def tiny(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """The ``tiny`` family: a few thousand parameters at most."""
    return TinyNet(depth, width, in_channels, num_classes)


def trial_with_tiny_family(config: dict[str, Any], **kwargs: Any) -> None:
    """``tuning.trainable.run_trial``, from a module whose import registers ``tiny`` in the worker."""
    return tuning.trainable.run_trial(config, **kwargs)
