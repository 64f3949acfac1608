"""CSP YOLO detectors: YOLOv4-CSP (CSPDarknet53 + SPP-CSP + CSP-PAN, Mish, 3 heads) and a YOLOv4-tiny-style
CSP detector (LeakyReLU, 2 heads) with the CSPNet paper's EFM neck as an option.

Every detector is a ``YoloDetector``: ``forward(x)`` returns one raw head tensor per stride, shaped
``(N, A * (5 + C), H, W)`` (no sigmoid, no decode: the runtime decodes, see ``edgecsp/runtime/meta.py``), and
the attributes ``names``, ``strides``, ``anchors`` (per head, input pixels), ``scale_x_y``, ``new_coords`` and
``input_size`` describe how to decode them. Models do not know how they are exported.
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch
from torch import nn

from edgecsp.models.layers import ConvBNAct, make_activation
from edgecsp.models.registry import register_model

COCO80 = tuple("class{}".format(i) for i in range(80))  # placeholder names for an untrained 80-class model
SHAPES_NAMES = ("circle", "square", "triangle", "star", "cross")

# anchors (w, h) in input pixels, per head, small stride first
YOLOV4_CSP_ANCHORS = (((12, 16), (19, 36), (40, 28)), ((36, 75), (76, 55), (72, 146)),
                      ((142, 110), (192, 243), (459, 401)))
YOLOV4_TINY_ANCHORS = (((23, 27), (37, 58), (81, 82)), ((81, 82), (135, 169), (344, 319)))
# the demo model's anchors, fitted to the "shapes" data at 256x256 (objects 6-40 % of the image side)
SHAPES_ANCHORS = (((14, 14), (22, 22), (32, 32)), ((46, 46), (66, 66), (96, 96)))


class HeadSpec(NamedTuple):
    stride: int
    anchors: Tuple[Tuple[float, float], ...]


class YoloDetector(nn.Module):
    """Base of the detectors: a feature network plus one 1x1 prediction conv per head."""

    def __init__(self, head_channels: Sequence[int], heads: Sequence[HeadSpec], names: Sequence[str],
                 input_size: Tuple[int, int], scale_x_y: float, new_coords: bool):
        super().__init__()
        self.names = list(names)
        self.strides = [h.stride for h in heads]
        self.anchors = [[tuple(a) for a in h.anchors] for h in heads]
        self.scale_x_y = float(scale_x_y)
        self.new_coords = bool(new_coords)
        self.input_size = tuple(input_size)
        outs = [len(h.anchors) * (5 + len(self.names)) for h in heads]
        self.predict = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(head_channels, outs))
        self._init_prediction_bias()

    def _init_prediction_bias(self):
        # objectness prior ~ 1 object per 640 px^2 cell area, class prior 1/C (YOLOv5's trick; speeds training)
        import math
        c = len(self.names)
        for conv, stride, anchors in zip(self.predict, self.strides, self.anchors):
            b = conv.bias.detach().view(len(anchors), -1)
            b[:, 4] = math.log(8.0 / (640.0 / stride) ** 2)
            b[:, 5:] = math.log(0.6 / max(c - 0.99, 1.0))
            conv.bias = nn.Parameter(b.view(-1))

    def neck_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x):
        feats = self.neck_features(x)
        return tuple(p(f) for p, f in zip(self.predict, feats))


# ----------------------------------------------------------------------------------------------------------
# YOLOv4-tiny style CSP detector


class TinyCSPBlock(nn.Module):
    """yolov4-tiny's CSP block: conv, keep half the channels through two convs, fuse, concat with the input.

    The channel split (darknet ``[route] groups=2 group_id=1``) exports as Slice, which TensorRT 8.2 parses.
    """

    def __init__(self, channels: int, act: str):
        super().__init__()
        half = channels // 2
        self.conv_in = ConvBNAct(channels, channels, 3, act=act)
        self.conv_a = ConvBNAct(half, half, 3, act=act)
        self.conv_b = ConvBNAct(half, half, 3, act=act)
        self.fuse = ConvBNAct(channels, channels, 1, act=act)
        self.half = half

    def forward(self, x):
        base = self.conv_in(x)
        part = base[:, self.half:]
        a = self.conv_a(part)
        b = self.conv_b(a)
        fused = self.fuse(torch.cat([b, a], 1))
        return torch.cat([base, fused], 1), fused


class ChannelMaxout(nn.Module):
    """Maxout over channel groups: the EFM's cheap compression of concatenated pyramid features."""

    def __init__(self, pieces: int = 2):
        super().__init__()
        self.pieces = pieces

    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, self.pieces, c // self.pieces, h, w).max(dim=1)[0]


