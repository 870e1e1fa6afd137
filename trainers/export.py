"""Export a trained student to a folder and load it back from that folder alone.

A folder holds ``model.pt`` (the state_dict: tensors only), ``config.json`` (the architecture,
input shape and whatever metadata the caller adds) and ``model.ts`` (TorchScript, for serving
without this package). No pickled model objects.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.files import CorruptFileError, atomic_torch_save, atomic_write, atomic_write_json, safe_torch_load
from trainers.models import build_from_arch

STATE_FILE, CONFIG_FILE, TORCHSCRIPT_FILE = "model.pt", "config.json", "model.ts"


def export_model(model: nn.Module, folder: str | Path, input_shape: tuple[int, int, int],
                 metadata: dict[str, Any] | None = None) -> Path:
    """Write the three files of an exported model into ``folder`` (each atomically).

    ``model`` itself is left as it was (device, training mode): a CPU copy in eval mode is exported.
    """
    folder = Path(folder)
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    atomic_torch_save(cpu_model.state_dict(), folder / STATE_FILE)
    with warnings.catch_warnings():  # torch marks TorchScript deprecated; it is still what servers load
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.trace(cpu_model, torch.zeros(1, *input_shape), check_trace=False)
        atomic_write(folder / TORCHSCRIPT_FILE, lambda stream: torch.jit.save(scripted, stream))
    atomic_write_json(folder / CONFIG_FILE, {"arch": cpu_model.arch, "input_shape": list(input_shape),
                                             "metadata": metadata or {}})
    return folder


def load_exported(folder: str | Path) -> nn.Module:
    """Rebuild the exported model from ``config.json`` and ``model.pt`` (eval mode, CPU)."""
    folder = Path(folder)
    config = read_export_config(folder)
    model = build_from_arch(config["arch"])
    model.load_state_dict(safe_torch_load(folder / STATE_FILE))
    return model.eval()


def load_torchscript(folder: str | Path) -> torch.jit.ScriptModule:
    """Load the TorchScript form of the exported model (needs torch only, not this package)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(Path(folder) / TORCHSCRIPT_FILE), map_location="cpu").eval()


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of an export folder."""
    path = Path(folder) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CorruptFileError(f"{path} is not valid JSON ({error.msg})") from None
