"""Layout ``yolo_raw``: raw anchor-based YOLO heads, decoded in the runtime.

Written by darknet (``edgecsp export --darknet``), edgecsp's own models, any YOLOv3/v4 export without decode,
and YOLOv7 without ``--grid`` (5-D heads). One output per head, in ``heads`` order, either
``(N, A * (5 + C), H, W)`` as the last 1x1 convolution writes it (``dims: "nchw"``) or ``(N, A, H, W, 5 + C)``
(``dims: "nahwc"``, YOLOv7's raw ``Detect``); per anchor the channels are ``tx, ty, tw, th, objectness,
class_0..class_{C-1}``.

Two box parametrisations, chosen per head by ``new_coords`` (``s`` = ``scale_x_y``, ``g`` = cell index, ``a`` =
anchor in input pixels, ``σ`` = logistic):

* classic darknet / YOLOv3 / YOLOv4::

      x = (σ(tx) * s - 0.5 * (s - 1) + gx) * stride        w = exp(tw) * aw

* ``new_coords`` (YOLOv4-CSP, Scaled-YOLOv4, YOLOv5/v7 with s = 2)::

      x = (σ(tx) * s - 0.5 * (s - 1) + gx) * stride        w = (2 * σ(tw)) ** 2 * aw

``activated`` says whether the graph already applied σ. In the classic form σ is never applied to tw/th (they
feed ``exp``), so an activated classic graph carries raw tw/th and logistic everything else; in the
``new_coords`` form every channel goes through σ. Scores are ``objectness * class probability``.
"""
from typing import List, NamedTuple, Tuple

import numpy as np

from edgecsp.errors import InputError
from edgecsp.runtime.decode import EXP_CLIP, cell_grid, sigmoid
from edgecsp.runtime.layouts import Decoded, Layout, Recognised, checked_outputs, grid_size
from edgecsp.runtime.schema import Field, flag, integer, list_of, number, one_of, record

MAX_SIDE = 8192
NCHW, NAHWC = "nchw", "nahwc"


class HeadMeta(NamedTuple):
    """One YOLO head: its stride in input pixels and its anchors in input pixels."""

    stride: int
    anchors: List[Tuple[float, float]]
    scale_x_y: float = 1.0
    new_coords: bool = False


class YoloParams(NamedTuple):
    heads: List[HeadMeta]
    activated: bool = False  # the graph already applied the logistic
    dims: str = NCHW  # NCHW: (N, A*(5+C), H, W); NAHWC: (N, A, H, W, 5+C)


HEAD_FIELDS = [
    Field("stride", integer(1, MAX_SIDE), required=True),
    Field("anchors", list_of(list_of(number(0, None, low_open=True), 2, 2, tuple), 1, 64), required=True),
    Field("scale_x_y", number(0, 16, low_open=True), default=1.0),
    Field("new_coords", flag(), default=False),
]
MAX_ANCHOR_FACTOR = 100  # an anchor at most this many input sides long (the darknet reader's limit too)


def parse_anchor_groups(text):
    """``"10,14, 23,27; 37,58, 81,82"`` -> [[(10, 14), (23, 27)], [(37, 58), (81, 82)]] (``--anchors``)."""
    groups = []
    for part in str(text).split(";"):
        values = [v for v in part.replace(" ", ",").split(",") if v]
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = []
        if not numbers or len(numbers) % 2 or not all(0 < n < 1e6 for n in numbers):
            raise InputError("--anchors group {!r} is not an even list of positive numbers: write w,h pairs per "
                             "head, heads separated by ';' (e.g. \"23,27,37,58,81,82; 81,82,135,169,344,319\")".format(
                                 part.strip()[:60]))
        groups.append([(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2)])
    return groups


