"""Student families a deployment engineer knows, built from torchvision's own classes.

Each family's model is a torchvision instance (``model.net``: ``MobileNetV2``, ``MobileNetV3``,
``ShuffleNetV2``, ``ResNet``, ``EfficientNet``), so an exported student is the standard architecture at
another width and depth. :class:`TorchvisionStudent` wraps it as a :class:`KDModel`: ``forward_features``
runs the torchvision model's own modules in order and returns its logits and one map per stage.

The registry's two knobs, per family (registered with ``default_search=False``: a ``--space`` file names
them; the default search keeps ``cnn``, ``resnet``, ``mobilenet``). Sizes are parameters on 10 classes,
1 input channel, at the corners of the default ranges:


``family``: depth; width; default ranges (depth, width); smallest .. largest.

- ``mobilenet_v2``: inverted-residual blocks kept (of 17); the first conv's channels (``width_mult =
  width / 32``, ``round_nearest=1``, so every width is another model); 1-17, 4-32; 18,030 .. 2,236,106
  (depth 17, width 32: torchvision's MobileNetV2).
- ``mobilenet_v3_small``: blocks kept (of 11); ``width_mult = width / 16`` (16: the standard first conv);
  1-11, 1-16; 4,666 .. 1,527,818 (the standard model).
- ``mobilenet_v3_large``: blocks kept (of 15); ``width_mult = width / 16``; 1-15, 1-16; 5,466 .. 4,214,554.
- ``shufflenet_v2``: ``stages_repeats = [depth, 2 depth, depth]`` (4: the standard 4-8-4); stage widths
  ``[2, 4, 8] x width`` (24: x0.5, 58: x1.0); 1-4, 2-58; 30,012 .. 1,263,422 (ShuffleNetV2 x1.0).
- ``resnet_basic``: blocks per stage, ``[1, 1, 1, 1]``, ResNet-18's ``[2, 2, 2, 2]``, ResNet-34's
  ``[3, 4, 6, 3]`` (``[d] * 4`` beyond); base channels (64: standard); 1-3, 2-64; 5,224 .. 21,283,530.
- ``efficientnet_b0``: depth coefficient ``depth / 4`` (4: B0); width coefficient ``width / 32`` (32: B0's
  first conv); 1-4, 1-32; 14,704 .. 4,019,782 (EfficientNet-B0).

MobileNetV3 and EfficientNet round every channel count to a multiple of 8, at least 8, inside torchvision
(their ``adjust_channels``): at small widths their narrow layers stay at 8 channels while the wider ones,
and MobileNetV3's ``last_channel`` (scaled as torchvision's builder scales it), still shrink. MobileNetV2
keeps torchvision's 1,280-channel last conv below ``width_mult`` 1, and ShuffleNetV2 its 24-channel first
conv and 1,024-channel last conv, as all their standard sizes do: those floor each family's smallest
member. Over each family's default grid, parameters grow strictly with width at every depth and with depth
at every width (``tests/trainers/test_torchvision_students.py``), as the size bound's bisection needs.

Stages: ResNet's ``layer1``-``layer4``; ShuffleNetV2's ``stage2``-``stage4`` and ``conv5``; the
MobileNets and EfficientNet: the last block of each resolution level of the standard model, then the
last 1x1 conv. Input size: torchvision's models downsample 32x (five stride-2 convs or max-pools). Built
for ``input_size`` px, a model keeps the first ``k`` of its downsamplings in forward order, the most with
``input_size // 2**k >= 4`` (8 px: 1, 28 px: 2, 32 px: 3, 64 px: 4, 224 px: 5), and the rest run at
stride 1 (a ResNet block's conv1 and its shortcut together, a ShuffleNetV2 unit's two depthwise convs);
``input_size=None`` keeps torchvision's strides. Parameters never depend on the input size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from trainers.models._registry import KDModel, register_student

# torchvision is imported where a model is built, never with this module: importing it pulls in
# torch._dynamo (about 1.8 s of every process's start, each Ray worker's included) for families that the
# default search never builds.

# The smallest feature map a downsampling may leave, in pixels (see the module docstring).
MIN_FEATURE_PX = 4


@functools.cache
def _block_types() -> tuple[type[nn.Module], ...]:
    """Blocks whose stride-2 convolutions make one downsampling together (e.g. a ResNet block and its shortcut)."""
    from torchvision.models import efficientnet, mobilenetv2, mobilenetv3, resnet, shufflenetv2

    return (resnet.BasicBlock, shufflenetv2.InvertedResidual, mobilenetv2.InvertedResidual,
            mobilenetv3.InvertedResidual, efficientnet.MBConv)


# torchvision's MobileNetV2 table: expansion t, channels c, blocks n, stride s.
_MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                         (6, 160, 3, 2), (6, 320, 1, 1))
_RESNET_PLANS = {1: [1, 1, 1, 1], 2: [2, 2, 2, 2], 3: [3, 4, 6, 3]}


def kept_downsamplings(input_size: int | None, available: int) -> int:
    """How many of a model's ``available`` downsamplings (in forward order) an ``input_size`` px input keeps:
    the most ``k`` with ``input_size // 2**k >= MIN_FEATURE_PX``; all of them for ``None``."""
    if input_size is None:
        return available
    kept = 0
    while kept < available and input_size // 2 ** (kept + 1) >= MIN_FEATURE_PX:
        kept += 1
    return kept


