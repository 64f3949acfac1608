"""Plan a darknet network from its cfg: resolve every layer's inputs and output shape, check every option.

The plan is what both the weights reader (how many floats each layer owns) and the PyTorch builder use, so it
holds everything either needs and nothing framework-specific (no torch, no numpy). Defaults and shape rules are
AlexeyAB darknet's (``parser.c`` and the ``make_*_layer`` functions), which are not OpenCV's: e.g. a
``[convolutional]`` without ``activation=`` is **logistic**, a ``[maxpool]`` without ``stride=`` has stride 1,
``[reorg]`` without ``stride=`` is the identity.

Layer references (``[route] layers``, ``[shortcut] from``, ...) are relative when negative and absolute
otherwise; index -1 in ``LayerPlan.inputs`` stands for the network input.

Sizes are bounded here, before torch allocates anything (``MAX_SIDE``, ``MAX_LAYER_VALUES``, ``MAX_PARAMS``): a
cfg that asks for gigabytes is refused with the limit and its reason instead of failing in an allocation; and so is
one whose forward pass would run for hours (``MAX_OPS``, e.g. a 3000x3000 max pool).
"""
from typing import List, NamedTuple, Tuple

from edgecsp.darknet.cfg import DarknetCfg, Section, excerpt
from edgecsp.validate import positive_int

# an input side beyond this is no real detector input (published cfgs use 256..1536) and needs gigabytes per layer
MAX_SIDE = 8192
# values (float32) of one layer's output or padded input at batch 1: 2 GiB, what the 32-channel first layers of
# yolov4/CSPDarknet53 take at 4096x4096
MAX_LAYER_VALUES = 2 ** 29
# float32 parameters of the whole network: 2 GiB, several times the largest published darknet models (yolov4-p6: 127M)
MAX_PARAMS = 2 ** 29
# multiply-adds (comparisons for pools) of one forward pass at batch 1: 4.4e12, above yolov4-csp at 4096x4096 (2.5e12,
# the largest input the per-layer limit lets it have); at ~100 GMAC/s on a CPU that is a minute per export check
MAX_OPS = 2 ** 42
MAX_CLASSES = 100000  # YOLO9000 has 9418
MAX_SCALE_X_Y = 4.0  # published cfgs use 1.0..2.0
ANCHOR_SIDES = 100  # an anchor larger than 100 input sides is no box in the image

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


def plan_network(cfg, input_size=None, _probe=None):
    # type: (DarknetCfg, object, object) -> NetworkPlan
    """Check ``cfg`` and compute every layer's shape; ``input_size`` (h, w) overrides [net] height/width."""
    if _probe is not None:
        input_size = _probe
    net = cfg.net
    channels = net.get_int("channels", 3)
    if input_size:
        height = positive_int(input_size[0], "the input height", "pass HEIGHTxWIDTH, e.g. 416x416")
        width = positive_int(input_size[1], "the input width", "pass HEIGHTxWIDTH, e.g. 416x416")
        where = "the input size {}x{}".format(height, width)
    else:
        height, width = net.get_int("height", 0), net.get_int("width", 0)
        where = "[net] width={} height={}".format(width, height)
    if min(channels, height, width) <= 0:
        raise net.error("width, height and channels must be positive (got {}x{}x{}): set them in [net]".format(
            width, height, channels))
    if max(height, width) > MAX_SIDE:
        raise net.error("{} is larger than {} on a side, edgecsp's limit (no detector input is that large, and "
                        "its layers would need gigabytes): use a size such as 416x416 or 608x608".format(
                            where, MAX_SIDE))
    _check_values(net, "the input", (channels, height, width))
    if _probe is None:
        _check_stride(cfg, height, width, where)
    plans = []  # type: List[LayerPlan]
    params = ops = 0
    for section in cfg.layers:
        kind = ALIASES.get(section.kind, section.kind)
        planner = _PLANNERS.get(kind)
        if planner is None:
            raise section.error("unsupported section [{}]: edgecsp imports [{}]".format(
                excerpt(section.kind, 30), "], [".join(sorted(_PLANNERS))))
        for key in _UNSUPPORTED.get(kind, ()):
            if section.has(key) and section.raw(key) not in ("0", "0.0"):
                raise section.error("{} is not supported by edgecsp's darknet import: remove it or convert the "
                                    "model another way".format(section.show(key)), key)
        prev_shape = plans[-1].shape if plans else (channels, height, width)
        inputs, shape, attrs = planner(section, len(plans), prev_shape, plans)
        if min(shape) <= 0:
            raise section.error("the output would be {}x{}x{} (CxHxW) for a {}x{}x{} input: the input is too "
                                "small for this layer".format(shape[0], shape[1], shape[2], *prev_shape))
        _check_values(section, "the output", shape)
        ops += layer_ops(kind, attrs, prev_shape, shape)
        if ops > MAX_OPS:
            raise section.error("this layer brings one forward pass to {:.2g} multiply-adds, more than edgecsp's limit "
                                "of {:.2g} (an export check would run for hours): use a smaller input size, or check "
                                "size= and padding=".format(ops, MAX_OPS))
        if kind == "convolutional":
            params += conv_params(attrs)
            if params > MAX_PARAMS:
                raise section.error("this layer brings the network to {:,} parameters, more than edgecsp's limit "
                                    "of {:,} (2 GiB of float32, several times the largest published models): check "
                                    "filters= and size=".format(params, MAX_PARAMS))
        plans.append(LayerPlan(len(plans), kind, section, tuple(inputs), tuple(int(v) for v in shape), attrs))
    task = "detect" if any(p.kind == "yolo" for p in plans) else "classify"
    plan = NetworkPlan(cfg, (channels, height, width), plans, task, net.get_int("letter_box", 0) == 1)
    if plan.heads:
        _check_heads(plan)
    return plan


