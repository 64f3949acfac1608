"""Append the YOLO decode to an exported ONNX: one output ``(N, M, 6)`` that DeepStream reads as it is.

Each row is ``x1, y1, x2, y2, score, class`` in network-input pixels (score = objectness x best class
probability, class as a float index), over all anchor cells of all heads: the layout of DeepStream-Yolo's
``NvDsInferParseYolo`` (marcoslucianops/DeepStream-Yolo since its DeepStream 7.1 update, 2024-11), which then
only thresholds and clusters. The nodes compute exactly what ``edgecsp.runtime.layouts.yolo_raw.decode_head`` computes, in
the same order, for both darknet box forms (classic with ``scale_x_y``, and ``new_coords``) and for graphs that
already apply the logistic (``activated``); every op is in TensorRT 8.2's ONNX parser at opset 11-13.
"""
import numpy as np

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.decode import EXP_CLIP, cell_grid
from edgecsp.runtime.layouts.detections import DEFAULT_COLUMNS, Detections
from edgecsp.runtime.layouts.yolo_raw import NCHW
from edgecsp.runtime.meta import ModelMeta

OUTPUT_NAME = "output"


class _Graph(object):
    """Small helper: unique names, constants as initializers, nodes appended to ``graph``."""

    def __init__(self, onnx, graph):
        self.onnx, self.graph, self.count = onnx, graph, 0

    def name(self, hint):
        self.count += 1
        return "edgecsp_decode/{}_{}".format(hint, self.count)

    def const(self, value, hint, dtype=np.float32):
        name = self.name(hint)
        self.graph.initializer.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type, inputs, hint, **attributes):
        out = self.name(hint)
        self.graph.node.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attributes))
        return out

    def slice(self, x, start, end, axis):
        return self.op("Slice", [x, self.const([start], "start", np.int64), self.const([end], "end", np.int64),
                                 self.const([axis], "axis", np.int64)], "slice")


def _head(g, tensor, head, num_classes, activated, grid_hw):
    """(boxes (N, A*HW, 4), scores (N, A*HW, C)) tensor names for one head output."""
    h, w = grid_hw
    anchors = len(head.anchors)
    per_anchor = 5 + num_classes
    cells = h * w
    raw = g.op("Reshape", [tensor, g.const([0, anchors, per_anchor, cells], "shape", np.int64)], "raw")
    act = raw if activated else g.op("Sigmoid", [raw], "act")
    s = float(head.scale_x_y)
    xy = g.op("Mul", [g.slice(act, 0, 2, 2), g.const(s, "scale_x_y")], "xy")
    xy = g.op("Add", [xy, g.const(np.float32(-0.5) * (np.float32(s) - np.float32(1.0)), "xy_shift")], "xy")
    xy = g.op("Add", [xy, g.const(cell_grid(h, w), "grid")], "xy")
    xy = g.op("Mul", [xy, g.const(float(head.stride), "stride")], "xy")
    anchor = g.const(np.asarray(head.anchors, np.float32).reshape(1, anchors, 2, 1), "anchors")
    if head.new_coords:
        wh = g.op("Mul", [g.slice(act, 2, 4, 2), g.const(2.0, "two")], "wh")
        wh = g.op("Mul", [wh, wh], "wh")
    else:
        wh = g.op("Exp", [g.op("Min", [g.slice(raw, 2, 4, 2), g.const(EXP_CLIP, "exp_clip")], "tw")], "wh")
    wh = g.op("Mul", [wh, anchor], "wh")
    half = g.op("Mul", [wh, g.const(0.5, "half")], "half")
    corners = g.op("Concat", [g.op("Sub", [xy, half], "x1y1"), g.op("Add", [xy, half], "x2y2")], "xyxy", axis=2)
    boxes = g.op("Transpose", [corners], "boxes", perm=[0, 1, 3, 2])  # (N, A, HW, 4)
    boxes = g.op("Reshape", [boxes, g.const([0, anchors * cells, 4], "shape", np.int64)], "boxes")
    scores = g.op("Mul", [g.slice(act, 4, 5, 2), g.slice(act, 5, per_anchor, 2)], "scores")
    scores = g.op("Transpose", [scores], "scores", perm=[0, 1, 3, 2])
    scores = g.op("Reshape", [scores, g.const([0, anchors * cells, num_classes], "shape", np.int64)], "scores")
    return boxes, scores


