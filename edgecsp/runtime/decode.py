"""Decode raw YOLO head outputs (layout ``yolo_raw``, see ``meta.py``) into boxes and per-class scores.

Two box parametrisations, chosen per head by ``HeadMeta.new_coords`` (``s`` = ``scale_x_y``, ``g`` = cell index,
``a`` = anchor in input pixels, ``σ`` = logistic):

* classic darknet / YOLOv3 / YOLOv4::

      x = (σ(tx) * s - 0.5 * (s - 1) + gx) * stride        w = exp(tw) * aw

* ``new_coords`` (YOLOv4-CSP, Scaled-YOLOv4)::

      x = (σ(tx) * s - 0.5 * (s - 1) + gx) * stride        w = (2 * σ(tw)) ** 2 * aw

``meta.activated`` says whether the graph already applied σ. In the classic form σ is never applied to tw/th
(they feed ``exp``), so an activated classic graph carries raw tw/th and logistic everything else; in the
``new_coords`` form every channel goes through σ.

Scores are ``objectness * class probability``, as darknet and the YOLOv4 evaluation compute them. Everything is
vectorised numpy in float32; Python 3.6 compatible.
"""
import threading

import numpy as np

from edgecsp.errors import MetadataError
from edgecsp.runtime.meta import DECODED_LAYOUT, RAW_LAYOUT

# exp(tw) beyond e**10 (22,000 x the anchor) is never a real box; the cap keeps later area products (x * y up to
# ~1e14) far from float32 overflow, which would turn IoUs into NaN in NMS.
EXP_CLIP = 10.0
# float32 exp overflows above 88.7, and 1 / (1 + e**85) is already subnormal (slow on some CPUs); at 80 the
# result stays a normal float (~1.8e-35), indistinguishable from 0 for any score.
SIGMOID_CLIP = 80.0

_GRIDS = {}
_GRIDS_LOCK = threading.Lock()
_GRIDS_MAX = 32  # a handful of input sizes at most; the bound only protects against pathological callers


def sigmoid(x):
    """Numerically safe float32 logistic (no overflow warnings for any input)."""
    t = np.clip(np.asarray(x, dtype=np.float32), -SIGMOID_CLIP, SIGMOID_CLIP)
    np.negative(t, out=t)
    np.exp(t, out=t)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    return t


def cell_grid(h, w):
    """Cell offsets for an HxW map as a read-only float32 array shaped (1, 1, 2, H*W): row 0 = x, row 1 = y."""
    key = (h, w)
    grid = _GRIDS.get(key)
    if grid is None:
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        grid = np.stack([xs.reshape(-1), ys.reshape(-1)])[None, None]
        grid.setflags(write=False)  # shared across calls and threads
        with _GRIDS_LOCK:
            if len(_GRIDS) >= _GRIDS_MAX:
                _GRIDS.clear()
            _GRIDS[key] = grid
    return grid


def _checked_head(output, head, num_classes):
    """``output`` as an array if it is a ``(N, A*(5+C), H, W)`` head of ``head``; MetadataError otherwise."""
    out = np.asarray(output)
    if out.ndim != 4:
        raise MetadataError("a yolo_raw head output must be 4-D (N, A*(5+C), H, W), got shape {}: the model's "
                            "output layout does not match its edgecsp metadata; re-export it".format(out.shape))
    expected = len(head.anchors) * (5 + int(num_classes))
    if out.shape[1] != expected:
        raise MetadataError("head with stride {} has {} channels but its metadata says {} anchors x (5 + {} classes)"
                            " = {}: the class names or anchors in the metadata do not belong to this model; "
                            "re-export it".format(head.stride, out.shape[1], len(head.anchors), num_classes,
                                                  expected))
    return out


def decode_head(output, head, num_classes, activated=False):
    """Decode one head's output ``(N, A*(5+C), H, W)`` into ``(boxes, scores)``.

    ``boxes`` is ``(N, A*H*W, 4)`` xyxy in network-input pixels, ``scores`` is ``(N, A*H*W, C)``; both float32,
    anchor-major then row-major over the grid.
    """
    out = _checked_head(output, head, num_classes)
    if out.dtype != np.float32:
        out = out.astype(np.float32)  # fp16 engines: decode in float32 so exp/products keep their precision
    n, _, h, w = out.shape
    num_anchors = len(head.anchors)
    per_anchor = 5 + int(num_classes)
    cells = h * w
    raw = out.reshape(n, num_anchors, per_anchor, cells)
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