class YoloRaw(Layout):
    name = "yolo_raw"
    writers = "darknet, edgecsp's models, YOLOv3/v4 exports without decode, YOLOv7 without --grid (5-D)"
    fields = (
        Field("heads", list_of(record(HEAD_FIELDS), 1, 16), required=True),
        Field("activated", flag(), default=False),
        Field("dims", one_of(NCHW, NAHWC), default=NCHW),
    )
    export_options = ("anchors", "strides", "scale_x_y", "new_coords", "activated")
    deepstream_parser = None  # nvinfer takes it after `edgecsp export --decode-in-graph` (layout detections)
    legacy_names = ("yolo_raw",)
    graph_decode = True

    def example(self):
        return {"input_size": (64, 96), "classes": 3, "params": {"heads": [
            {"stride": 16, "anchors": [[10, 14], [23, 27]], "scale_x_y": 1.05, "new_coords": False},
            {"stride": 32, "anchors": [[37, 58]], "scale_x_y": 2.0, "new_coords": True}],
            "activated": False, "dims": NCHW}}

    def params_from_format_1(self, document, old_name):
        return {"heads": document.get("heads"), "activated": document.get("activated", False)}

    def deepstream_problem(self, meta):
        if meta.params.dims == NAHWC:  # YOLOv7's raw Detect: its own --grid export decodes in the graph
            return ("its 5-D YOLOv7 heads have no in-graph decode here: export YOLOv7 with `export.py --grid` "
                    "(layout anchor_decoded) or run it with edgecsp infer")
        return super(YoloRaw, self).deepstream_problem(meta)

    def make_params(self, checked):
        return YoloParams([HeadMeta(**h) for h in checked["heads"]], checked["activated"], checked["dims"])

    def params_dict(self, params):
        return {"heads": [dict(h._asdict(), anchors=[list(a) for a in h.anchors]) for h in params.heads],
                "activated": bool(params.activated), "dims": params.dims}

    def problems(self, meta):
        side = max(meta.input_size)
        found = []
        for i, h in enumerate(meta.params.heads):
            if h.stride > side:
                found.append("heads[{}].stride {} is larger than the input ({}x{})".format(i, h.stride, *meta.input_size))
            if max(max(a) for a in h.anchors) > MAX_ANCHOR_FACTOR * side:
                found.append("heads[{}] has an anchor larger than {} x the input side".format(i, MAX_ANCHOR_FACTOR))
        if meta.outputs and len(meta.outputs) != len(meta.params.heads):
            found.append("{} outputs for {} heads".format(len(meta.outputs), len(meta.params.heads)))
        return found

    # -- interface ---------------------------------------------------------------------------------------------
    def output_count(self, meta):
        return len(meta.params.heads)

    def output_shape(self, meta, index):
        head = meta.params.heads[index]
        gh, gw = (grid_size(side, head.stride) for side in meta.input_size)
        if meta.params.dims == NAHWC:
            return (None, len(head.anchors), gh, gw, 5 + meta.num_classes)
        return (None, len(head.anchors) * (5 + meta.num_classes), gh, gw)

    def shape_fits(self, meta, index, dims):
        needed = self.output_shape(meta, index)
        if len(dims) != len(needed):
            return False
        head = meta.params.heads[index]
        grid_axes = (2, 3)
        for axis, (d, n) in enumerate(zip(dims, needed)):
            if d is None or n is None:
                continue
            if axis in grid_axes:  # a grid rounds down or up (darknet pads odd sizes)
                side = meta.input_size[axis - 2]
                if d not in (side // head.stride, n):
                    return False
            elif d != n:
                return False
        return True

    def describe_output(self, meta, index):
        return ("a (N, A, H, W, 5 + classes) head" if meta.params.dims == NAHWC else
                "a (N, anchors x (5 + classes), H / stride, W / stride) head")

    # -- decoding ----------------------------------------------------------------------------------------------
    def decode(self, outputs, meta, batch=None):
        boxes, scores = decode_yolo(outputs, meta)
        return [Decoded(boxes[i], scores[i]) for i in range(boxes.shape[0])]

    def candidates(self, outputs, meta, conf, batch=None):
        return [Decoded(b, s) for b, s in decode_candidates(outputs, meta, conf)]

    # -- import --------------------------------------------------------------------------------------------------
    def recognise(self, outputs, producer):
        """YOLOv7 without --grid: 5-D (N, 3, H, W, 5+C) outputs whose grids halve level by level; anchors are not in
        the file, so the defaults of YOLOv7's cfgs are assumed, and said: yolov7-tiny's (also YOLOv5's) for a graph
        under ``YOLOV7_TINY_MAX_PARAMETERS`` weights (yolov7-tiny 6.2 M), yolov7's and yolov7x's above (37 M, 71 M)."""
        shapes = [s for _, s in outputs]
        if not outputs or any(s is None or len(s) != 5 or None in s[1:] for s in shapes):
            return None
        if len(set(s[4] for s in shapes)) != 1 or shapes[0][4] < 6 or any(s[1] != 3 for s in shapes):
            return None
        height, width = producer.get("input_size") or (None, None)
        if not height:
            return None
        strides = [height // s[2] for s in shapes]
        if any(s * g[2] != height or s * g[3] != width for s, g in zip(strides, shapes)) or len(outputs) != 3:
            return None
        order = sorted(range(3), key=lambda i: strides[i])
        parameters = producer.get("graph_parameters")
        tiny = isinstance(parameters, int) and 0 < parameters < YOLOV7_TINY_MAX_PARAMETERS
        anchors = YOLOV7_TINY_ANCHORS if tiny else YOLOV7_ANCHORS
        heads = [{"stride": strides[i], "anchors": [list(a) for a in anchors[rank]], "scale_x_y": 2.0,
                  "new_coords": True} for rank, i in enumerate(order)]
        return Recognised({"heads": heads, "activated": False, "dims": NAHWC}, [outputs[i][0] for i in order],
                          preprocess={"channel_order": "RGB", "scale": 1.0 / 255.0},
                          nms={"multi_label": False, "iou": 0.45},  # YOLOv7's detect.py: best class per box
                          family="YOLOv7{} without --grid ({} default anchors assumed: pass --layout yolo_raw "
                                 "--anchors for others)".format("-tiny" if tiny else "", "yolov7-tiny's" if tiny
                                                                else "yolov7's"))

    def from_options(self, options, outputs, input_size):
        """``--anchors`` (one group per output, in output order), ``--strides`` (default input / grid),
        ``--scale-x-y``, ``--new-coords``, ``--activated``."""
        if not options.get("anchors"):
            raise InputError("layout yolo_raw needs --anchors: w,h pairs per head in input pixels, heads separated "
                             "by ';' (e.g. \"23,27,37,58,81,82; 81,82,135,169,344,319\")")
        groups = parse_anchor_groups(options["anchors"])
        if len(groups) != len(outputs):
            raise InputError("--anchors has {} groups but the model has {} outputs: give one group per output, in "
                             "output order".format(len(groups), len(outputs)))
        shapes = [s for _, s in outputs]
        if any(s is None or len(s) not in (4, 5) or None in s[1:] for s in shapes):
            raise InputError("layout yolo_raw takes static 4-D (N, A*(5+C), H, W) or 5-D (N, A, H, W, 5+C) outputs, "
                             "got {}: re-export with a fixed input size".format([list(s or ()) for s in shapes]))
        dims = NAHWC if len(shapes[0]) == 5 else NCHW
        strides = options.get("strides") or [input_size[0] // s[2] for s in shapes]
        if len(strides) != len(outputs):
            raise InputError("--strides has {} values for {} outputs: give one per output".format(
                len(strides), len(outputs)))
        heads = [{"stride": int(stride), "anchors": [list(a) for a in group],
                  "scale_x_y": float(options.get("scale_x_y") or 1.0), "new_coords": bool(options.get("new_coords"))}
                 for stride, group in zip(strides, groups)]
        return {"heads": heads, "activated": bool(options.get("activated")), "dims": dims}


    def import_doubts(self, meta, output_ops):
        """Anchors that shrink as the stride grows (the groups given large-to-small against heads ordered
        small-to-large stride) are refused with the order that fits; a partial inversion, and a logistic the
        graph applies or not against ``activated``, are doubts."""
        params = meta.params
        heads = params.heads
        refused, doubts = [], []
        order = sorted(range(len(heads)), key=lambda i: heads[i].stride)
        strides = [heads[i].stride for i in order]
        if len(heads) > 1 and len(set(strides)) == len(strides):
            shrinking = [(a, b) for a, b in zip(order, order[1:]) if anchor_scale(heads[a].anchors) >
                         anchor_scale(heads[b].anchors) * 1.0001]
            described = "; ".join("stride {}: {}".format(heads[i].stride, _show_anchors(heads[i].anchors))
                                  for i in order)
            if len(shrinking) == len(order) - 1:
                by_size = sorted(range(len(heads)), key=lambda i: anchor_scale(heads[i].anchors))
                fixed = [None] * len(heads)
                for rank, i in enumerate(order):  # the smallest anchors to the smallest stride
                    fixed[i] = heads[by_size[rank]].anchors
                refused.append("the anchors shrink as the stride grows ({}): the groups are in the wrong order for "
                               "these outputs; give them in output order, small anchors for small strides: "
                               "--anchors \"{}\"".format(described, "; ".join(_show_anchors(a) for a in fixed)))
            elif shrinking:
                doubts.append("the anchors do not grow with the stride ({}): check that --anchors gives one group "
                              "per output, in output order".format(described))
        ops = [output_ops.get(name) for name in meta.outputs or ()]
        if not params.activated and ops and all(op == "Sigmoid" for op in ops):
            doubts.append("every output comes out of a Sigmoid, but --activated was not given: the runtime would "
                          "apply the logistic a second time; pass --activated (with --new-coords and --scale-x-y 2 "
                          "for yolov4-csp / scaled-YOLOv4 heads)")
        if params.activated:
            raw = [name for name, op in zip(meta.outputs or (), ops) if op in ("Conv", "Add")]
            if raw:
                doubts.append("--activated was given, but {} come{} straight from a {}: the graph applies no logistic "
                              "there; drop --activated".format(", ".join(raw), "s" if len(raw) == 1 else "",
                                                               output_ops.get(raw[0])))
        if params.activated and not any(h.new_coords for h in heads) and ops and all(op == "Sigmoid" for op in ops):
            doubts.append("every channel of the outputs goes through the logistic, but darknet's classic boxes are "
                          "assumed (their w, h feed exp raw): such heads are new_coords ones, pass --new-coords "
                          "(and --scale-x-y 2, yolov4-csp's)")
        return refused, doubts


def anchor_scale(anchors):
    """The geometric mean of sqrt(w * h) over ``anchors``: how large a head's boxes are."""
    return float(np.exp(np.mean([0.5 * np.log(float(w) * float(h)) for w, h in anchors])))


def _show_anchors(anchors):
    return ",".join("{:g},{:g}".format(float(w), float(h)) for w, h in anchors)


YOLOV7_ANCHORS = [[(12, 16), (19, 36), (40, 28)], [(36, 75), (76, 55), (72, 146)],
                  [(142, 110), (192, 243), (459, 401)]]  # cfg/deploy/yolov7.yaml, yolov7x.yaml
YOLOV7_TINY_ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)],
                       [(116, 90), (156, 198), (373, 326)]]  # cfg/deploy/yolov7-tiny.yaml, yolov7-tiny-silu.yaml
