"""The CSPNet family: CSPDarknet53, CSPResNet50 and CSPResNeXt50 (Wang et al. 2019, arXiv:1911.11929).

A Cross Stage Partial stage (``CSPStage``) optionally downsamples its input with a stride-2 3x3 conv (the
base layer), widens it with a 1x1 conv and splits the channels in two halves. Part 1 crosses the stage
untouched; part 2 runs through the residual blocks (darknet, ResNet bottleneck or ResNeXt grouped bottleneck).
The two are then concatenated. Where the 1x1 transitions sit is the paper's Fig. 3, chosen by ``fusion``:

* ``"both"`` (CSPNet, Fig. 3b): a transition on part 2 after the blocks, and one after the concatenation.
* ``"first"`` (fusion first, Fig. 3c): concatenate the blocks' output with part 1, then one transition.
* ``"last"`` (fusion last, Fig. 3d): a transition on part 2, then concatenate; nothing after. The stage then
  outputs the expanded width (both halves), which is twice ``out_channels`` where ``expand_ratio`` is 2.

The variants' widths, depths and ratios follow timm's ``cspnet.py`` (R. Wightman), which reproduces the
paper's parameter counts; the widening 1x1 conv + split is equivalent (same weights count and MACs) to the two
parallel 1x1 convs of the darknet cfgs.

Interface for detectors (``yolo.py`` uses it)::

    backbone = cspdarknet53_backbone(act="mish", width=1.0, depth=1.0)   # a CSPBackbone, no classifier
    p3, p4, p5 = backbone(images)             # strides 8, 16, 32
    backbone.out_channels                     # [256, 512, 1024] at width 1.0, same order
    backbone.out_strides                      # [8, 16, 32]
    backbone.forward_features(images)         # every stage's output, strides 2, 4, 8, 16, 32
    backbone.feature_channels, backbone.feature_strides   # one entry per stage, same order

The classifiers (``create_model("cspdarknet53", num_classes=..., fusion=..., act=...)``) return logits
(N, num_classes) from ``forward`` and expose the same ``forward_features``, ``feature_channels`` and
``feature_strides``.
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch
from torch import nn

from edgecsp.errors import InputError
from edgecsp.models.layers import ConvBNAct, make_activation
from edgecsp.models.registry import register_model

FUSIONS = ("both", "first", "last")
BLOCKS = ("dark", "bottleneck")


class CSPStageConfig(NamedTuple):
    """One cross stage partial stage; channel counts are absolute, ratios are relative to ``out_channels``."""

    out_channels: int
    depth: int  # number of residual blocks on part 2
    stride: int = 2  # 2: the base layer is a stride-2 3x3 conv; 1: no base layer
    block: str = "dark"  # "dark" (1x1 -> 3x3, add) or "bottleneck" (1x1 -> 3x3 -> 1x1, add, act)
    groups: int = 1  # groups of the 3x3 convs (ResNeXt cardinality), base layer included as in ResNeXt
    expand_ratio: float = 1.0  # width after the widening 1x1 conv, before the split
    bottle_ratio: float = 1.0  # width inside a block, relative to the block's output
    block_ratio: float = 1.0  # width of the blocks' output
    down_growth: bool = False  # base layer goes straight to out_channels (darknet) instead of keeping width
    cross_linear: bool = False  # no activation after the widening conv (the ResNets' linear projection)
    fusion: str = "both"  # "both" | "first" | "last", see the module docstring


class CSPNetConfig(NamedTuple):
    """A whole network: stem, stages, activation."""

    stem_channels: int
    stem_kernel: int
    stem_stride: int  # stride of the stem conv
    stem_pool: bool  # a stride-2 3x3 max pool after the stem conv (the ResNets)
    stages: Tuple[CSPStageConfig, ...]
    act: str  # a name known to layers.make_activation


# The paper's three ImageNet backbones; numbers as in timm's model_cfgs, which match the paper's table.
CSPNET_VARIANTS = {
    "cspdarknet53": CSPNetConfig(
        stem_channels=32, stem_kernel=3, stem_stride=1, stem_pool=False, act="leaky",
        stages=(CSPStageConfig(64, 1, expand_ratio=2.0, bottle_ratio=0.5, down_growth=True),)
        + tuple(CSPStageConfig(c, d, block_ratio=0.5, down_growth=True)
                for c, d in ((128, 2), (256, 8), (512, 8), (1024, 4)))),
    "cspresnet50": CSPNetConfig(
        stem_channels=64, stem_kernel=7, stem_stride=2, stem_pool=True, act="relu",
        stages=tuple(CSPStageConfig(c, d, stride=s, block="bottleneck", expand_ratio=2.0, bottle_ratio=0.5,
                                    cross_linear=True)
                     for c, d, s in ((128, 3, 1), (256, 3, 2), (512, 5, 2), (1024, 2, 2)))),
    "cspresnext50": CSPNetConfig(
        stem_channels=64, stem_kernel=7, stem_stride=2, stem_pool=True, act="relu",
        stages=tuple(CSPStageConfig(c, d, stride=s, block="bottleneck", groups=32, block_ratio=0.5,
                                    cross_linear=True)
                     for c, d, s in ((256, 3, 1), (512, 3, 2), (1024, 5, 2), (2048, 2, 2)))),
}


def _make_divisible(channels, divisor=8):
    """Round a scaled width to a multiple of ``divisor`` without losing more than 10% of it."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def scale_config(config, width=1.0, depth=1.0):
    # type: (CSPNetConfig, float, float) -> CSPNetConfig
    """Scale every width by ``width`` (multiples of 8) and every stage depth by ``depth`` (at least 1 block)."""
    if width <= 0 or depth <= 0:
        raise InputError("width and depth multipliers must be positive, got width={} depth={}".format(width, depth))
    stages = tuple(stage._replace(out_channels=_make_divisible(stage.out_channels * width),
                                  depth=max(1, int(round(stage.depth * depth))))
                   for stage in config.stages)
    return config._replace(stem_channels=_make_divisible(config.stem_channels * width), stages=stages)