def grid_sizes(model, meta):
    """(H, W) of every head output, from the graph's static shapes (or the input size and strides)."""
    shapes = {}
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    sizes = []
    for name, head in zip(meta.outputs, meta.params.heads):
        dims = shapes.get(name)
        if dims is None:
            raise InputError("the ONNX has no output {!r} that its metadata names: re-export it".format(name))
        if len(dims) == 4 and dims[2] and dims[3]:
            sizes.append((dims[2], dims[3]))
        else:
            sizes.append((meta.input_size[0] // head.stride, meta.input_size[1] // head.stride))
    return sizes


def append_decode(model, meta):
    # type: (object, ModelMeta) -> tuple
    """``(decoded onnx.ModelProto, its ModelMeta)`` for a ``yolo_raw`` detector; ``model`` is not modified."""
    onnx = require("onnx", "appending the YOLO decode to an ONNX")
    if not meta.spec.graph_decode or meta.params.dims != NCHW:
        raise InputError("--decode-in-graph appends the decode of 4-D yolo_raw heads, not of a {} model: {}".format(
            meta.layout, "its outputs are already (N, K, 6) boxes: drop --decode-in-graph"
            if meta.spec.deepstream_parser else "DeepStream-Yolo's parser does not take its outputs"))
    decoded = onnx.ModelProto()
    decoded.CopyFrom(model)
    graph = decoded.graph
    g = _Graph(onnx, graph)
    boxes, scores = [], []
    grids = grid_sizes(model, meta)
    for name, head, hw in zip(meta.outputs, meta.params.heads, grids):
        b, s = _head(g, name, head, meta.num_classes, meta.params.activated, hw)
        boxes.append(b)
        scores.append(s)
    all_boxes = boxes[0] if len(boxes) == 1 else g.op("Concat", boxes, "all_boxes", axis=1)
    all_scores = scores[0] if len(scores) == 1 else g.op("Concat", scores, "all_scores", axis=1)
    opset = max([o.version for o in decoded.opset_import if o.domain in ("", "ai.onnx")] or [13])
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18
        best = g.op("ReduceMax", [all_scores, g.const([2], "axes", np.int64)], "best", keepdims=1)
    else:
        best = g.op("ReduceMax", [all_scores], "best", axes=[2], keepdims=1)
    label = g.op("Cast", [g.op("ArgMax", [all_scores], "label", axis=2, keepdims=1)], "label",
                 to=onnx.TensorProto.FLOAT)
    graph.node.append(onnx.helper.make_node("Concat", [all_boxes, best, label], [OUTPUT_NAME], name=OUTPUT_NAME,
                                            axis=2))
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    cells = sum(len(h.anchors) * hh * ww for h, (hh, ww) in zip(meta.params.heads, grids))
    out = onnx.helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, [
        batch.dim_param if batch.HasField("dim_param") else (batch.dim_value or "N"), cells, 6])
    del graph.output[:]
    graph.output.append(out)
    layout = Detections()
    new_meta = meta._replace(layout=layout.name, outputs=[OUTPUT_NAME], params=layout.read_params(
        {"columns": DEFAULT_COLUMNS, "nms_applied": False, "rows": cells}, "the decoded model")).with_extra(
        decode_in_graph={"layout": "x1,y1,x2,y2,score,class", "cells": cells,
                         "parser": "DeepStream-Yolo NvDsInferParseYolo"})
    return decoded, new_meta


def decode_reference(outputs, meta):
    """What the appended nodes must give for raw head ``outputs`` of the ``yolo_raw`` model ``meta``:
    ``(N, M, 6)`` from the numpy decoder."""
    from edgecsp.runtime.layouts.yolo_raw import decode_yolo

    boxes, scores = decode_yolo(outputs, meta)
    return np.concatenate([boxes, scores.max(axis=2, keepdims=True),
                           scores.argmax(axis=2)[..., None].astype(np.float32)], axis=2)
