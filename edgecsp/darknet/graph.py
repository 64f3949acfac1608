"""Plan a darknet network from its cfg: resolve every layer's inputs and output shape, check every option.

The plan is what both the weights reader (how many floats each layer owns) and the PyTorch builder use, so it
holds everything either needs and nothing framework-specific (no torch, no numpy). Defaults and shape rules are
AlexeyAB darknet's (``parser.c`` and the ``make_*_layer`` functions), which are not OpenCV's: e.g. a
``[convolutional]`` without ``activation=`` is **logistic**, a ``[maxpool]`` without ``stride=`` has stride 1,
``[reorg]`` without ``stride=`` is the identity.

Layer references (``[route] layers``, ``[shortcut] from``, ...) are relative when negative and absolute
otherwise; index -1 in ``LayerPlan.inputs`` stands for the network input.
"""
from typing import List, NamedTuple, Tuple

from edgecsp.darknet.cfg import DarknetCfg, Section

# darknet activation names edgecsp implements (see model.py); darknet knows more (e.g. gelu, plse, stair)
ACTIVATIONS = ("linear", "logistic", "leaky", "relu", "relu6", "mish", "swish", "tanh", "elu", "hard_mish")

ALIASES = {"conv": "convolutional", "max": "maxpool", "avg": "avgpool", "soft": "softmax"}

# options that change what a layer computes at inference and that edgecsp does not implement: (kind, key, default)
_UNSUPPORTED = {
    "convolutional": ("binary", "xnor", "bin_output", "antialiasing", "sway", "rotate", "stretch", "stretch_sway",
                      "flipped", "coordconv", "assisted_excitation", "deform"),
    "maxpool": ("maxpool_depth", "antialiasing"),
}


class LayerPlan(NamedTuple):
    """One darknet layer: what it reads, what it outputs and its checked parameters."""

    index: int
    kind: str  # section name without brackets, aliases resolved ("convolutional", "route", ...)
    section: Section
    inputs: Tuple[int, ...]  # layer indices read, in order; -1 = the network input
    shape: Tuple[int, int, int]  # (channels, height, width) of the output
    attrs: dict


class NetworkPlan(NamedTuple):
    cfg: DarknetCfg
    input_shape: Tuple[int, int, int]  # (channels, height, width)
    layers: List[LayerPlan]
    task: str  # "detect" when the cfg has [yolo] layers, else "classify"
    letterbox: bool  # [net] letter_box=1

    @property
    def heads(self):
        """The [yolo] layers in cfg order."""
        return [p for p in self.layers if p.kind == "yolo"]

    @property
    def input_size(self):
        return self.input_shape[1], self.input_shape[2]


def plan_network(cfg, input_size=None):
    # type: (DarknetCfg, object) -> NetworkPlan
    """Check ``cfg`` and compute every layer's shape; ``input_size`` (h, w) overrides [net] height/width."""
    net = cfg.net
    channels = net.get_int("channels", 3)
    if input_size:
        height, width = int(input_size[0]), int(input_size[1])
    else:
        height, width = net.get_int("height", 0), net.get_int("width", 0)
    if min(channels, height, width) <= 0:
        raise net.error("width, height and channels must be positive (got {}x{}x{}): set them in [net]".format(
            width, height, channels))
    plans = []  # type: List[LayerPlan]
    for section in cfg.layers:
        kind = ALIASES.get(section.kind, section.kind)
        planner = _PLANNERS.get(kind)
        if planner is None:
            raise section.error("unsupported section [{}]: edgecsp imports [{}]".format(
                section.kind, "], [".join(sorted(_PLANNERS))))
        for key in _UNSUPPORTED.get(kind, ()):
            if section.has(key) and section.raw(key) not in ("0", "0.0"):
                raise section.error("{}={} is not supported by edgecsp's darknet import: remove it or convert the "
                                    "model another way".format(key, section.raw(key)), key)
        prev_shape = plans[-1].shape if plans else (channels, height, width)
        inputs, shape, attrs = planner(section, len(plans), prev_shape, plans)
        if min(shape) <= 0:
            raise section.error("the output would be {}x{}x{} (CxHxW) for a {}x{}x{} input: the input is too "
                                "small for this layer".format(shape[0], shape[1], shape[2], *prev_shape))
        plans.append(LayerPlan(len(plans), kind, section, tuple(inputs), tuple(int(v) for v in shape), attrs))
    task = "detect" if any(p.kind == "yolo" for p in plans) else "classify"
    return NetworkPlan(cfg, (channels, height, width), plans, task, net.get_int("letter_box", 0) == 1)


def _activation(section, default):
    name = section.get_str("activation", default)
    if name not in ACTIVATIONS:
        raise section.error("unknown activation {!r}: edgecsp supports {}".format(name, ", ".join(ACTIVATIONS)),
                            "activation")
    return name


