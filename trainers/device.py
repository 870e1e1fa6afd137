"""The one device rule of kdsearch: the GPU when this process was given one, else the CPU."""

from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    """``cuda`` when a GPU is visible to this process, else ``cpu``.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPUs a task or trial was given, and to the empty string when
    it was given none; a process Ray did not start (the driver) leaves it unset and sees every GPU.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") != "" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