STRIDE_PROBE = 512  # a side every darknet stride divides (powers of two up to 256 leave a grid of 2 or more)


def max_stride(cfg):
    # type: (DarknetCfg) -> int
    """The largest stride of ``cfg``'s [yolo] heads: what a detector's input sides must be multiples of (darknet's
    rule); 0 for a classifier (its global pooling takes any size) or a network that cannot be planned at all
    (planning then says why)."""
    from edgecsp.errors import EdgeCSPError

    try:
        plan = plan_network(cfg, _probe=(STRIDE_PROBE, STRIDE_PROBE))
    except EdgeCSPError:
        return 0
    sides = [p.shape[1] for p in plan.heads if p.shape[1] > 0]
    return STRIDE_PROBE // min(sides) if sides else 0


def _check_stride(cfg, height, width, where):
    """InputError up front when a side is not a multiple of the largest stride: darknet's [route] and [shortcut]
    would otherwise fail deep in the network on two feature maps one pixel apart."""
    from edgecsp.errors import InputError

    stride = max_stride(cfg)
    if stride > 1 and (height % stride or width % stride):
        fit = lambda side: max(stride, int(round(float(side) / stride)) * stride)  # noqa: E731
        raise InputError("{} of {} is not a multiple of {}, the network's largest stride: use a multiple of {} "
                         "(e.g. {}x{})".format(where, excerpt(cfg.name, 40), stride, stride, fit(height),
                                               fit(width)))


