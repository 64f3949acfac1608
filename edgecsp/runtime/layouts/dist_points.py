"""Layout ``dist_points``: raw anchor-free heads, one class map and one distance map per level.

Written by mmdet's RTMDet (``bbox_head(extract_feat(x))`` exported as it is: ``(*cls_scores, *bbox_preds)``) and
the heads of the same shape (FCOS-like point heads without a centerness branch). Per level of stride ``s``:

* a class map ``(N, C, H, W)`` of logits (``activated``: already probabilities), no objectness;
* a distance map ``(N, 4, H, W)`` of ``(l, t, r, b)`` from the level's points, in input pixels (RTMDet multiplies
  by the stride in its head) or, with ``distances: "strides"``, in strides.

The point of cell ``(x, y)`` is ``((x + offset) * s, (y + offset) * s)``: mmdet's ``MlvlPointGenerator``, whose
offset is 0 for RTMDet (the cell's corner, not its centre) and 0.5 for FCOS. A box is ``(px - l, py - t, px + r,
py + b)``; ``clip`` clamps it to the network input as mmdet does (its ``img_shape`` is the padded input) before
NMS. Scores are per class: mmdet keeps every (point, class) above its threshold, which is what multi-label NMS
does. ``levels`` says which output (an index into ``ModelMeta.outputs``) holds each level's class and distance
map, so the outputs keep the order of the file.
"""
import numpy as np

from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.decode import cell_grid, sigmoid
from edgecsp.runtime.layouts import Decoded, Layout, Recognised, checked_outputs, keep_passing
from edgecsp.runtime.layouts.yolo_raw import objectness_floor
from edgecsp.runtime.schema import Field, flag, integer, list_of, number, one_of, record

MAX_SIDE = 8192
MAX_LEVELS = 8
PIXELS, STRIDES = "pixels", "strides"
LEVEL_FIELDS = [
    Field("stride", integer(1, MAX_SIDE), required=True),
    Field("cls", integer(0, 2 * MAX_LEVELS - 1), required=True),  # index of the class map in ModelMeta.outputs
    Field("box", integer(0, 2 * MAX_LEVELS - 1), required=True),  # index of the distance map
]
# mmdet's RTMDet data_preprocessor: BGR, no scaling, ImageNet mean/std in BGR order; keep-ratio resize and Pad to
# the input size at the bottom/right with 114
RTMDET_PREPROCESS = {"channel_order": "BGR", "scale": 1.0, "mean": [103.53, 116.28, 123.675],
                     "std": [57.375, 57.12, 58.395], "pad_position": "top_left", "pad_value": 114, "letterbox": True}