def _ordered_outputs(outputs, meta):
    if isinstance(outputs, dict):
        if not meta.outputs:
            raise MetadataError("outputs were given by name but the metadata lists no output names: pass them as a "
                                "list in heads order or re-export the model")
        missing = [name for name in meta.outputs if name not in outputs]
        if missing:
            raise MetadataError("model outputs {} named in the metadata are missing (got {}): re-export the "
                                "model".format(missing, sorted(outputs)))
        return [outputs[name] for name in meta.outputs]
    return list(outputs)


def check_layout(meta):
    """MetadataError unless the runtime can decode ``meta``'s outputs (layout ``yolo_raw``)."""
    if meta.layout != RAW_LAYOUT:
        if meta.layout == DECODED_LAYOUT:
            raise MetadataError("this model decodes its boxes in the graph (exported with --decode-in-graph, for "
                                "DeepStream): run the export without --decode-in-graph with edgecsp")
        raise MetadataError("cannot decode output layout {!r}: this edgecsp decodes yolo_raw only".format(meta.layout))


def _head_arrays(outputs, meta):
    """The outputs of a ``yolo_raw`` model as a list in heads order; MetadataError when they cannot be that."""
    check_layout(meta)
    arrays = _ordered_outputs(outputs, meta)
    if len(arrays) != len(meta.heads):
        raise MetadataError("the model returned {} outputs but its metadata describes {} heads: re-export the "
                            "model".format(len(arrays), len(meta.heads)))
    return arrays


def _check_grid(index, out_shape, head, meta):
    in_h, in_w = int(meta.input_size[0]), int(meta.input_size[1])
    stride = int(head.stride)
    ok_h = (in_h // stride, -(-in_h // stride))
    ok_w = (in_w // stride, -(-in_w // stride))
    if out_shape[2] not in ok_h or out_shape[3] not in ok_w:
        raise MetadataError("output {} has a {}x{} grid but head stride {} at input {}x{} needs {}x{}: the outputs "
                            "are not in heads order or the input size in the metadata is wrong; re-export the "
                            "model".format(index, out_shape[2], out_shape[3], stride, in_h, in_w, ok_h[1], ok_w[1]))


def decode_yolo(outputs, meta):
    """Decode all heads of a ``yolo_raw`` model.

    ``outputs`` is a list of arrays in ``meta.heads`` order (or a dict keyed by ``meta.outputs`` names).
    Returns ``(boxes, scores)``: ``(N, M, 4)`` xyxy in network-input pixels and ``(N, M, C)`` = obj * cls,
    with M the total number of anchor cells over all heads.
    """
    arrays = _head_arrays(outputs, meta)
    all_boxes, all_scores = [], []
    batch = None
    for i, (arr, head) in enumerate(zip(arrays, meta.heads)):
        arr = np.asarray(arr)
        if arr.ndim == 4:
            _check_grid(i, arr.shape, head, meta)
            if batch is not None and arr.shape[0] != batch:
                raise MetadataError("output {} has batch {} but output 0 has batch {}: the outputs do not come from "
                                    "one inference".format(i, arr.shape[0], batch))
            batch = arr.shape[0]
        boxes, scores = decode_head(arr, head, meta.num_classes, meta.activated)
        all_boxes.append(boxes)
        all_scores.append(scores)
    if len(all_boxes) == 1:
        return all_boxes[0], all_scores[0]
    return np.concatenate(all_boxes, axis=1), np.concatenate(all_scores, axis=1)


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
    arrays = _head_arrays(outputs, meta)
    floor = objectness_floor(conf, meta.activated)
    num_classes = int(meta.num_classes)
    per_image = None
    for index, (arr, head) in enumerate(zip(arrays, meta.heads)):
        out = _checked_head(arr, head, num_classes)
        _check_grid(index, out.shape, head, meta)
        n, _, h, w = out.shape
        num_anchors, per_anchor = len(head.anchors), 5 + num_classes
        if per_image is None:
            per_image = [([], []) for _ in range(n)]
        elif len(per_image) != n:
            raise MetadataError("output {} has batch {} but output 0 has batch {}: the outputs do not come from "
                                "one inference".format(index, n, len(per_image)))
        raw = out.reshape(n, num_anchors, per_anchor, h * w)
        for i in range(n):
            anchor, cell = np.nonzero(raw[i, :, 4, :] >= floor)
            if not anchor.size:
                continue
            picked = raw[i][anchor, :, cell]  # (K, 5 + C), in anchor-major then cell order
            boxes, scores = _decode_cells(picked.astype(np.float32, copy=False), anchor, cell, head, w,
                                          meta.activated)
            per_image[i][0].append(boxes)
            per_image[i][1].append(scores)
    results = []
    for boxes, scores in per_image or []:
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