def with_fusion(config, fusion):
    # type: (CSPNetConfig, str) -> CSPNetConfig
    """The same network with every stage using ``fusion`` ("both", "first" or "last")."""
    if fusion not in FUSIONS:
        raise InputError("unknown fusion {!r}: choose one of {}".format(fusion, ", ".join(FUSIONS)))
    return config._replace(stages=tuple(stage._replace(fusion=fusion) for stage in config.stages))


class DarkBlock(nn.Module):
    """Darknet residual block: 1x1 squeeze, 3x3 back to the input width, identity shortcut (no act after)."""

    def __init__(self, channels, bottle_ratio, groups, act):
        super().__init__()
        mid = int(round(channels * bottle_ratio))
        self.conv1 = ConvBNAct(channels, mid, 1, act=act)
        self.conv2 = ConvBNAct(mid, channels, 3, groups=groups, act=act)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class BottleneckBlock(nn.Module):
    """ResNet bottleneck (ResNeXt with groups > 1): 1x1, 3x3, linear 1x1, add, then the activation."""

    def __init__(self, channels, bottle_ratio, groups, act):
        super().__init__()
        mid = int(round(channels * bottle_ratio))
        self.conv1 = ConvBNAct(channels, mid, 1, act=act)
        self.conv2 = ConvBNAct(mid, mid, 3, groups=groups, act=act)
        self.conv3 = ConvBNAct(mid, channels, 1, act="linear")
        self.act = make_activation(act)

    def forward(self, x):
        return self.act(x + self.conv3(self.conv2(self.conv1(x))))


_BLOCK_TYPES = {"dark": DarkBlock, "bottleneck": BottleneckBlock}


class CSPStage(nn.Module):
    """A cross stage partial stage built from a ``CSPStageConfig``; ``out_channels`` is its real output width."""

    def __init__(self, in_channels, config, act):
        super().__init__()
        if config.fusion not in FUSIONS:
            raise InputError("unknown fusion {!r}: choose one of {}".format(config.fusion, ", ".join(FUSIONS)))
        if config.block not in _BLOCK_TYPES:
            raise ValueError("unknown block {!r}; known: {}".format(config.block, ", ".join(BLOCKS)))
        out = config.out_channels
        expanded = int(round(out * config.expand_ratio))
        block_width = int(round(out * config.block_ratio))
        if expanded % 2:
            raise ValueError("expanded width {} cannot be split in two halves".format(expanded))
        self.half = expanded // 2
        if block_width != self.half:
            # the blocks are residual without projection shortcuts: their input and output widths must agree
            raise ValueError("blocks need input width {} == output width {}".format(self.half, block_width))

        if config.stride != 1:
            down = out if config.down_growth else in_channels
            self.downsample = ConvBNAct(in_channels, down, 3, config.stride, groups=config.groups, act=act)
            in_channels = down
        else:
            self.downsample = nn.Identity()
        self.expand = ConvBNAct(in_channels, expanded, 1, act="linear" if config.cross_linear else act)
        block_type = _BLOCK_TYPES[config.block]
        self.blocks = nn.Sequential(*[block_type(block_width, config.bottle_ratio, config.groups, act)
                                      for _ in range(config.depth)])
        if config.fusion == "first":
            self.partial_transition = nn.Identity()
            self.fusion_transition = ConvBNAct(self.half + block_width, out, 1, act=act)
            self.out_channels = out
        else:
            self.partial_transition = ConvBNAct(block_width, self.half, 1, act=act)
            if config.fusion == "both":
                self.fusion_transition = ConvBNAct(expanded, out, 1, act=act)
                self.out_channels = out
            else:  # "last": the concatenation is the stage's output
                self.fusion_transition = nn.Identity()
                self.out_channels = expanded
        self.stride = config.stride

    def forward(self, x):
        x = self.expand(self.downsample(x))
        cross, dense = x.split([self.half, self.half], dim=1)
        dense = self.partial_transition(self.blocks(dense))
        return self.fusion_transition(torch.cat([cross, dense], dim=1))