class EFMNeck(nn.Module):
    """Exact Fusion Model (CSPNet paper, Sec. 3.2): each head sees its own pyramid level plus the neighbouring
    levels resized to it (the field of view that matches its anchors), compressed with maxout."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], act: str):
        super().__init__()
        self.fuse = nn.ModuleList()
        self.refine = nn.ModuleList()
        for i, out_c in enumerate(out_channels):
            neighbours = [j for j in (i - 1, i, i + 1) if 0 <= j < len(in_channels)]
            cat_c = sum(in_channels[j] for j in neighbours)
            self.fuse.append(ConvBNAct(cat_c, 2 * out_c, 1, act=act))
            self.refine.append(ConvBNAct(out_c, out_c, 3, act=act))
        self.maxout = ChannelMaxout(2)
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, feats):  # feats ordered fine (small stride) to coarse
        outs = []
        for i, (fuse, refine) in enumerate(zip(self.fuse, self.refine)):
            parts = []
            if i > 0:
                parts.append(self.pool(feats[i - 1]))
            parts.append(feats[i])
            if i + 1 < len(feats):
                parts.append(self.up(feats[i + 1]))
            outs.append(refine(self.maxout(fuse(torch.cat(parts, 1)))))
        return outs


class CSPTinyDetector(YoloDetector):
    """YOLOv4-tiny-style CSP detector: stride-16 and stride-32 heads, FPN-like neck or EFM."""

    def __init__(self, num_classes=80, names=None, width=1.0, act="leaky", neck="fpn", anchors=YOLOV4_TINY_ANCHORS,
                 input_size=(416, 416), scale_x_y=1.05, new_coords=False):
        def ch(c):
            return max(8, int(round(c * width / 8)) * 8)

        names = list(names) if names else list(COCO80[:num_classes]) if num_classes <= 80 else \
            ["class{}".format(i) for i in range(num_classes)]
        c1, c2, c3, c4 = ch(32), ch(64), ch(128), ch(256)
        if neck == "fpn":
            head_channels = [ch(256), ch(512)]
        elif neck == "efm":
            head_channels = [ch(256), ch(512)]
        else:
            raise ValueError("neck must be 'fpn' or 'efm', not {!r}".format(neck))
        heads = [HeadSpec(16, tuple(anchors[0])), HeadSpec(32, tuple(anchors[1]))]
        super().__init__(head_channels, heads, names, input_size, scale_x_y, new_coords)
        self.neck_kind = neck
        self.stem = nn.Sequential(ConvBNAct(3, c1, 3, 2, act=act), ConvBNAct(c1, c2, 3, 2, act=act))
        self.block1 = TinyCSPBlock(c2, act)
        self.block2 = TinyCSPBlock(c3, act)
        self.block3 = TinyCSPBlock(c4, act)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv5 = ConvBNAct(2 * c4, 2 * c4, 3, act=act)  # stride 32
        if neck == "fpn":
            self.lateral = ConvBNAct(2 * c4, c4, 1, act=act)
            self.head32 = ConvBNAct(c4, 2 * c4, 3, act=act)
            self.reduce = ConvBNAct(c4, c3, 1, act=act)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.head16 = ConvBNAct(c3 + c4, c4, 3, act=act)
        else:
            self.efm = EFMNeck([c4, 2 * c4], head_channels, act)

    def neck_features(self, x):
        x = self.stem(x)
        x, _ = self.block1(x)
        x, _ = self.block2(self.pool(x))
        x, p4 = self.block3(self.pool(x))  # p4: stride 16, c4 channels
        p5 = self.conv5(self.pool(x))  # stride 32
        if self.neck_kind == "efm":
            return self.efm([p4, p5])
        lat = self.lateral(p5)
        out32 = self.head32(lat)
        out16 = self.head16(torch.cat([self.up(self.reduce(lat)), p4], 1))
        return [out16, out32]


# ----------------------------------------------------------------------------------------------------------
# YOLOv4-CSP (Scaled-YOLOv4's CSP-ized YOLOv4)


class Bottleneck(nn.Module):
    def __init__(self, c: int, act: str, shortcut: bool):
        super().__init__()
        self.cv1 = ConvBNAct(c, c, 1, act=act)
        self.cv2 = ConvBNAct(c, c, 3, act=act)
        self.shortcut = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class CSPPANBlock(nn.Module):
    """The neck's CSP block (Scaled-YOLOv4 ``BottleneckCSP2``): split by two 1x1 paths, plain bottlenecks on
    one, concatenate, BN + activation, transition."""

    def __init__(self, c_in: int, c_out: int, depth: int, act: str):
        super().__init__()
        self.cv1 = ConvBNAct(c_in, c_out, 1, act=act)
        self.blocks = nn.Sequential(*[Bottleneck(c_out, act, shortcut=False) for _ in range(depth)])
        self.cv2 = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * c_out, eps=1e-5, momentum=0.03)
        self.act = make_activation(act)
        self.cv3 = ConvBNAct(2 * c_out, c_out, 1, act=act)

    def forward(self, x):
        x1 = self.cv1(x)
        return self.cv3(self.act(self.bn(torch.cat([self.blocks(x1), self.cv2(x1)], 1))))


class SPPCSP(nn.Module):
    """CSP-ized spatial pyramid pooling (max-pool 5/9/13, stride 1, 'same' padding)."""

    def __init__(self, c_in: int, c_out: int, act: str, kernels=(5, 9, 13)):
        super().__init__()
        self.cv1 = ConvBNAct(c_in, c_out, 1, act=act)
        self.cv2 = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.cv3 = ConvBNAct(c_out, c_out, 3, act=act)
        self.cv4 = ConvBNAct(c_out, c_out, 1, act=act)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.cv5 = ConvBNAct(c_out * (len(kernels) + 1), c_out, 1, act=act)
        self.cv6 = ConvBNAct(c_out, c_out, 3, act=act)
        self.bn = nn.BatchNorm2d(2 * c_out, eps=1e-5, momentum=0.03)
        self.act = make_activation(act)
        self.cv7 = ConvBNAct(2 * c_out, c_out, 1, act=act)

    def forward(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [p(x1) for p in self.pools], 1)))
        return self.cv7(self.act(self.bn(torch.cat([y1, self.cv2(x)], 1))))


class YoloV4CSP(YoloDetector):
    """CSPDarknet53 (Mish) + SPP-CSP + CSP-PAN + heads at strides 8/16/32, ``new_coords`` decoding."""

    def __init__(self, num_classes=80, names=None, width=1.0, depth=1.0, act="mish",
                 anchors=YOLOV4_CSP_ANCHORS, input_size=(512, 512)):
        from edgecsp.models.cspnet import cspdarknet53_backbone

        names = list(names) if names else ["class{}".format(i) for i in range(num_classes)]
        backbone = cspdarknet53_backbone(act=act, width=width, depth=depth)
        c3, c4, c5 = backbone.out_channels[-3:]
        n = max(1, int(round(2 * depth)))
        h3, h4, h5 = c3, c4, c5  # head conv widths (256, 512, 1024 at width 1)
        heads = [HeadSpec(8, tuple(anchors[0])), HeadSpec(16, tuple(anchors[1])), HeadSpec(32, tuple(anchors[2]))]
        super().__init__([h3, h4, h5], heads, names, input_size, scale_x_y=2.0, new_coords=True)
        self.backbone = backbone
        m3, m4, m5 = c3 // 2, c4 // 2, c5 // 2  # neck widths (128, 256, 512)
        self.spp = SPPCSP(c5, m5, act)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce5 = ConvBNAct(m5, m4, 1, act=act)
        self.lateral4 = ConvBNAct(c4, m4, 1, act=act)
        self.csp4_up = CSPPANBlock(2 * m4, m4, n, act)
        self.reduce4 = ConvBNAct(m4, m3, 1, act=act)
        self.lateral3 = ConvBNAct(c3, m3, 1, act=act)
        self.csp3 = CSPPANBlock(2 * m3, m3, n, act)
        self.out3 = ConvBNAct(m3, h3, 3, act=act)
        self.down3 = ConvBNAct(m3, m4, 3, 2, act=act)
        self.csp4_down = CSPPANBlock(2 * m4, m4, n, act)
        self.out4 = ConvBNAct(m4, h4, 3, act=act)
        self.down4 = ConvBNAct(m4, m5, 3, 2, act=act)
        self.csp5 = CSPPANBlock(2 * m5, m5, n, act)
        self.out5 = ConvBNAct(m5, h5, 3, act=act)

    def neck_features(self, x):
        p3, p4, p5 = self.backbone.forward_features(x)[-3:]
        s5 = self.spp(p5)
        t4 = self.csp4_up(torch.cat([self.lateral4(p4), self.up(self.reduce5(s5))], 1))
        t3 = self.csp3(torch.cat([self.lateral3(p3), self.up(self.reduce4(t4))], 1))
        d4 = self.csp4_down(torch.cat([self.down3(t3), t4], 1))
        d5 = self.csp5(torch.cat([self.down4(d4), s5], 1))
        return [self.out3(t3), self.out4(d4), self.out5(d5)]


# ----------------------------------------------------------------------------------------------------------
# the table of named variants


@register_model("detect", (512, 512), "YOLOv4-CSP: CSPDarknet53-Mish + SPP-CSP + CSP-PAN, 3 heads (80 classes)",
                paper_params_m=52.9)  # Scaled-YOLOv4, Table 8
def yolov4_csp(**kwargs):
    return YoloV4CSP(**kwargs)


@register_model("detect", (416, 416), "YOLOv4-tiny-style CSP detector, LeakyReLU, 2 heads (80 classes)",
                paper_params_m=6.06)  # darknet's yolov4-tiny.cfg
def yolov4_tiny_csp(**kwargs):
    return CSPTinyDetector(**kwargs)


@register_model("detect", (416, 416), "YOLOv4-tiny-style CSP detector with the CSPNet paper's EFM neck")
def yolov4_tiny_csp_efm(**kwargs):
    kwargs.setdefault("neck", "efm")
    return CSPTinyDetector(**kwargs)


@register_model("detect", (256, 256), "the demo model: tiny CSP detector at width 0.5 for the 5 'shapes' classes")
def shapes_tiny_csp(**kwargs):
    kwargs.setdefault("names", SHAPES_NAMES)
    kwargs.setdefault("width", 0.5)
    kwargs.setdefault("anchors", SHAPES_ANCHORS)
    kwargs.setdefault("input_size", (256, 256))
    kwargs.setdefault("scale_x_y", 2.0)
    kwargs.setdefault("new_coords", True)
    return CSPTinyDetector(**kwargs)
