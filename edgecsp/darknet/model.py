"""A PyTorch module built from a planned darknet network, so the existing export/simplify/build path applies.

``DarknetDetector.forward`` returns the inputs of the ``[yolo]`` layers (the raw head tensors, layout
``yolo_raw``) in cfg order; box decoding stays in the runtime, as for edgecsp's own detectors. The decode form
follows darknet's ``[yolo]``: with ``new_coords=1`` darknet applies no logistic itself (the cfg puts
``activation=logistic`` on the head convolution), so the model reports ``activated=True``; classic heads are
linear and the runtime applies the logistic (``activated=False``), exactly as darknet's ``forward_yolo_layer``.
``DarknetClassifier.forward`` returns the last layer's output (class probabilities after ``[softmax]``).

Numerics: batch norm uses eps 1e-5, which is what darknet computes at inference (``fuse_conv_batchnorm`` and
cuDNN both use ``sqrt(var + .00001)``); OpenCV's importer uses 1e-6 (see tests/darknet for what that changes).
The module is built for the plan's input size: ``[maxpool]`` padding choices depend on it.
"""
import hashlib
import os
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgecsp.darknet.cfg import excerpt, parse_cfg
from edgecsp.darknet.graph import plan_network
from edgecsp.darknet.weights import param_shapes, read_weights
from edgecsp.errors import InputError
from edgecsp.models.layers import make_activation
from edgecsp.validate import printable

BN_EPS = 1e-5


class HardMish(nn.Module):
    """darknet's hard_mish: x for x > 0, x * (x + 2) / 2 for -2 < x <= 0, else 0."""

    def forward(self, x):
        return x * torch.clamp(x + 2.0, 0.0, 2.0) * 0.5


def activation(name):
    """nn.Module for a darknet activation name (graph.ACTIVATIONS)."""
    if name == "tanh":
        return nn.Tanh()
    if name == "elu":
        return nn.ELU()
    if name == "hard_mish":
        return HardMish()
    return make_activation(name)


class ConvLayer(nn.Module):
    """[convolutional]: conv (+ batch norm) + activation; holds darknet's parameters under torch names."""

    def __init__(self, a):
        super().__init__()
        bn = a["batch_normalize"]
        self.conv = nn.Conv2d(a["in_channels"], a["filters"], a["size"], a["stride"], a["padding"],
                              groups=a["groups"], bias=not bn)
        self.bn = nn.BatchNorm2d(a["filters"], eps=BN_EPS) if bn else None
        self.act = activation(a["activation"])

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    def load_darknet(self, arrays):
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(arrays["weights"]))
            if self.bn is None:
                self.conv.bias.copy_(torch.from_numpy(arrays["biases"]))
            else:
                self.bn.bias.copy_(torch.from_numpy(arrays["biases"]))
                self.bn.weight.copy_(torch.from_numpy(arrays["scales"]))
                self.bn.running_mean.copy_(torch.from_numpy(arrays["rolling_mean"]))
                self.bn.running_var.copy_(torch.from_numpy(arrays["rolling_variance"]))

    def darknet_arrays(self):
        out = OrderedDict()
        if self.bn is None:
            out["biases"] = self.conv.bias
        else:
            out["biases"], out["scales"] = self.bn.bias, self.bn.weight
            out["rolling_mean"], out["rolling_variance"] = self.bn.running_mean, self.bn.running_var
        out["weights"] = self.conv.weight
        return OrderedDict((k, v.detach().cpu().numpy().astype("float32")) for k, v in out.items())


