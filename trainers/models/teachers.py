"""kdsearch's own teachers, trained by kdsearch on the user's data and cached.

The ``-large`` ones are big members of the student families, sized so that one epoch on sklearn digits
takes a few seconds on one CPU core; they can seed students by parameter distillation. ``resnet18`` and
``mobilenet_v2`` are torchvision's architectures with stems for small inputs. A user's own trained model
is a foreign teacher instead (:mod:`trainers.models.foreign`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainers.models._registry import KDModel, register_teacher, student_builder

LARGE_TEACHER_SIZES: dict[str, tuple[int, int]] = {
    "cnn": (3, 32),
    "resnet": (3, 32),
    "mobilenet": (3, 32),
}


def _register_large_teacher(family: str, depth: int, width: int) -> None:
    def build(in_channels: int, num_classes: int) -> KDModel:
        return student_builder(family)(depth, width, in_channels, num_classes)

    build.__name__ = f"{family}_large"
    build.__doc__ = f"{family} student family at depth {depth}, width {width}."
    register_teacher(f"{family}-large", family=family)(build)


def _register_large_teachers() -> None:
    for family, (depth, width) in LARGE_TEACHER_SIZES.items():
        _register_large_teacher(family, depth, width)


_register_large_teachers()


class TorchvisionResNet18(KDModel):
    """torchvision ResNet-18 for small inputs: 3x3 stride-1 stem, no max-pool.

    Stage features are the outputs of ``layer1`` .. ``layer4``.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        # Imported here: torchvision.models costs about a second to import, in every process that imports
        # the registry (each Ray worker), and only these teachers need it.
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        # The ImageNet stem (7x7 stride 2 + max-pool) would shrink an 8x8 digit to 2x2 before layer1.
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        self.net = net

    def stem_conv(self) -> nn.Conv2d:
        return self.net.conv1

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        net = self.net
        x = net.relu(net.bn1(net.conv1(x)))
        features = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            features.append(x)
        logits = net.fc(torch.flatten(net.avgpool(x), 1))
        return logits, features


class TorchvisionMobileNetV2(KDModel):
    """torchvision MobileNetV2 for small inputs: stride-1 first conv.

    Stage features are the last block at each resolution plus the last inverted-residual block
    (torchvision ``features[1, 3, 6, 13, 17]``: 16, 24, 32, 96, 320 channels, as timm's
    ``features_only``); the final 1x1 conv to 1280 channels feeds the classifier only.
    """

    STAGE_ENDS = (1, 3, 6, 13, 17)

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2  # imported here, as in TorchvisionResNet18
        from torchvision.ops.misc import Conv2dNormActivation

        net = mobilenet_v2(weights=None, num_classes=num_classes)
        first_channels = net.features[0][0].out_channels
        net.features[0] = Conv2dNormActivation(
            in_channels, first_channels, stride=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6
        )
        nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
        self.net = net

    def stem_conv(self) -> nn.Conv2d:
        return self.net.features[0][0]

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for index, layer in enumerate(self.net.features):
            x = layer(x)
            if index in self.STAGE_ENDS:
                features.append(x)
        logits = self.net.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        return logits, features


@register_teacher("resnet18")
def resnet18(in_channels: int, num_classes: int) -> KDModel:
    """torchvision ResNet-18 (random init) adapted to small inputs."""
    return TorchvisionResNet18(in_channels, num_classes)


@register_teacher("mobilenet_v2")
def mobilenet_v2(in_channels: int, num_classes: int) -> KDModel:
    """torchvision MobileNetV2 (random init) adapted to small inputs."""
    return TorchvisionMobileNetV2(in_channels, num_classes)