YOLOV7_TINY_MAX_PARAMETERS = 20000000  # yolov7-tiny has 6.2 M weights (80 classes), yolov7 37 M


# -- the decode (numpy, float32) ---------------------------------------------------------------------------------
def _as_nchw(out, head, num_classes, dims):
    """A head output as (N, A, 5 + C, H * W) float32, from either dims form."""
    out = np.asarray(out)
    if out.dtype != np.float32:
        out = out.astype(np.float32)  # fp16 engines: decode in float32 so exp/products keep their precision
    per_anchor = 5 + int(num_classes)
    num_anchors = len(head.anchors)
    if dims == NAHWC:
        n, _, h, w, _ = out.shape
        return out.transpose(0, 1, 4, 2, 3).reshape(n, num_anchors, per_anchor, h * w), h, w
    n, _, h, w = out.shape
    return out.reshape(n, num_anchors, per_anchor, h * w), h, w


def decode_head(output, head, num_classes, activated=False, dims=NCHW):
    """Decode one head's output into ``(boxes, scores)``: ``boxes`` ``(N, A*H*W, 4)`` xyxy in network-input
    pixels, ``scores`` ``(N, A*H*W, C)``; both float32, anchor-major then row-major over the grid."""
    raw, h, w = _as_nchw(output, head, num_classes, dims)
    n, num_anchors, _, cells = raw.shape
    act = raw if activated else sigmoid(raw)
    s = np.float32(head.scale_x_y)
    stride = np.float32(head.stride)
    xy = act[:, :, 0:2] * s
    xy += np.float32(-0.5) * (s - np.float32(1.0))
    xy += cell_grid(h, w)
    xy *= stride
    anchors = np.asarray(head.anchors, dtype=np.float32).reshape(1, num_anchors, 2, 1)
    if head.new_coords:
        wh = act[:, :, 2:4] * np.float32(2.0)
        np.square(wh, out=wh)
    else:
        wh = np.exp(np.minimum(raw[:, :, 2:4], np.float32(EXP_CLIP)))
    wh *= anchors
    wh *= np.float32(0.5)
    boxes = np.empty((n, num_anchors, cells, 4), dtype=np.float32)
    # (N, A, 2, HW) -> (N, A, HW, 2) while writing into the output buffer: no extra temporaries.
    np.subtract(xy, wh, out=boxes[..., 0:2].transpose(0, 1, 3, 2))
    np.add(xy, wh, out=boxes[..., 2:4].transpose(0, 1, 3, 2))
    scores = np.empty((n, num_anchors, cells, int(num_classes)), dtype=np.float32)
    np.multiply(act[:, :, 4:5], act[:, :, 5:], out=scores.transpose(0, 1, 3, 2))
    return boxes.reshape(n, num_anchors * cells, 4), scores.reshape(n, num_anchors * cells, int(num_classes))