class MaxPoolLayer(nn.Module):
    """[maxpool] with darknet's padding: ``pad_begin`` left/top, ``pad_end`` right/bottom, padded with -inf.

    Written with plain (symmetric) MaxPool ops that every backend parses: when the extra right/bottom pad is
    never reached a plain pool is exact; otherwise pool at stride 1 with the larger pad and take every
    stride-th window starting at the offset of darknet's first window. Only pads beyond half the kernel (which
    no published cfg uses) fall back to an explicit -inf Pad.
    """

    def __init__(self, a, in_shape, out_shape):
        super().__init__()
        k, (sy, sx), begin, end = a["size"], a["stride"], a["pad_begin"], a["pad_end"]
        self.out_hw = tuple(out_shape[1:])
        self.mode, self.pad, self.offset = "plain", 0, 0
        plain = ((in_shape[1] + 2 * begin - k) // sy + 1, (in_shape[2] + 2 * begin - k) // sx + 1)
        if plain == self.out_hw and 2 * begin <= k:
            self.pool = nn.MaxPool2d(k, (sy, sx), begin)
        elif 2 * end <= k:
            self.mode, self.offset = "strided", end - begin
            self.pool = nn.MaxPool2d(k, 1, end)
        else:
            self.mode, self.pad = "pad", (begin, end, begin, end)
            self.pool = nn.MaxPool2d(k, (sy, sx), 0)
        self.stride = (sy, sx)

    def forward(self, x):
        if self.mode == "pad":
            x = F.pad(x, self.pad, value=float("-inf"))
        y = self.pool(x)
        if self.mode == "strided":
            (sy, sx), o, (h, w) = self.stride, self.offset, self.out_hw
            y = y[:, :, o:o + sy * (h - 1) + 1:sy, o:o + sx * (w - 1) + 1:sx]
        return y


class RouteLayer(nn.Module):
    """[route]: concatenate the inputs' ``group_id``-th channel group (all channels when groups=1)."""

    def __init__(self, groups, group_id, channels):
        super().__init__()
        self.slices = [(c // groups * group_id, c // groups * (group_id + 1)) for c in channels]
        self.whole = groups == 1

    def forward(self, *xs):
        parts = list(xs) if self.whole else [x[:, a:b] for x, (a, b) in zip(xs, self.slices)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


class ShortcutLayer(nn.Module):
    """[shortcut]: previous layer + the ``from`` layers over their common channels, then the activation.

    Channel counts may differ (partial residuals): darknet adds the first min(C_prev, C_from) channels and
    keeps the previous layer's channel count.
    """

    def __init__(self, act, channels):
        super().__init__()
        self.act = activation(act)
        self.channels = channels  # [previous, from...]

    def forward(self, x, *adds):
        c = self.channels[0]
        for a, ca in zip(adds, self.channels[1:]):
            if ca == c:
                x = x + a
            elif ca > c:
                x = x + a[:, :c]
            else:
                x = torch.cat([x[:, :ca] + a, x[:, ca:]], 1)
        return self.act(x)


class UpsampleLayer(nn.Module):
    def __init__(self, stride, scale):
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x):
        y = F.interpolate(x, scale_factor=float(self.stride), mode="nearest")
        return y * self.scale if self.scale != 1.0 else y


class MultiplyLayer(nn.Module):
    """[sam] (elementwise) and [scale_channels] (broadcast over H, W or over C): from * previous, activated."""

    def __init__(self, act):
        super().__init__()
        self.act = activation(act)

    def forward(self, prev, source):
        return self.act(source * prev)


def space_to_depth(x, s):
    """darknet's reorg order: output channel (oy * s + ox) * C + c takes pixel (y * s + oy, x * s + ox) of c."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(n, c * s * s, h // s, w // s)


class ReorgLayer(nn.Module):
    """[reorg3d]: darknet's space-to-depth. [reorg] (darknet's reorg_old, YOLOv2) calls the same routine with
    the input's own sizes, which amounts to: read the input buffer as (C/s², H*s, W*s), space-to-depth it into
    (C, H, W), and read that buffer as (C*s², H/s, W/s)."""

    def __init__(self, stride, old):
        super().__init__()
        self.stride, self.old = stride, old

    def forward(self, x):
        s = self.stride
        if s == 1:
            return x
        if not self.old:
            return space_to_depth(x, s)
        n, c, h, w = x.shape
        y = space_to_depth(x.reshape(n, c // (s * s), h * s, w * s), s)
        return y.reshape(n, c * s * s, h // s, w // s)


class AvgPoolLayer(nn.Module):
    def forward(self, x):
        return F.adaptive_avg_pool2d(x, 1)


class SoftmaxLayer(nn.Module):
    """[softmax]: over each of ``groups`` contiguous chunks of the flattened C*H*W input, with temperature."""

    def __init__(self, groups, temperature):
        super().__init__()
        self.groups, self.temperature = groups, temperature

    def forward(self, x):
        shape = x.shape
        y = x.reshape(shape[0], self.groups, -1)
        if self.temperature != 1.0:
            y = y / self.temperature
        return torch.softmax(y, -1).reshape(shape)


def _build_layer(layer, plans, input_shape):
    a = layer.attrs
    in_shape = plans[layer.inputs[0]].shape if layer.inputs[0] >= 0 else input_shape
    if layer.kind == "convolutional":
        return ConvLayer(a)
    if layer.kind == "maxpool":
        return MaxPoolLayer(a, in_shape, layer.shape)
    if layer.kind == "route":
        return RouteLayer(a["groups"], a["group_id"], [plans[i].shape[0] for i in layer.inputs])
    if layer.kind == "shortcut":
        channels = [in_shape[0]] + [plans[i].shape[0] for i in layer.inputs[1:]]
        return ShortcutLayer(a["activation"], channels)
    if layer.kind == "upsample":
        return UpsampleLayer(a["stride"], a["scale"])
    if layer.kind in ("sam", "scale_channels"):
        return MultiplyLayer(a["activation"])
    if layer.kind in ("reorg", "reorg3d"):
        return ReorgLayer(a["stride"], a["old"])
    if layer.kind == "avgpool":
        return AvgPoolLayer()
    if layer.kind == "softmax":
        return SoftmaxLayer(a["groups"], a["temperature"])
    return nn.Identity()  # [dropout] at inference, and [yolo] (decoding happens in the runtime)


class DarknetModel(nn.Module):
    """The layers of a darknet cfg in order; ``layers[i]`` is darknet's layer i."""

    def __init__(self, plan, outputs):
        super().__init__()
        self.plan = plan
        self.layers = nn.ModuleList([_build_layer(p, plan.layers, plan.input_shape) for p in plan.layers])
        self._inputs = [p.inputs for p in plan.layers]
        self._outputs = list(outputs)
        last_use = {}  # layer index -> the last layer that reads it; outputs are kept to the end
        for p in plan.layers:
            for i in p.inputs:
                last_use[i] = p.index
        for p in plan.layers:
            last_use.setdefault(p.index, p.index)  # read by nobody: dropped at once
        for i in outputs:
            last_use[i] = len(plan.layers)
        self._release = [[] for _ in plan.layers]  # layer i -> the tensors to drop after it (linear in the layers)
        for j, last in last_use.items():
            if j >= 0 and last < len(plan.layers):
                self._release[last].append(j)
        self.input_size = plan.input_size
        self.model_name = "darknet:" + plan.cfg.name

    def run_layers(self, x):
        """Run every layer; returns the outputs' tensors. Tensors are dropped after their last reader."""
        cache = []
        for layer, inputs, release in zip(self.layers, self._inputs, self._release):
            cache.append(layer(*[x if i < 0 else cache[i] for i in inputs]))
            for j in release:
                cache[j] = None
        return [cache[i] for i in self._outputs]

    def load_darknet(self, params):
        """Copy ``params`` (``read_weights``/``random_weights`` layout) into the layers; returns self."""
        for layer in self.plan.layers:
            if param_shapes(layer):
                self.layers[layer.index].load_darknet(params[layer.index])
        return self

    def darknet_params(self):
        """The parameters in ``write_weights`` layout (e.g. to save a model fine-tuned in PyTorch)."""
        return OrderedDict((p.index, self.layers[p.index].darknet_arrays()) for p in self.plan.layers
                           if param_shapes(p))


class DarknetDetector(DarknetModel):
    """A cfg with [yolo] layers; ``forward`` returns the [yolo] inputs (yolo_raw) in cfg order."""

    task = "detect"

    def __init__(self, plan, names):
        heads = plan.heads
        super().__init__(plan, [h.inputs[0] for h in heads])
        # plan_network checked that the grids divide the input, the strides differ and the heads share new_coords
        # and classes
        h_in = plan.input_size[0]
        self.strides = [h_in // head.shape[1] for head in heads]
        self.anchors = [[tuple(float(v) for v in a) for a in head.attrs["anchors"]] for head in heads]
        self.scale_x_y = [float(head.attrs["scale_x_y"]) for head in heads]
        self.new_coords = [bool(head.attrs["new_coords"]) for head in heads]
        # darknet applies no logistic in new_coords heads (the cfg's head conv is activation=logistic)
        self.activated = self.new_coords[0]
        self.letterbox = plan.letterbox
        self.pad_value = 127  # darknet's letterbox_image fills with 0.5
        self.names = _names(names, heads[0].attrs["classes"])

    def forward(self, x):
        return tuple(self.run_layers(x))


class DarknetClassifier(DarknetModel):
    """A cfg without [yolo] (e.g. csdarknet53-omega): ``forward`` returns the last layer flattened to (N, C)."""

    task = "classify"

    def __init__(self, plan, names):
        super().__init__(plan, [len(plan.layers) - 1])
        c, h, w = plan.layers[-1].shape
        self.flat = h == 1 and w == 1
        self.num_classes = c * h * w
        self.names = _names(names, self.num_classes)
        self.output_layout = "probs" if plan.layers[-1].kind == "softmax" else "logits"

    def forward(self, x):
        y = self.run_layers(x)[0]
        return y.flatten(1) if self.flat else y


MAX_NAMES_BYTES = 16 << 20  # coco.names is 625 bytes; a file this large is something else


def read_names(path):
    """Class names from a darknet .names file (one per line, blank lines ignored)."""
    if not os.path.isfile(path):
        raise InputError("names file {} not found: pass a .names file with one class name per line".format(
            excerpt(path, 80)))
    name = excerpt(os.path.basename(path), 40)
    size = os.path.getsize(path)
    if size > MAX_NAMES_BYTES:
        raise InputError("names file {} is {} bytes, but a .names file lists one class name per line: pass the "
                         "model's .names file".format(name, size))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_NAMES_BYTES + 1)
    except OSError as exc:
        raise InputError("cannot read names file {} ({}): check the path and permissions".format(
            name, excerpt(exc.strerror or exc, 40)))
    names = []
    for number, line in enumerate(data.decode("utf-8-sig", errors="replace").splitlines(), 1):
        label = line.strip()
        if printable(label) != label:  # the name reaches terminals, video overlays and JSON readers
            raise InputError("names file {} line {}: class name '{}' contains control characters: remove "
                             "them".format(name, number, excerpt(label, 40)))
        if label:
            names.append(label)
    return names


def _names(names, count):
    if names is None:
        return ["class{}".format(i) for i in range(count)]
    names = list(names)
    if len(names) != count:
        raise InputError("the names file lists {} classes but the cfg has {}: pass the .names file the model was "
                         "trained with".format(len(names), count))
    return names


def build_model(plan, params=None, names=None):
    """DarknetDetector or DarknetClassifier for ``plan`` (eval mode), loaded with ``params`` when given."""
    cls = DarknetDetector if plan.task == "detect" else DarknetClassifier
    model = cls(plan, names)
    if params is not None:
        model.load_darknet(params)
    return model.eval()


def load_darknet(cfg_path, weights_path, names_file=None, input_size=None):
    """Parse ``cfg_path``, read ``weights_path`` and build the model; ``input_size`` (h, w) overrides [net]."""
    plan = plan_network(parse_cfg(cfg_path), input_size)
    names = read_names(names_file) if names_file else None
    _, params = read_weights(weights_path, plan)
    return build_model(plan, params, names)


def load_for_export(cfg_path, weights_path, names_file=None, input_size=None):
    """What ``edgecsp.export.onnx_export.load_torch_model`` returns: (model, name, source, source sha256)."""
    if not cfg_path or not weights_path:
        raise InputError("a darknet model needs both its .cfg and its .weights: --darknet MODEL.cfg MODEL.weights")
    plan = plan_network(parse_cfg(cfg_path), input_size)
    if plan.input_shape[0] != 3:  # before reading the weights or building anything
        raise InputError("{} takes {} input channels; edgecsp exports 3-channel (RGB) models: set channels=3 in "
                         "[net]".format(excerpt(os.path.basename(cfg_path), 40), plan.input_shape[0]))
    names = read_names(names_file) if names_file else None
    _, params = read_weights(weights_path, plan)
    model = build_model(plan, params, names)
    digest = hashlib.sha256()
    for path in (cfg_path, weights_path):  # both define the model
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return model, model.model_name, weights_path, digest.hexdigest()
