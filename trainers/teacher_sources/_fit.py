"""Fitting a user's state_dict to the model kdsearch builds for it: input channels, exact keys, one-line errors."""

from __future__ import annotations

import torch
from torch import nn

from trainers.teacher_sources._common import TeacherCheckpointError

# Keys named in a mismatch line, per kind (missing, unexpected, mis-shaped).
NAMED_KEYS = 3


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The model's first ``nn.Conv2d`` (in module order) and its name, or ``None``."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    return None


def input_channels(model: nn.Module, default: int) -> int:
    """The channels ``model`` takes: its first convolution's, else its first 4-D weight's, else ``default``."""
    found = first_conv(model)
    if found is not None:
        return found[1].in_channels
    for _, parameter in model.named_parameters():
        if parameter.dim() == 4:
            return int(parameter.shape[1])
    return default


def fit_input_channels(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> int | None:
    """Give ``model``'s first convolution the input channels ``state_dict`` has for it (a torchvision or timm
    model finetuned on 1-channel images); returns the new channel count, or ``None`` when nothing changed."""
    found = first_conv(model)
    if found is None:
        return None
    name, conv = found
    weight = state_dict.get(f"{name}.weight")
    if weight is None or weight.dim() != 4 or weight.shape[1] * conv.groups == conv.in_channels:
        return None
    channels = int(weight.shape[1]) * conv.groups
    set_input_channels(model, channels)
    return channels


def set_input_channels(model: nn.Module, channels: int) -> None:
    """Replace ``model``'s first convolution with one taking ``channels`` input channels, all else the same."""
    found = first_conv(model)
    assert found is not None, "set_input_channels needs a model with a convolution"
    name, conv = found
    replace_module(model, name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                          conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode))


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``name`` inside ``model``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def load_exactly(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str, what: str) -> None:
    """``model.load_state_dict(state_dict)`` with every key and shape matching; otherwise one line naming the
    first missing, unexpected and mis-shaped keys of ``where`` (the file) against ``what`` (the model)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshaped = [f"{key} {tuple(state_dict[key].shape)} vs {tuple(tensor.shape)}" for key, tensor in expected.items()
                 if key in state_dict and tuple(state_dict[key].shape) != tuple(tensor.shape)]
    problems = [f"{label} {', '.join(keys[:NAMED_KEYS])}{' ...' if len(keys) > NAMED_KEYS else ''}"
                for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("mis-shaped keys (file vs model)", misshaped)) if keys]
    if problems:
        raise TeacherCheckpointError(f"teacher weights {where} do not fit {what}: {'; '.join(problems)}")
    model.load_state_dict(state_dict)
