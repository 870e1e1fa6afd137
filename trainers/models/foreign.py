"""A user's own trained teacher behind the interface every kdsearch model has.

:class:`ForeignTeacher` wraps any model that maps images to logits (an ``nn.Module`` of torchvision, timm
or the user's own class, a TorchScript module, a ``torch.export`` program) and gives it what the
distillation loop expects of a teacher:

- the teacher's own view of an image (:class:`TeacherPreprocessing`): the student's normalised batch is
  turned back into pixels, repeated to the channels the model wants, resized to its input size and
  normalised its way. Cached outputs, per augmented view included, are computed through it, so they are
  the teacher's view of the same crop the student sees;
- stage features for the feature losses, taken with forward hooks on the layers the user names. An opaque
  model (TorchScript, ``torch.export``) or one without named layers has none (``provides_features``);
- pickling by recipe: a model read from a file or built by a factory is rebuilt from that recipe in each Ray
  worker, so a class defined in a user's file need not be importable there.

The wrapped model is frozen in eval mode: kdsearch never trains a foreign teacher, and ``torch.export``
programs cannot switch modes at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.models._registry import KDModel


@dataclass(frozen=True)
class TeacherPreprocessing:
    """How the teacher sees a batch the student sees, normalised with the dataset's ``data_mean``/``data_std``.

    ``input_size`` ``(height, width)``: resize to it (bilinear, antialiased), ``None`` keeps the data's size.
    ``mean``/``std``: normalise ``[0, 1]`` pixels the teacher's way (one value per teacher channel, or one for
    all); ``None`` keeps the dataset's normalisation. ``channels``: the teacher's input channels; 1-channel
    data is repeated to 3 for a 3-channel teacher.
    """

    data_mean: tuple[float, ...]
    data_std: tuple[float, ...]
    channels: int
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        data_channels = len(self.data_mean)
        if self.channels != data_channels and not (data_channels == 1 and self.channels == 3):
            raise ValueError(f"the teacher takes {self.channels}-channel images and the data has {data_channels} "
                             "channels; only 1-channel data can be repeated to a 3-channel teacher")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give the teacher's mean and std together")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, self.channels):
                raise ValueError(f"the teacher's {name} has {len(values)} values; give 1 or {self.channels} "
                                 f"(one per channel the teacher takes)")
        if self.std is not None and not all(value > 0 for value in self.std):
            raise ValueError(f"the teacher's std must be positive, got {self.std}")
        if self.input_size is not None and min(self.input_size) < 1:
            raise ValueError(f"the teacher's input size must be positive, got {self.input_size}")

    @property
    def is_identity(self) -> bool:
        """Whether the teacher sees exactly the student's tensors."""
        return self.channels == len(self.data_mean) and self.input_size is None and self.mean is None

    def apply(self, images: Tensor) -> Tensor:
        """``images`` (the dataset's normalisation) as the teacher sees them."""
        if self.is_identity:
            return images
        x = images
        if self.mean is not None:
            x = x * _per_channel(self.data_std, x) + _per_channel(self.data_mean, x)  # back to [0, 1] pixels
        if self.channels != x.shape[1]:
            x = x.expand(-1, self.channels, -1, -1)
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        if self.mean is not None:
            assert self.std is not None
            x = (x - _per_channel(self.mean, x)) / _per_channel(self.std, x)
        return x

    def to_dict(self) -> dict[str, Any]:
        """What ``summary.json`` records: the teacher's input size, channels and normalisation."""
        described = asdict(self)
        described["input_size"] = list(self.input_size) if self.input_size is not None else None
        described["normalisation"] = "teacher" if self.mean is not None else "dataset"
        return described