def _checked(outputs, meta):
    return checked_outputs(outputs, meta, YoloRaw())


def decode_yolo(outputs, meta):
    """Every head of a ``yolo_raw`` batch: ``(boxes (N, M, 4), scores (N, M, C))``, M = all anchor cells."""
    arrays = _checked(outputs, meta)
    p = meta.params
    parts = [decode_head(arr, head, meta.num_classes, p.activated, p.dims) for arr, head in zip(arrays, p.heads)]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([b for b, _ in parts], axis=1), np.concatenate([s for _, s in parts], axis=1)


def objectness_floor(conf, activated):
    # type: (float, bool) -> float
    """The smallest objectness (a logit unless ``activated``) a cell can have and still score above ``conf``.

    A score is ``σ(obj) * σ(cls) <= σ(obj)``, so a cell whose objectness is below ``conf`` never passes; the
    floor is the inverse sigmoid of ``conf``, lowered by a margin that float32 rounding cannot cross (the exact
    threshold is applied again, on the real scores, by NMS).
    """
    conf = float(conf)
    if conf <= 0.0:
        return -np.inf
    if activated:
        return conf * (1.0 - 1e-4)
    if conf >= 1.0:
        return np.inf
    return float(np.log(conf) - np.log1p(-conf)) - 1e-3