def _grid_sizes(side, stride):
    """The sizes a level's map can have over ``side`` pixels (convolutions round odd sizes up, pools down)."""
    return (int(side) // int(stride), -(-int(side) // int(stride)))


class DistPoints(Layout):
    name = "dist_points"
    writers = "mmdet RTMDet raw heads (class logits + l,t,r,b distances per level), FCOS-like point heads"
    fields = (
        Field("levels", list_of(record(LEVEL_FIELDS), 1, MAX_LEVELS), required=True),
        Field("offset", number(0, 1), default=0.0),  # point = (cell + offset) * stride
        Field("activated", flag(), default=False),  # class maps are probabilities already
        Field("clip", flag(), default=True),  # clamp boxes to the network input before NMS (mmdet)
        Field("distances", one_of(PIXELS, STRIDES), default=PIXELS),
    )
    export_options = ("strides", "activated")

    def example(self):
        return {"input_size": (64, 96), "classes": 3, "params": {
            "levels": [{"stride": 8, "cls": 0, "box": 2}, {"stride": 16, "cls": 1, "box": 3}],
            "offset": 0.0, "activated": False, "clip": True, "distances": PIXELS}}

    def problems(self, meta):
        levels = meta.params["levels"]
        found = []
        used = sorted([lv["cls"] for lv in levels] + [lv["box"] for lv in levels])
        if used != list(range(2 * len(levels))):
            found.append("levels' cls and box indices {} are not each output once (0..{})".format(
                used, 2 * len(levels) - 1))
        side = max(meta.input_size)
        for i, lv in enumerate(levels):
            if lv["stride"] > side:
                found.append("levels[{}].stride {} is larger than the input ({}x{})".format(
                    i, lv["stride"], *meta.input_size))
        if meta.outputs and len(meta.outputs) != 2 * len(levels):
            found.append("{} outputs for {} levels (a class and a distance map each)".format(
                len(meta.outputs), len(levels)))
        return found

    # -- interface ---------------------------------------------------------------------------------------------
    def output_count(self, meta):
        return 2 * len(meta.params["levels"])

    def _level_of(self, meta, index):
        for lv in meta.params["levels"]:
            if index in (lv["cls"], lv["box"]):
                return lv, index == lv["box"]
        raise MetadataError("output {} belongs to no level of the dist_points metadata: re-export the "
                            "model".format(index))

    def output_shape(self, meta, index):
        lv, is_box = self._level_of(meta, index)
        h, w = (_grid_sizes(side, lv["stride"])[1] for side in meta.input_size)
        return (None, 4 if is_box else meta.num_classes, h, w)

    def shape_fits(self, meta, index, dims):
        lv, is_box = self._level_of(meta, index)
        if len(dims) != 4 or dims[1] not in (None, 4 if is_box else meta.num_classes):
            return False
        return all(d is None or d in _grid_sizes(side, lv["stride"]) for d, side in zip(dims[2:], meta.input_size))

    def describe_output(self, meta, index):
        lv, is_box = self._level_of(meta, index)
        return ("the stride-{} (N, 4, H, W) distance map" if is_box else
                "the stride-{} (N, classes, H, W) class map").format(lv["stride"])

    # -- decoding ----------------------------------------------------------------------------------------------
    def _arrays(self, outputs, meta):
        arrays = checked_outputs(outputs, meta, self)
        for lv in meta.params["levels"]:
            if arrays[lv["cls"]].shape[2:] != arrays[lv["box"]].shape[2:]:
                raise MetadataError("the stride-{} class map is {}x{} but its distance map {}x{}: the levels in the "
                                    "metadata do not match the model; re-export it".format(
                                        lv["stride"], *(arrays[lv["cls"]].shape[2:] + arrays[lv["box"]].shape[2:])))
        return arrays, arrays[0].shape[0]

    def decode(self, outputs, meta, batch=None):
        arrays, n = self._arrays(outputs, meta)
        p = meta.params
        boxes, scores = [], []
        for lv in p["levels"]:
            cls, box = arrays[lv["cls"]], arrays[lv["box"]]
            _, c, h, w = cls.shape
            logits = np.ascontiguousarray(cls.reshape(n, c, h * w).transpose(0, 2, 1))  # (N, HW, C)
            scores.append(logits if p["activated"] else sigmoid(logits))
            distances = box.reshape(n, 4, h * w).transpose(0, 2, 1)  # (N, HW, 4)
            points = cell_grid(h, w)[0, 0].T  # (HW, 2): x, y
            boxes.append(_boxes(points, distances, lv["stride"], meta))
        boxes = np.concatenate(boxes, axis=1) if len(boxes) > 1 else boxes[0]
        scores = np.concatenate(scores, axis=1) if len(scores) > 1 else scores[0]
        return [Decoded(boxes[i], scores[i]) for i in range(n)]

    def candidates(self, outputs, meta, conf, batch=None):
        """Only the points whose best class can pass ``conf`` are activated and decoded (the best logit is found
        without the logistic); the same values, in the same order, as ``decode``'s rows that pass."""
        arrays, n = self._arrays(outputs, meta)
        p = meta.params
        floor = objectness_floor(conf, p["activated"])
        per_image = [([], []) for _ in range(n)]
        for lv in p["levels"]:
            cls, box = arrays[lv["cls"]], arrays[lv["box"]]
            _, c, h, w = cls.shape
            cls, box = cls.reshape(n, c, h * w), box.reshape(n, 4, h * w)
            best = cls.max(axis=1) if c else np.full((n, h * w), -np.inf, np.float32)
            for i in range(n):
                cells = np.flatnonzero(best[i] >= floor)
                if not cells.size:
                    continue
                logits = np.ascontiguousarray(cls[i][:, cells].T)  # (K, C)
                per_image[i][1].append(logits if p["activated"] else sigmoid(logits))
                points = cell_grid(h, w)[0, 0].T[cells]
                per_image[i][0].append(_boxes(points, box[i][:, cells].T, lv["stride"], meta))
        results = []
        for boxes, scores in per_image:
            if boxes:
                decoded = Decoded(np.concatenate(boxes) if len(boxes) > 1 else boxes[0],
                                  np.concatenate(scores) if len(scores) > 1 else scores[0])
            else:
                decoded = Decoded(np.zeros((0, 4), np.float32), np.zeros((0, meta.num_classes), np.float32))
            results.append(keep_passing(decoded, conf))
        return results

    # -- import --------------------------------------------------------------------------------------------------
    def recognise(self, outputs, producer):
        """2L 4-D outputs, L >= 2 of them with 4 channels and L with the same C != 4 channels, one of each per grid,
        grids halving level by level: RTMDet's raw heads (its preprocessing assumed, and said)."""
        input_size = producer.get("input_size")
        if len(outputs) < 4 or len(outputs) % 2 or not input_size:
            return None
        try:
            levels = _pair_levels(outputs, input_size, guess_order=False)
        except InputError:
            return None
        strides = [lv["stride"] for lv in levels]
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            return None
        return Recognised({"levels": levels, "offset": 0.0, "activated": False, "clip": True,
                           "distances": PIXELS}, [name for name, _ in outputs],
                          preprocess=dict(RTMDET_PREPROCESS),
                          nms={"multi_label": True, "iou": 0.65},  # RTMDet's test_cfg
                          family="mmdet RTMDet (raw heads; RTMDet's preprocessing assumed: BGR, ImageNet mean/std, "
                                 "padded bottom-right with 114)")

    def from_options(self, options, outputs, input_size):
        """Class and distance maps paired by grid size (a class map before its distance map when the class count
        is 4, as mmdet exports them); ``--strides`` (default input / grid), ``--activated``, ``--param offset=0.5``,
        ``--param clip=false``, ``--param distances=strides``."""
        unknown = sorted(set(options) - set(["strides", "activated", "offset", "clip", "distances", "levels"]))
        if unknown:
            raise InputError("layout dist_points takes --strides, --activated and --param offset=, clip=, distances=, "
                             "levels=, not {}".format(", ".join(unknown)))
        levels = options.get("levels") or _pair_levels(outputs, input_size, guess_order=True)
        strides = options.get("strides")
        if strides and not options.get("levels"):
            if len(strides) != len(levels):
                raise InputError("--strides has {} values for {} levels (a class and a distance map each): give one "
                                 "per level, smallest first".format(len(strides), len(levels)))
            for lv, stride in zip(levels, sorted(int(s) for s in strides)):
                lv["stride"] = stride
        # the values go through the layout's fields when the metadata is read: a wrong one is refused there
        return {"levels": levels, "offset": options.get("offset", 0.0), "activated": options.get("activated", False),
                "clip": options.get("clip", True), "distances": options.get("distances", PIXELS)}


def _boxes(points, distances, stride, meta):
    """xyxy float32 boxes from grid ``points`` (K, 2) in cells and ``distances`` (..., K, 4), as mmdet's
    ``distance2bbox`` computes them (then clamped to the input when ``clip``)."""
    p = meta.params
    s = np.float32(stride)
    xy = points + np.float32(p["offset"])
    xy *= s
    if p["distances"] == STRIDES:
        distances = distances * s
    boxes = np.empty(distances.shape[:-1] + (4,), np.float32)
    np.subtract(xy, distances[..., 0:2], out=boxes[..., 0:2])
    np.add(xy, distances[..., 2:4], out=boxes[..., 2:4])
    if p["clip"]:
        height, width = meta.input_size
        np.clip(boxes[..., 0::2], np.float32(0), np.float32(width), out=boxes[..., 0::2])
        np.clip(boxes[..., 1::2], np.float32(0), np.float32(height), out=boxes[..., 1::2])
    return boxes


def _pair_levels(outputs, input_size, guess_order):
    """``levels`` (stride, cls, box; smallest stride first) from ``outputs`` ``[(name, shape)]``: per grid size one
    class map and one 4-channel distance map. ``guess_order``: when the class maps have 4 channels too, the first
    output of a grid is its class map (mmdet's order). InputError saying why otherwise."""
    shapes = [s for _, s in outputs]
    if not outputs or len(outputs) % 2 or any(s is None or len(s) != 4 or None in s[1:] for s in shapes):
        raise InputError("layout dist_points needs pairs of static 4-D (N, C, H, W) class maps and (N, 4, H, W) "
                         "distance maps, got {}".format([list(s or ()) for s in shapes]))
    by_grid = {}
    for index, s in enumerate(shapes):
        by_grid.setdefault(tuple(s[2:]), []).append(index)
    channels = set(s[1] for s in shapes) - set([4])
    if len(channels) > 1 or any(len(v) != 2 for v in by_grid.values()):
        raise InputError("layout dist_points needs one class map and one 4-channel distance map per grid size, with "
                         "the same class count; got {}".format([list(s) for s in shapes]))
    if not channels and not guess_order:
        raise InputError("every output has 4 channels: cannot tell class maps from distance maps")
    height, width = (int(v) for v in input_size)
    levels = []
    for (h, w), pair in by_grid.items():
        if channels:
            cls = [i for i in pair if shapes[i][1] != 4]
            box = [i for i in pair if shapes[i][1] == 4]
            if len(cls) != 1:
                raise InputError("the {}x{} grid has no single class map: {}".format(
                    h, w, [list(shapes[i]) for i in pair]))
            cls, box = cls[0], box[0]
        else:
            cls, box = sorted(pair)
        stride = -(-height // h)
        if h not in _grid_sizes(height, stride) or w not in _grid_sizes(width, stride):
            raise InputError("a {}x{} map does not divide the {}x{} input into square cells: pass --strides".format(
                h, w, height, width))
        levels.append({"stride": stride, "cls": cls, "box": box})
    levels.sort(key=lambda lv: lv["stride"])
    if len(set(lv["stride"] for lv in levels)) != len(levels):
        raise InputError("two levels have the same stride: pass --strides")
    return levels