def _per_channel(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


class NetRecipe(Protocol):
    """How to build a foreign teacher's model again in another process (a Ray worker).

    ``build()`` returns the model; when ``carries_weights`` is false its weights are loaded from the state
    the wrapper pickles with it.
    """

    carries_weights: bool

    def build(self) -> nn.Module: ...


class ForeignTeacher(KDModel):
    """A user's trained model as a kdsearch teacher (see the module docstring).

    ``feature_layers`` are names from ``net.named_modules()`` whose ``(N, C, H, W)`` outputs are the stage
    features, shallow to deep; ``batch_size`` runs the model in chunks of exactly that many images (padding
    the last), for programs exported with a fixed batch size. ``recipe`` rebuilds ``net`` when pickled.
    """

    def __init__(self, net: nn.Module, preprocessing: TeacherPreprocessing, *, description: str,
                 num_classes: int, feature_layers: Sequence[str] = (), opaque: bool = False,
                 batch_size: int | None = None, recipe: NetRecipe | None = None) -> None:
        super().__init__()
        self.net = net
        self.preprocessing = preprocessing
        self.description = description
        self.feature_layers = tuple(feature_layers)
        self.opaque = opaque
        self.batch_size = batch_size
        self.recipe = recipe
        self.provides_features = bool(self.feature_layers)
        self.arch = {"kind": "foreign", "name": description, "family": None,
                     "in_channels": len(preprocessing.data_mean), "num_classes": num_classes}
        # get_submodule raises AttributeError for a name the model lacks (the loader names it to the user first).
        self._taps = [net.get_submodule(name) for name in self.feature_layers]
        if not isinstance(net, torch.fx.GraphModule):  # an exported program keeps the mode it was exported in
            net.eval()
        self.eval()

    def train(self, mode: bool = True) -> ForeignTeacher:
        # Frozen: the wrapped model stays in eval mode whatever its caller asks (an exported program
        # refuses .train() altogether).
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self._run(self.preprocessing.apply(x))

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        if not self.feature_layers:
            raise RuntimeError(f"teacher {self.description} has no feature layers (name them with "
                               "--teacher-features): feature losses cannot use it")
        captured: dict[int, Tensor] = {}
        handles = [tap.register_forward_hook(lambda _module, _inputs, output, index=index:
                                             captured.__setitem__(index, output))
                   for index, tap in enumerate(self._taps)]
        try:
            logits = self.forward(x)
        finally:
            for handle in handles:
                handle.remove()
        return logits, [captured[index] for index in range(len(self._taps))]

    def _run(self, x: Tensor) -> Tensor:
        if self.batch_size is None or len(x) == self.batch_size:
            return logits_of(self.net(x))
        chunks = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start:start + self.batch_size]
            short = self.batch_size - len(chunk)
            if short:
                chunk = torch.cat([chunk, chunk[-1:].expand(short, *chunk.shape[1:])])
            chunks.append(logits_of(self.net(chunk))[:self.batch_size - short])
        return torch.cat(chunks) if chunks else logits_of(self.net(x))

    def __reduce_ex__(self, protocol: Any) -> Any:
        if self.recipe is None:
            return super().__reduce_ex__(protocol)
        weights = None if self.recipe.carries_weights else {
            name: tensor.detach().to("cpu") for name, tensor in self.net.state_dict().items()}
        options = {"description": self.description, "num_classes": self.arch["num_classes"],
                   "feature_layers": self.feature_layers, "opaque": self.opaque, "batch_size": self.batch_size}
        return _rebuild, (self.recipe, weights, self.preprocessing, options)


def _rebuild(recipe: NetRecipe, weights: Mapping[str, Tensor] | None, preprocessing: TeacherPreprocessing,
             options: dict[str, Any]) -> ForeignTeacher:
    net = recipe.build()
    if weights is not None:
        net.load_state_dict(weights)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return ForeignTeacher(net, preprocessing, recipe=recipe, **options)


def logits_of(output: Any) -> Tensor:
    """The logits in a model's output: the tensor itself, a tuple's first tensor, or a mapping's ``logits``."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"the teacher returned {type(output).__name__}, not a logits tensor (or a tuple or mapping "
                    "holding one under 'logits')")