def decode_candidates(outputs, meta, conf):
    """Decode only the anchor cells whose objectness can pass ``conf``; per image ``(boxes (K, 4), scores (K, C))``.

    Same values, in the same order (head, anchor, cell), as the rows of ``decode_yolo`` that can score above
    ``conf``: the rest of the grid is never activated, exponentiated or multiplied. Returns a list of N pairs.
    """
    arrays = _checked(outputs, meta)
    p = meta.params
    floor = objectness_floor(conf, p.activated)
    num_classes = int(meta.num_classes)
    per_image = [([], []) for _ in range(arrays[0].shape[0])]
    for arr, head in zip(arrays, p.heads):
        raw, _, w = _as_nchw(arr, head, num_classes, p.dims)
        for i in range(raw.shape[0]):
            anchor, cell = np.nonzero(raw[i, :, 4, :] >= floor)
            if not anchor.size:
                continue
            picked = raw[i][anchor, :, cell]  # (K, 5 + C), in anchor-major then cell order
            boxes, scores = _decode_cells(picked.astype(np.float32, copy=False), anchor, cell, head, w, p.activated)
            per_image[i][0].append(boxes)
            per_image[i][1].append(scores)
    results = []
    for boxes, scores in per_image:
        if boxes:
            results.append((np.concatenate(boxes) if len(boxes) > 1 else boxes[0],
                            np.concatenate(scores) if len(scores) > 1 else scores[0]))
        else:
            results.append((np.zeros((0, 4), np.float32), np.zeros((0, num_classes), np.float32)))
    return results


def _decode_cells(raw, anchor, cell, head, grid_w, activated):
    """``decode_head``'s arithmetic, in its order, for the picked cells only: ``raw`` (K, 5 + C)."""
    act = raw if activated else sigmoid(raw)
    s = np.float32(head.scale_x_y)
    stride = np.float32(head.stride)
    xy = act[:, 0:2] * s
    xy += np.float32(-0.5) * (s - np.float32(1.0))
    grid = np.stack([(cell % grid_w).astype(np.float32), (cell // grid_w).astype(np.float32)], axis=1)
    xy += grid
    xy *= stride
    anchors = np.asarray(head.anchors, dtype=np.float32)[anchor]
    if head.new_coords:
        wh = act[:, 2:4] * np.float32(2.0)
        np.square(wh, out=wh)
    else:
        wh = np.exp(np.minimum(raw[:, 2:4], np.float32(EXP_CLIP)))
    wh *= anchors
    wh *= np.float32(0.5)
    boxes = np.empty((raw.shape[0], 4), dtype=np.float32)
    np.subtract(xy, wh, out=boxes[:, 0:2])
    np.add(xy, wh, out=boxes[:, 2:4])
    scores = act[:, 4:5] * act[:, 5:]
    return boxes, scores.astype(np.float32, copy=False)


def yolo_meta(names, input_size, heads, activated=False, dims=NCHW, **fields):
    """A ``ModelMeta`` of layout ``yolo_raw`` (``heads``: HeadMeta list); ``fields`` are ModelMeta's others."""
    from edgecsp.runtime.meta import ModelMeta

    return ModelMeta(names=list(names), input_size=tuple(input_size), layout=YoloRaw.name,
                     params=YoloParams([HeadMeta(*h) for h in heads], bool(activated), dims), **fields)