def _is_strided(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return module.stride == (2, 2)
    return isinstance(module, nn.MaxPool2d) and module.stride in (2, (2, 2))


def _downsamplings(module: nn.Module, name: str) -> list[list[str]]:
    """The stride-2 layers under ``module`` in forward order, grouped by the block they downsample."""
    if isinstance(module, _block_types()):
        group = [f"{name}.{child}" for child, layer in module.named_modules() if child and _is_strided(layer)]
        return [group] if group else []
    if _is_strided(module):
        return [[name]]
    groups: list[list[str]] = []
    for child, layer in module.named_children():
        groups += _downsamplings(layer, f"{name}.{child}" if name else child)
    return groups


class TorchvisionStudent(KDModel):
    """A torchvision classifier as a :class:`KDModel`.

    ``body`` names the modules of ``net`` that run in order before the global average pool and
    ``net.<classifier>`` (each family's ``forward`` does exactly that); ``stages`` names those of them whose
    outputs are the stage maps, shallow to deep.
    """

    def __init__(self, net: nn.Module, body: Sequence[str], stages: Sequence[str], classifier: str) -> None:
        super().__init__()
        self.net = net
        self.body, self.stages, self.classifier = list(body), list(stages), classifier
        # Found once, at torchvision's own strides: fit_input_size sets them again for any size.
        self.downsamplings = [group for unit in self.body for group in _downsamplings(net.get_submodule(unit), unit)]

    def fit_input_size(self, input_size: int | None) -> bool:
        kept = kept_downsamplings(input_size, len(self.downsamplings))
        for index, group in enumerate(self.downsamplings):
            stride = 2 if index < kept else 1
            for name in group:
                layer = self.net.get_submodule(name)
                layer.stride = (stride, stride) if isinstance(layer, nn.Conv2d) else stride
        return True

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for name in self.body:
            x = self.net.get_submodule(name)(x)
            if name in self.stages:
                features.append(x)
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.net.get_submodule(self.classifier)(pooled), features


def _new_input_conv(conv: nn.Conv2d, in_channels: int, kaiming: bool = True) -> nn.Conv2d:
    """``conv`` (the network's first) for ``in_channels`` input channels, initialised as torchvision does."""
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    if kaiming:
        nn.init.kaiming_normal_(new.weight, mode="fan_out")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    return new


def _features_student(net: nn.Module, in_channels: int) -> TorchvisionStudent:
    """A MobileNet or EfficientNet (``features``, then a pool and ``classifier``) as a student.

    Its stages end at each resolution level's last unit of ``features`` (a unit followed by one that
    downsamples, or the last block) and at the last 1x1 conv.
    """
    net.features[0][0] = _new_input_conv(net.features[0][0], in_channels)
    units = [f"features.{index}" for index in range(len(net.features))]
    downsamples = [bool(_downsamplings(net.features[index], "")) for index in range(len(net.features))]
    last_block = len(units) - 2
    stages = [units[index] for index in range(1, last_block + 1)
              if index == last_block or downsamples[index + 1]]
    return TorchvisionStudent(net, units, [*stages, units[-1]], "classifier")


@register_student("mobilenet_v2", depth=(1, 17), width=(4, 32), default_search=False)
def mobilenet_v2(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """torchvision's MobileNetV2 at ``width_mult = width / 32`` with its first ``depth`` blocks."""
    from torchvision.models import MobileNetV2

    setting, left = [], depth
    for expansion, channels, blocks, stride in _MOBILENET_V2_SETTING:
        if left > 0:
            setting.append([expansion, channels, min(blocks, left), stride])
            left -= blocks
    net = MobileNetV2(num_classes=num_classes, width_mult=width / 32, inverted_residual_setting=setting,
                      round_nearest=1)
    return _features_student(net, in_channels)


def _mobilenet_v3(arch: str, depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    from torchvision.models import MobileNetV3
    from torchvision.models.mobilenetv3 import _mobilenet_v3_conf

    setting, last_channel = _mobilenet_v3_conf(arch, width_mult=width / 16)
    return _features_student(MobileNetV3(setting[:depth], last_channel, num_classes=num_classes), in_channels)


@register_student("mobilenet_v3_small", depth=(1, 11), width=(1, 16), default_search=False)
def mobilenet_v3_small(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """torchvision's MobileNetV3-Small at ``width_mult = width / 16`` with its first ``depth`` blocks."""
    return _mobilenet_v3("mobilenet_v3_small", depth, width, in_channels, num_classes)


@register_student("mobilenet_v3_large", depth=(1, 15), width=(1, 16), default_search=False)
def mobilenet_v3_large(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """torchvision's MobileNetV3-Large at ``width_mult = width / 16`` with its first ``depth`` blocks."""
    return _mobilenet_v3("mobilenet_v3_large", depth, width, in_channels, num_classes)


@register_student("shufflenet_v2", depth=(1, 4), width=(2, 58), default_search=False)
def shufflenet_v2(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """torchvision's ShuffleNetV2 with ``[depth, 2 depth, depth]`` units and stage widths ``2, 4, 8 x width``."""
    from torchvision.models import ShuffleNetV2

    net = ShuffleNetV2([depth, 2 * depth, depth], [24, 2 * width, 4 * width, 8 * width, 1024], num_classes)
    net.conv1[0] = _new_input_conv(net.conv1[0], in_channels, kaiming=False)  # torchvision keeps torch's init
    stages = ["stage2", "stage3", "stage4", "conv5"]
    return TorchvisionStudent(net, ["conv1", "maxpool", *stages], stages, "fc")


@register_student("resnet_basic", depth=(1, 3), width=(2, 64), default_search=False)
def resnet_basic(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """torchvision's ResNet of basic blocks (depth 2: ResNet-18, 3: ResNet-34) with ``width`` base channels.

    torchvision's constructor fixes 64 base channels; its own ``_make_layer`` builds the layers again from
    ``inplanes = width`` (the 64-channel first build is made on the meta device and thrown away).
    """
    from torchvision.models import ResNet, resnet

    plan = _RESNET_PLANS.get(depth, [depth] * 4)
    with torch.device("meta"):
        net = ResNet(resnet.BasicBlock, plan, num_classes=num_classes)
    net.inplanes = width
    net.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
    net.bn1 = net._norm_layer(width)
    for index, blocks in enumerate(plan):
        layer = net._make_layer(resnet.BasicBlock, width * 2**index, blocks, stride=1 if index == 0 else 2)
        setattr(net, f"layer{index + 1}", layer)
    net.fc = nn.Linear(8 * width, num_classes)
    for module in net.modules():  # torchvision's ResNet initialisation
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    stages = ["layer1", "layer2", "layer3", "layer4"]
    return TorchvisionStudent(net, ["conv1", "bn1", "relu", "maxpool", *stages], stages, "fc")


@register_student("efficientnet_b0", depth=(1, 4), width=(1, 32), default_search=False)
def efficientnet_b0(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel:
    """torchvision's EfficientNet-B0 table scaled by width coefficient ``width / 32`` and depth ``depth / 4``."""
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig

    scaled = {"width_mult": width / 32, "depth_mult": depth / 4}
    setting = [MBConvConfig(1, 3, 1, 32, 16, 1, **scaled), MBConvConfig(6, 3, 2, 16, 24, 2, **scaled),
               MBConvConfig(6, 5, 2, 24, 40, 2, **scaled), MBConvConfig(6, 3, 2, 40, 80, 3, **scaled),
               MBConvConfig(6, 5, 1, 80, 112, 3, **scaled), MBConvConfig(6, 5, 2, 112, 192, 4, **scaled),
               MBConvConfig(6, 3, 1, 192, 320, 1, **scaled)]
    return _features_student(EfficientNet(setting, dropout=0.2, num_classes=num_classes), in_channels)


TORCHVISION_FAMILIES: tuple[str, ...] = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                                         "shufflenet_v2", "resnet_basic", "efficientnet_b0")
