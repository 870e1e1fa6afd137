"""The built-in student families: ``cnn``, ``resnet`` and ``mobilenet``.

They share one skeleton (:class:`StagedNet`): a conv stem, three stages of ``depth`` blocks with widths
``[width, 2 * width, 4 * width]``, stride 2 at the start of stages 2 and 3, global average pooling and a
linear head. Nothing depends on the input's height and width, so the same model runs on 8x8 digits,
28x28 MNIST and 32x32 CIFAR images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from trainers.models._registry import KDModel, register_student

# Expansion of MobileNetV2 blocks; 4 rather than the paper's 6 keeps small students small.
MOBILENET_EXPAND_RATIO = 4

class ConvBNAct(nn.Sequential):
    """3x3 (or ``kernel_size``) convolution, batch norm, activation: the ``cnn`` family's block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        activation: type[nn.Module] = nn.ReLU,
        kernel_size: int = 3,
        groups: int = 1,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            activation(inplace=True),
        )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs plus a shortcut (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection, residual if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        hidden_channels = in_channels * MOBILENET_EXPAND_RATIO
        self.expand = ConvBNAct(in_channels, hidden_channels, activation=nn.ReLU6, kernel_size=1)
        self.depthwise = ConvBNAct(
            hidden_channels, hidden_channels, stride=stride, activation=nn.ReLU6, groups=hidden_channels
        )
        # No activation after the projection: the "linear bottleneck" of MobileNetV2.
        self.project = nn.Sequential(
            nn.Conv2d(hidden_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


BlockBuilder = Callable[[int, int, int], nn.Module]


class StagedNet(KDModel):
    """The student skeleton: stem, three stages of blocks, global average pool, linear head."""

    def __init__(
        self,
        block: BlockBuilder,
        depth: int,
        width: int,
        in_channels: int,
        num_classes: int,
        stem_activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        stage_widths = [width, 2 * width, 4 * width]
        self.stem = ConvBNAct(in_channels, width, activation=stem_activation)
        stages = []
        channels = width
        for stage_index, stage_width in enumerate(stage_widths):
            first_stride = 1 if stage_index == 0 else 2
            blocks = []
            for block_index in range(depth):
                blocks.append(block(channels, stage_width, first_stride if block_index == 0 else 1))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(channels, num_classes)
        _init_weights(self)

    def stem_conv(self) -> nn.Conv2d:
        return self.stem[0]

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        logits = self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        return logits, features


def _init_weights(model: nn.Module) -> None:
    # Same scheme as torchvision's ResNet/MobileNetV2, so students and teachers start alike.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@register_student("cnn")
def cnn(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """Plain conv-bn-relu network."""
    return StagedNet(ConvBNAct, depth, width, in_channels, num_classes)


@register_student("resnet")
def resnet(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """CIFAR-style ResNet of basic blocks (depth 3 at width 16 is ResNet-20)."""
    return StagedNet(BasicBlock, depth, width, in_channels, num_classes)


@register_student("mobilenet")
def mobilenet(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """MobileNetV2-style network of inverted residual blocks behind a conv stem."""
    return StagedNet(InvertedResidual, depth, width, in_channels, num_classes, stem_activation=nn.ReLU6)


STUDENT_FAMILIES: tuple[str, ...] = ("cnn", "resnet", "mobilenet")