class CSPBackbone(nn.Module):
    """Stem + CSP stages, no classifier. ``forward`` returns the maps at ``out_indices`` (default: last three).

    Attributes: ``feature_channels`` / ``feature_strides`` (one per stage), ``out_channels`` / ``out_strides``
    (those of ``out_indices``, in order).
    """

    def __init__(self, config, in_channels=3, out_indices=(-3, -2, -1)):
        super().__init__()
        act = config.act
        stem = [ConvBNAct(in_channels, config.stem_channels, config.stem_kernel, config.stem_stride, act=act)]
        stride = config.stem_stride
        if config.stem_pool:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            stride *= 2
        self.stem = nn.Sequential(*stem)

        channels = config.stem_channels
        stages = []  # type: List[CSPStage]
        self.feature_channels = []  # type: List[int]
        self.feature_strides = []  # type: List[int]
        for stage_config in config.stages:
            stage = CSPStage(channels, stage_config, act)
            channels = stage.out_channels
            stride *= stage_config.stride
            stages.append(stage)
            self.feature_channels.append(channels)
            self.feature_strides.append(stride)
        self.stages = nn.Sequential(*stages)

        num_stages = len(stages)
        if any(not -num_stages <= i < num_stages for i in out_indices):
            raise InputError("out_indices {} out of range for {} stages".format(tuple(out_indices), num_stages))
        self.out_indices = [i % num_stages for i in out_indices]
        self.out_channels = [self.feature_channels[i] for i in self.out_indices]
        self.out_strides = [self.feature_strides[i] for i in self.out_indices]
        self.config = config
        _init_weights(self)

    def forward_features(self, x):
        """Every stage's output, in order (strides ``feature_strides``)."""
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward(self, x):
        features = self.forward_features(x)
        return [features[i] for i in self.out_indices]


class CSPClassifier(nn.Module):
    """A CSP backbone with a global-average-pool + fully connected head; ``forward`` returns logits."""

    def __init__(self, config, num_classes=1000, in_channels=3):
        super().__init__()
        if num_classes < 1:
            raise InputError("num_classes must be at least 1, got {}".format(num_classes))
        self.backbone = CSPBackbone(config, in_channels)
        self.num_classes = num_classes
        self.num_features = self.backbone.feature_channels[-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    @property
    def feature_channels(self):
        # type: () -> List[int]
        return self.backbone.feature_channels

    @property
    def feature_strides(self):
        # type: () -> List[int]
        return self.backbone.feature_strides

    def forward_features(self, x):
        """Every stage's output, in order (see ``feature_channels`` and ``feature_strides``)."""
        return self.backbone.forward_features(x)

    def forward(self, x):
        x = self.backbone.stages(self.backbone.stem(x))  # only the last map is needed: skip the list
        return self.fc(torch.flatten(self.pool(x), 1))


def _init_weights(module):
    # He init for ReLU-family nets (as torchvision's ResNets); BatchNorm keeps its (1, 0) default
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _variant(name, fusion, act):
    # type: (str, str, str) -> CSPNetConfig
    config = with_fusion(CSPNET_VARIANTS[name], fusion)
    return config._replace(act=act) if act else config


@register_model(task="classify", input_size=(256, 256), paper_params_m=27.61,
                description="CSPDarknet53 ImageNet classifier (CSPNet paper), LeakyReLU")
def cspdarknet53(num_classes=1000, fusion="both", act=None, in_channels=3):
    """CSPDarknet53 classifier; ``act`` overrides the paper's LeakyReLU (e.g. "mish")."""
    return CSPClassifier(_variant("cspdarknet53", fusion, act), num_classes, in_channels)


@register_model(task="classify", input_size=(224, 224), paper_params_m=21.57,
                description="CSPResNet50 ImageNet classifier (CSPNet paper), ReLU")
def cspresnet50(num_classes=1000, fusion="both", act=None, in_channels=3):
    """CSPResNet50 classifier (ResNet-50 bottlenecks in CSP stages)."""
    return CSPClassifier(_variant("cspresnet50", fusion, act), num_classes, in_channels)


@register_model(task="classify", input_size=(224, 224), paper_params_m=20.50,
                description="CSPResNeXt50 (32 groups) ImageNet classifier (CSPNet paper), ReLU")
def cspresnext50(num_classes=1000, fusion="both", act=None, in_channels=3):
    """CSPResNeXt50 classifier (32-group bottlenecks in CSP stages)."""
    return CSPClassifier(_variant("cspresnext50", fusion, act), num_classes, in_channels)


def cspdarknet53_backbone(act="mish", width=1.0, depth=1.0, fusion="both", in_channels=3,
                          out_indices=(-3, -2, -1)):
    # type: (str, float, float, str, int, Sequence[int]) -> CSPBackbone
    """CSPDarknet53 without classifier for detectors (YOLOv4-CSP uses Mish).

    ``forward`` returns the stride 8, 16 and 32 maps; their widths are ``out_channels`` ([256, 512, 1024] at
    width 1.0). ``width`` scales every width (multiples of 8), ``depth`` every stage's block count.
    """
    config = scale_config(_variant("cspdarknet53", fusion, act), width, depth)
    return CSPBackbone(config, in_channels, out_indices)