def _ref(section, key, value, index, plans):
    """Absolute index of the layer ``value`` (relative when negative) referred to by option ``key``."""
    target = value if value >= 0 else index + value
    if not 0 <= target < index:
        raise section.error("{}={} refers to layer {}, which does not exist (this layer may only read layers "
                            "0..{})".format(key, section.raw(key), target, index - 1), key)
    if plans[target].kind == "yolo":
        raise section.error("{}={} refers to the [yolo] layer {}, whose decoded output edgecsp does not compute: "
                            "refer to the layer before it".format(key, section.raw(key), target), key)
    return target


def _positive(section, key, value):
    if value <= 0:
        raise section.error("{}={} must be positive".format(key, value), key)
    return value


def _stride_xy(section, default):
    stride = section.get_int("stride", default)
    sy = section.get_int("stride_y", -1)
    sx = section.get_int("stride_x", -1)
    sy = stride if sy < 1 else sy
    sx = stride if sx < 1 else sx
    return _positive(section, "stride", sy), _positive(section, "stride", sx)


def _plan_convolutional(section, index, prev, plans):
    c, h, w = prev
    filters = _positive(section, "filters", section.get_int("filters", 1))
    size = _positive(section, "size", section.get_int("size", 1))
    sy, sx = _stride_xy(section, 1)
    groups = _positive(section, "groups", section.get_int("groups", 1))
    dilation = section.get_int("dilation", 1)
    if size > 1 and dilation != 1:
        raise section.error("dilation={} is not supported by edgecsp's darknet import".format(dilation), "dilation")
    if section.has("share_index"):
        raise section.error("share_index (weights shared with another layer) is not supported", "share_index")
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    if c % groups or filters % groups:
        raise section.error("groups={} must divide both the {} input channels and filters={}".format(
            groups, c, filters), "groups")
    attrs = dict(filters=filters, size=size, stride=(sy, sx), padding=padding, groups=groups, in_channels=c,
                 batch_normalize=section.get_int("batch_normalize", 0) != 0,
                 activation=_activation(section, "logistic"))
    out = (filters, (h + 2 * padding - size) // sy + 1, (w + 2 * padding - size) // sx + 1)
    return [index - 1], out, attrs


def _plan_maxpool(section, index, prev, plans):
    c, h, w = prev
    sy, sx = _stride_xy(section, 1)
    size = _positive(section, "size", section.get_int("size", sy))
    padding = section.get_int("padding", size - 1)
    if padding < 0:
        raise section.error("padding={} must be >= 0".format(padding), "padding")
    out = (c, (h + padding - size) // sy + 1, (w + padding - size) // sx + 1)
    # darknet pads padding // 2 on the left/top and the rest on the right/bottom, with -FLT_MAX
    return [index - 1], out, dict(size=size, stride=(sy, sx), pad_begin=padding // 2,
                                  pad_end=padding - padding // 2)


def _plan_route(section, index, prev, plans):
    refs = section.get_ints("layers")
    inputs = [_ref(section, "layers", v, index, plans) for v in refs]
    groups = _positive(section, "groups", section.get_int("groups", 1))
    group_id = section.get_int("group_id", 0)
    if not 0 <= group_id < groups:
        raise section.error("group_id={} must be in 0..{} for groups={}".format(group_id, groups - 1, groups),
                            "group_id")
    shapes = [plans[i].shape for i in inputs]
    for i, s in zip(inputs, shapes):
        if s[1:] != shapes[0][1:]:
            raise section.error("layers={} joins layer {} ({}x{}) and layer {} ({}x{}): routed layers must have the "
                                "same width and height".format(section.raw("layers"), inputs[0], shapes[0][1],
                                                               shapes[0][2], i, s[1], s[2]), "layers")
        if s[0] % groups:
            raise section.error("groups={} does not divide the {} channels of layer {}".format(groups, s[0], i),
                                "groups")
    channels = sum(s[0] // groups for s in shapes)
    return inputs, (channels,) + shapes[0][1:], dict(groups=groups, group_id=group_id)


def _plan_shortcut(section, index, prev, plans):
    weights_type = section.get_str("weights_type", "none")
    if weights_type != "none":
        raise section.error("weights_type={} (weighted shortcut) is not supported by edgecsp's darknet import"
                            .format(weights_type), "weights_type")
    inputs = [_ref(section, "from", v, index, plans) for v in section.get_ints("from")]
    for i in inputs:
        if plans[i].shape[1:] != prev[1:]:
            raise section.error("from={} adds layer {} ({}x{}) to the previous layer ({}x{}): edgecsp needs the "
                                "same width and height".format(section.raw("from"), i, plans[i].shape[1],
                                                               plans[i].shape[2], prev[1], prev[2]), "from")
    # channels may differ (partial residuals, e.g. yolov3-tiny-prn): darknet adds over the common channels
    return [index - 1] + inputs, prev, dict(activation=_activation(section, "linear"))


def _plan_upsample(section, index, prev, plans):
    stride = section.get_int("stride", 2)
    if stride < 1:
        raise section.error("stride={} (downsampling [upsample]) is not supported".format(stride), "stride")
    c, h, w = prev
    return [index - 1], (c, h * stride, w * stride), dict(stride=stride, scale=section.get_float("scale", 1.0))


def _plan_yolo(section, index, prev, plans):
    classes = _positive(section, "classes", section.get_int("classes", 20))
    total = _positive(section, "num", section.get_int("num", 1))
    values = section.get_floats("anchors")
    if len(values) < 2 * total:
        raise section.error("num={} needs {} anchor values but anchors= has {}".format(
            total, 2 * total, len(values)), "anchors")
    anchors = [(values[2 * i], values[2 * i + 1]) for i in range(total)]
    mask = section.get_ints("mask", list(range(total)))
    for m in mask:
        if not 0 <= m < total:
            raise section.error("mask={} refers to anchor {}, but there are only {} anchors (num={}, indices "
                                "0..{})".format(section.raw("mask"), m, total, total, total - 1), "mask")
    new_coords = section.get_int("new_coords", 0)
    if new_coords not in (0, 1):
        raise section.error("new_coords={} must be 0 or 1".format(new_coords), "new_coords")
    expected = len(mask) * (classes + 5)
    if index == 0 or prev[0] != expected:
        raise section.error("the layer before this [yolo] outputs {} channels but mask has {} anchors x (classes={}"
                            " + 5) = {}: set filters={} in the [convolutional] before it".format(
                                prev[0], len(mask), classes, expected, expected), "mask")
    return [index - 1], prev, dict(classes=classes, anchors=[anchors[m] for m in mask], mask=mask,
                                   scale_x_y=section.get_float("scale_x_y", 1.0), new_coords=bool(new_coords))


def _plan_sam(section, index, prev, plans):
    source = _ref(section, "from", section.get_int("from"), index, plans)
    if plans[source].shape != prev:
        raise section.error("from={}: layer {} is {} but the previous layer is {} (CxHxW): [sam] multiplies "
                            "equal shapes".format(section.raw("from"), source, _chw(plans[source].shape),
                                                  _chw(prev)), "from")
    return [index - 1, source], prev, dict(activation=_activation(section, "linear"))


def _plan_scale_channels(section, index, prev, plans):
    source = _ref(section, "from", section.get_int("from"), index, plans)
    scale_wh = section.get_int("scale_wh", 0) != 0
    target = plans[source].shape
    wanted = (1,) + target[1:] if scale_wh else (target[0], 1, 1)
    if prev != wanted:
        raise section.error("the previous layer is {} but scaling layer {} ({}) needs {} (CxHxW)".format(
            _chw(prev), source, _chw(target), _chw(wanted)), "from")
    return [index - 1, source], target, dict(activation=_activation(section, "linear"), scale_wh=scale_wh)


def _plan_reorg(section, index, prev, plans):
    stride = _positive(section, "stride", section.get_int("stride", 1))
    if section.get_int("reverse", 0):
        raise section.error("reverse=1 is not supported by edgecsp's darknet import", "reverse")
    c, h, w = prev
    if h % stride or w % stride:
        raise section.error("stride={} does not divide the {}x{} input".format(stride, h, w), "stride")
    if section.kind == "reorg" and c % (stride * stride):
        raise section.error("[reorg] stride={} needs channels divisible by {} (got {})".format(
            stride, stride * stride, c), "stride")
    # [reorg] is darknet's reorg_old (the YOLOv2 one), [reorg3d] the plain space-to-depth; see model.py
    return [index - 1], (c * stride * stride, h // stride, w // stride), dict(
        stride=stride, old=section.kind == "reorg")


def _plan_avgpool(section, index, prev, plans):
    return [index - 1], (prev[0], 1, 1), {}


def _plan_identity(section, index, prev, plans):
    return [index - 1], prev, {}


def _plan_softmax(section, index, prev, plans):
    if section.has("tree"):
        raise section.error("tree= (hierarchical softmax) is not supported", "tree")
    if section.get_float("spatial", 0) != 0:
        raise section.error("spatial= (per-pixel softmax) is not supported", "spatial")
    groups = _positive(section, "groups", section.get_int("groups", 1))
    size = prev[0] * prev[1] * prev[2]
    if size % groups:
        raise section.error("groups={} does not divide the {} inputs".format(groups, size), "groups")
    return [index - 1], prev, dict(groups=groups, temperature=section.get_float("temperature", 1.0))


def _chw(shape):
    return "x".join(str(v) for v in shape)


_PLANNERS = {
    "convolutional": _plan_convolutional,
    "maxpool": _plan_maxpool,
    "route": _plan_route,
    "shortcut": _plan_shortcut,
    "upsample": _plan_upsample,
    "yolo": _plan_yolo,
    "sam": _plan_sam,
    "scale_channels": _plan_scale_channels,
    "reorg": _plan_reorg,
    "reorg3d": _plan_reorg,
    "avgpool": _plan_avgpool,
    "dropout": _plan_identity,
    "softmax": _plan_softmax,
}