def conv_params(attrs):
    """float32 values a planned [convolutional] owns (biases, batch norm, kernel), with Python ints (no overflow)."""
    n = attrs["filters"]
    return n * (4 if attrs["batch_normalize"] else 1) + n * (attrs["in_channels"] // attrs["groups"]) * \
        attrs["size"] * attrs["size"]


def layer_ops(kind, attrs, in_shape, out_shape):
    """An upper bound of the multiply-adds (comparisons for [maxpool]) a planned layer costs at batch 1, as edgecsp's
    model computes it (``in_shape``: the previous layer's output, what convolutions and pools read)."""
    c, h, w = out_shape
    if kind == "convolutional":
        return c * h * w * (attrs["in_channels"] // attrs["groups"]) * attrs["size"] ** 2
    if kind == "maxpool":  # the model may pool at stride 1 and subsample (model.MaxPoolLayer): bound by that
        pad = attrs["pad_begin"] + attrs["pad_end"]
        return in_shape[0] * (in_shape[1] + pad) * (in_shape[2] + pad) * attrs["size"] ** 2
    return c * h * w


def _check_values(section, what, shape):
    """Refuse a tensor of ``shape`` (C, H, W) larger than MAX_LAYER_VALUES before anything allocates it."""
    values = shape[0] * shape[1] * shape[2]
    if values > MAX_LAYER_VALUES:
        raise section.error("{} would be {} (CxHxW) = {:,} values ({:.1f} GiB of float32), more than edgecsp's "
                            "limit of {:,} (2 GiB) per layer: use a smaller input size or fewer filters".format(
                                what, _chw(shape), values, values * 4 / 2 ** 30, MAX_LAYER_VALUES))


def _check_heads(plan):
    """What one model's [yolo] heads must share: an input that the grids divide, distinct strides, one decode
    form and one class list (the runtime decodes every head the same way and names outputs by stride)."""
    heads = plan.heads
    h_in, w_in = plan.input_size
    strides = []
    for head in heads:
        _, gh, gw = head.shape
        if h_in % gh or w_in % gw or h_in // gh != w_in // gw:
            raise head.section.error("the head grid {}x{} does not divide the {}x{} input evenly: use an input "
                                     "size that is a multiple of 32".format(gh, gw, h_in, w_in))
        strides.append(h_in // gh)
        limit = ANCHOR_SIDES * max(h_in, w_in)
        values = head.section.get_floats("anchors")[:2 * head.section.get_int("num", 1)]  # masked or not
        for number in range(len(values) // 2):
            w, h = values[2 * number:2 * number + 2]
            if max(w, h) > limit:
                raise head.section.error("anchor {} is {:g},{:g}, more than {} times the {}x{} input (limit {}): "
                                         "anchors are box sizes in input pixels, fix anchors=".format(
                                             number, w, h, ANCHOR_SIDES, h_in, w_in, limit), "anchors")
    new_coords = [h.attrs["new_coords"] for h in heads]
    if len(set(new_coords)) > 1:
        odd = heads[new_coords.index(not new_coords[0])]
        raise odd.section.error("new_coords differs between [yolo] layers: edgecsp decodes one form per model, set "
                                "the same new_coords= in every [yolo]", "new_coords")
    if len(set(strides)) != len(strides):
        raise heads[-1].section.error("two [yolo] layers have the same stride ({}): edgecsp names outputs by "
                                      "stride, give each head its own scale".format(
                                          ", ".join(str(s) for s in strides)))
    classes = {h.attrs["classes"] for h in heads}
    if len(classes) > 1:
        raise heads[-1].section.error("[yolo] layers disagree on classes= ({}): set the same classes= in every "
                                      "[yolo] (one class list per model)".format(
                                          ", ".join(str(c) for c in sorted(classes))), "classes")


def _activation(section, default):
    name = section.get_str("activation", default)
    if name not in ACTIVATIONS:
        raise section.error("unknown activation '{}': edgecsp supports {}".format(excerpt(name, 30),
                                                                                  ", ".join(ACTIVATIONS)),
                            "activation")
    return name


def _ref(section, key, value, index, plans):
    """Absolute index of the layer ``value`` (relative when negative) referred to by option ``key``."""
    target = value if value >= 0 else index + value
    if not 0 <= target < index:
        raise section.error("{} refers to layer {}, which does not exist (this layer may only read layers "
                            "0..{})".format(section.show(key), target, index - 1), key)
    if plans[target].kind == "yolo":
        raise section.error("{} refers to the [yolo] layer {}, whose decoded output edgecsp does not compute: "
                            "refer to the layer before it".format(section.show(key), target), key)
    return target


def _positive(section, key, value):
    if value <= 0:
        raise section.error("{}={} must be positive: set it to 1 or more".format(key, value), key)
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
        raise section.error("dilation={} is not supported by edgecsp's darknet import: remove it or convert the "
                            "model another way".format(dilation), "dilation")
    if section.has("share_index"):
        raise section.error("share_index (weights shared with another layer) is not supported: remove it or "
                            "convert the model another way", "share_index")
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    if padding < 0:
        raise section.error("padding={} must be >= 0: use pad=1 for darknet's usual size/2".format(padding),
                            "padding")
    _check_values(section, "the padded input", (c, h + 2 * padding, w + 2 * padding))
    if c % groups or filters % groups:
        raise section.error("groups={} must divide both the {} input channels and filters={}: fix groups= or "
                            "filters=".format(groups, c, filters), "groups")
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
        raise section.error("padding={} must be >= 0: remove it for darknet's default size-1".format(padding),
                            "padding")
    _check_values(section, "the padded input", (c, h + padding, w + padding))
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
        raise section.error("group_id={} must be in 0..{} for groups={}: fix group_id=".format(
            group_id, groups - 1, groups), "group_id")
    shapes = [plans[i].shape for i in inputs]
    for i, s in zip(inputs, shapes):
        if s[1:] != shapes[0][1:]:
            raise section.error("{} joins layer {} ({}x{}) and layer {} ({}x{}): routed layers must have the "
                                "same width and height".format(section.show("layers"), inputs[0], shapes[0][1],
                                                               shapes[0][2], i, s[1], s[2]), "layers")
        if s[0] % groups:
            raise section.error("groups={} does not divide the {} channels of layer {}: fix groups=".format(
                groups, s[0], i), "groups")
    channels = sum(s[0] // groups for s in shapes)
    return inputs, (channels,) + shapes[0][1:], dict(groups=groups, group_id=group_id)


def _plan_shortcut(section, index, prev, plans):
    if section.get_str("weights_type", "none") != "none":
        raise section.error("{} (weighted shortcut) is not supported by edgecsp's darknet import: convert the "
                            "model another way".format(section.show("weights_type")), "weights_type")
    inputs = [_ref(section, "from", v, index, plans) for v in section.get_ints("from")]
    for i in inputs:
        if plans[i].shape[1:] != prev[1:]:
            raise section.error("{} adds layer {} ({}x{}) to the previous layer ({}x{}): edgecsp needs the "
                                "same width and height".format(section.show("from"), i, plans[i].shape[1],
                                                               plans[i].shape[2], prev[1], prev[2]), "from")
    # channels may differ (partial residuals, e.g. yolov3-tiny-prn): darknet adds over the common channels
    return [index - 1] + inputs, prev, dict(activation=_activation(section, "linear"))


def _plan_upsample(section, index, prev, plans):
    stride = section.get_int("stride", 2)
    if stride < 1:
        raise section.error("stride={} (downsampling [upsample]) is not supported: use [maxpool] or "
                            "[avgpool]".format(stride), "stride")
    c, h, w = prev
    return [index - 1], (c, h * stride, w * stride), dict(stride=stride, scale=section.get_float("scale", 1.0))


def _plan_yolo(section, index, prev, plans):
    classes = _positive(section, "classes", section.get_int("classes", 20))
    if classes > MAX_CLASSES:
        raise section.error("classes={} is more than edgecsp's limit of {} (YOLO9000 has 9418): fix "
                            "classes=".format(classes, MAX_CLASSES), "classes")
    total = _positive(section, "num", section.get_int("num", 1))
    values = section.get_floats("anchors")
    if len(values) < 2 * total:
        raise section.error("num={} needs {} anchor values but anchors= has {}: give a width,height pair per "
                            "anchor or fix num=".format(total, 2 * total, len(values)), "anchors")
    anchors = [(values[2 * i], values[2 * i + 1]) for i in range(total)]
    for number, (w, h) in enumerate(anchors):
        if w <= 0 or h <= 0:
            raise section.error("anchor {} is {:g},{:g}: anchors are box widths and heights in input pixels and "
                                "must be positive, fix anchors=".format(number, w, h), "anchors")
    mask = section.get_ints("mask", list(range(total)))
    for m in mask:
        if not 0 <= m < total:
            raise section.error("{} refers to anchor {}, but there are only {} anchors (num={}, indices "
                                "0..{}): fix mask= or num=".format(section.show("mask"), m, total, total, total - 1),
                                "mask")
    new_coords = section.get_int("new_coords", 0)
    if new_coords not in (0, 1):
        raise section.error("new_coords={} must be 0 or 1".format(new_coords), "new_coords")
    scale_x_y = section.get_float("scale_x_y", 1.0)
    if not 0 < scale_x_y <= MAX_SCALE_X_Y:
        raise section.error("scale_x_y={:g} must be in (0, {:g}]: published cfgs use 1.0 to 2.0".format(
            scale_x_y, MAX_SCALE_X_Y), "scale_x_y")
    expected = len(mask) * (classes + 5)
    if index == 0 or prev[0] != expected:
        raise section.error("the layer before this [yolo] outputs {} channels but mask has {} anchors x (classes={}"
                            " + 5) = {}: set filters={} in the [convolutional] before it".format(
                                prev[0], len(mask), classes, expected, expected), "mask")
    return [index - 1], prev, dict(classes=classes, anchors=[anchors[m] for m in mask], mask=mask,
                                   scale_x_y=scale_x_y, new_coords=bool(new_coords))


def _plan_sam(section, index, prev, plans):
    source = _ref(section, "from", section.get_int("from"), index, plans)
    if plans[source].shape != prev:
        raise section.error("{}: layer {} is {} but the previous layer is {} (CxHxW): [sam] multiplies "
                            "equal shapes, fix from=".format(section.show("from"), source,
                                                             _chw(plans[source].shape), _chw(prev)), "from")
    return [index - 1, source], prev, dict(activation=_activation(section, "linear"))


def _plan_scale_channels(section, index, prev, plans):
    source = _ref(section, "from", section.get_int("from"), index, plans)
    scale_wh = section.get_int("scale_wh", 0) != 0
    target = plans[source].shape
    wanted = (1,) + target[1:] if scale_wh else (target[0], 1, 1)
    if prev != wanted:
        raise section.error("the previous layer is {} but scaling layer {} ({}) needs {} (CxHxW): fix from= or "
                            "scale_wh=".format(_chw(prev), source, _chw(target), _chw(wanted)), "from")
    return [index - 1, source], target, dict(activation=_activation(section, "linear"), scale_wh=scale_wh)


def _plan_reorg(section, index, prev, plans):
    stride = _positive(section, "stride", section.get_int("stride", 1))
    if section.get_int("reverse", 0):
        raise section.error("reverse=1 is not supported by edgecsp's darknet import: convert the model another "
                            "way", "reverse")
    c, h, w = prev
    if h % stride or w % stride:
        raise section.error("stride={} does not divide the {}x{} input: fix stride= or the input size".format(
            stride, h, w), "stride")
    if section.kind == "reorg" and c % (stride * stride):
        raise section.error("[reorg] stride={} needs channels divisible by {} (got {}): fix stride= or the "
                            "filters= before it".format(stride, stride * stride, c), "stride")
    # [reorg] is darknet's reorg_old (the YOLOv2 one), [reorg3d] the plain space-to-depth; see model.py
    return [index - 1], (c * stride * stride, h // stride, w // stride), dict(
        stride=stride, old=section.kind == "reorg")


def _plan_avgpool(section, index, prev, plans):
    return [index - 1], (prev[0], 1, 1), {}


def _plan_identity(section, index, prev, plans):
    return [index - 1], prev, {}


def _plan_softmax(section, index, prev, plans):
    if section.has("tree"):
        raise section.error("tree= (hierarchical softmax) is not supported: convert the model another way", "tree")
    if section.get_float("spatial", 0) != 0:
        raise section.error("spatial= (per-pixel softmax) is not supported: convert the model another way",
                            "spatial")
    groups = _positive(section, "groups", section.get_int("groups", 1))
    size = prev[0] * prev[1] * prev[2]
    if size % groups:
        raise section.error("groups={} does not divide the {} inputs: fix groups=".format(groups, size), "groups")
    temperature = section.get_float("temperature", 1.0)
    if temperature <= 0:
        raise section.error("temperature={:g} must be positive: remove it for darknet's default 1".format(
            temperature), "temperature")
    return [index - 1], prev, dict(groups=groups, temperature=temperature)


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
