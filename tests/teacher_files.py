"""Real teacher files of every kind kdsearch reads, made in the test's own folder (shared by trainers and tuning tests).

The models are small and mostly untrained: these tests check that each kind loads, runs in Ray workers and is
evaluated honestly, not that it teaches well (``trained_32px_teacher`` is the one that learns).
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from torch import nn

from trainers import TensorSplits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A user's own class, in a package folder (``teacherpkg.nets:build_model``) and as a single file.
NETS_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    class SmallNet(nn.Module):
        def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.deep = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Linear(16, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.deep(self.body(x)).mean(dim=(2, 3)))


    def build_model(num_classes: int, in_channels: int) -> nn.Module:
        return SmallNet(num_classes, in_channels)
''')


def SmallNetLike(num_classes: int, in_channels: int) -> nn.Module:  # noqa: N802 - stands for the class above
    """The class of ``NETS_SOURCE``, built from that source here (for a state_dict its factory loads)."""
    namespace: dict[str, object] = {}
    exec(compile(NETS_SOURCE, "<nets>", "exec"), namespace)  # noqa: S102 - this file's own source
    return namespace["SmallNet"](num_classes, in_channels)  # type: ignore[operator]


def write_package(root: Path) -> Path:
    """``root/teacherpkg/nets.py`` (importable once ``root`` is on ``sys.path``); returns ``root``."""
    (root / "teacherpkg").mkdir(parents=True, exist_ok=True)
    (root / "teacherpkg" / "__init__.py").write_text("")
    (root / "teacherpkg" / "nets.py").write_text(NETS_SOURCE)
    return root


def write_module_file(path: Path) -> Path:
    path.write_text(NETS_SOURCE)
    return path


def torchvision_resnet18_one_channel(classes: int = 10) -> nn.Module:
    """torchvision's resnet18 with its conv1 changed to take 1-channel images, as a user finetuning it would."""
    model = torchvision.models.resnet18(num_classes=classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model.eval()


class RGBNet(nn.Module):
    """A 3-channel teacher for other input sizes (TorchScript, torch.export and the 32 px teacher)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Linear(32 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 4), 1))


def save_torchscript(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():  # torch.jit is deprecated for writing; users still bring such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path


def save_exported(model: nn.Module, path: Path, example: torch.Tensor) -> Path:
    torch.export.save(torch.export.export(model.eval(), (example,)), str(path))
    return path


def teacher_view(images: torch.Tensor, data: TensorSplits, size: int) -> torch.Tensor:
    """The test's own preprocessing of normalised ``images`` for an ImageNet-style 3-channel teacher at ``size``."""
    pixels = images * torch.tensor(data.std).view(1, -1, 1, 1) + torch.tensor(data.mean).view(1, -1, 1, 1)
    pixels = TF.resize(pixels.repeat(1, 3, 1, 1), [size, size], antialias=True)
    return TF.normalize(pixels, list(IMAGENET_MEAN), list(IMAGENET_STD))


def trained_32px_teacher(data: TensorSplits, epochs: int = 10) -> nn.Module:
    """An RGBNet trained on ``data`` seen at 32 px with ImageNet mean/std: a teacher from another pipeline."""
    torch.manual_seed(0)
    model = RGBNet(data.info.num_classes)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    inputs = teacher_view(data.train_x[:], data, 32)
    for _ in range(epochs):
        for start in range(0, len(inputs), 64):
            loss = nn.functional.cross_entropy(model(inputs[start:start + 64]), data.train_y[start:start + 64])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()
