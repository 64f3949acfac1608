"""Layout ``anchor_free``: decoded anchor-free boxes with per-class scores and no objectness.

Written by Ultralytics' default ONNX export of YOLOv5u, YOLOv8, YOLOv9, YOLO11, YOLO12, and of YOLOv10 and YOLO26
unless they are exported end-to-end (``nms=False`` in Ultralytics 8.4, layout ``detections``): one output
``(N, 4 + C, M)`` holding, for each of the M anchor points (every cell of every level, strides 8, 16 and 32 for
the standard models), ``cx, cy, w, h`` in network-input pixels and then C class scores, already through the
logistic. ``transposed`` reads ``(N, M, 4 + C)``, which re-exports for TensorRT often write; ``points`` is M when
the model has a static size. The decode only turns the centre form into corners (``x1 = cx - w / 2``, Ultralytics'
``xywh2xyxy`` in float32, so boxes are bit-identical to its own). Ultralytics keeps each point's best class
(``postprocess(..., multi_label=False)``, IoU 0.7).
"""
import ast

import numpy as np

from edgecsp.errors import InputError
from edgecsp.runtime.layouts import Decoded, Layout, Recognised, as_outputs, check_array, level_cells
from edgecsp.runtime.schema import Field, flag, integer, optional

STANDARD_STRIDES = ((8, 16, 32), (8, 16, 32, 64), (4, 8, 16, 32))  # P3-P5, P6 models (-p6), P2 models (-p2)
# what Ultralytics' predictor does to a frame (LetterBox(auto=False), padding 114 centred, BGR -> RGB, / 255)
ULTRALYTICS_PREPROCESS = {"letterbox": True, "pad_value": 114, "pad_position": "center", "channel_order": "RGB",
                          "scale": 1.0 / 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
ULTRALYTICS_NMS = {"multi_label": False, "iou": 0.7}  # its predictor: best class per box, cfg iou 0.7
MAX_POINTS = 1 << 26


class AnchorFree(Layout):
    name = "anchor_free"
    writers = ("Ultralytics YOLOv5u/v8/v9/11/12, and YOLOv10/YOLO26 not exported end-to-end (their default ONNX "
               "export: (N, 4 + classes, points))")
    fields = (
        Field("transposed", flag(), default=False),  # (N, M, 4 + C) instead of (N, 4 + C, M)
        Field("points", optional(integer(1, MAX_POINTS))),  # M when static
    )

    def example(self):
        return {"input_size": (64, 96), "classes": 3, "params": {"transposed": False, "points": 8 * 12 + 4 * 6 + 2 * 3}}

    def problems(self, meta):
        height, width = meta.input_size
        points = meta.params["points"]
        if points is not None and points > height * width:
            return ["anchor_free points {} exceed the input's {}x{} pixels".format(points, height, width)]
        return []

    def deepstream_problem(self, meta):
        return ("DeepStream-Yolo's NvDsInferParseYolo reads (N, M, 6) x1 y1 x2 y2 score class rows, not {}: export "
                "with Ultralytics' `nms=True` (layout detections; TensorRT 8.5 or later) or DeepStream-Yolo's own "
                "export script, then `edgecsp export --onnx`".format(self.describe_output(meta, 0)))

    # -- interface ---------------------------------------------------------------------------------------------
    def output_shape(self, meta, index):
        width = 4 + meta.num_classes
        points = meta.params["points"]
        return (None, points, width) if meta.params["transposed"] else (None, width, points)

    def describe_output(self, meta, index):
        return "a (N, points, 4 + classes) output" if meta.params["transposed"] else \
            "a (N, 4 + classes, points) output"

    # -- decoding ----------------------------------------------------------------------------------------------
    def _channels_first(self, outputs, meta):
        """The batch as (N, 4 + C, M) float32 (a view of the transposed form)."""
        (array,) = as_outputs(outputs, meta, 1)
        rows = check_array(array, meta, self, 0)
        return rows.transpose(0, 2, 1) if meta.params["transposed"] else rows

    def decode(self, outputs, meta, batch=None):
        rows = self._channels_first(outputs, meta)
        return [_decoded(rows[i]) for i in range(rows.shape[0])]

    def candidates(self, outputs, meta, conf, batch=None):
        """Only the points with a class score above ``conf`` (``keep_passing``'s test, on the scores as the model
        wrote them), and only their boxes decoded: the same rows, values and order as ``decode`` then filtered."""
        rows = self._channels_first(outputs, meta)
        found = []
        for image in rows:
            keep = np.flatnonzero((image[4:] > np.float32(conf)).any(axis=0))
            found.append(_decoded(image[:, keep]))
        return found

    # -- import --------------------------------------------------------------------------------------------------
    def recognise(self, outputs, producer):
        """With Ultralytics' metadata (``author: Ultralytics``, a ``Detect`` head, not end-to-end) its one 3-D
        output, transposed only when the last axis is 4 + its ``names`` (names that do not fit the channels are
        then refused by the interface check, which says so). Without it, only a ``(N, 4 + C, M)`` output whose M is
        the anchor-point count of a standard stride set at this input size (the transposed form is ambiguous with
        YOLOX's decoded ``(N, M, 5 + C)``: ``--layout anchor_free --param transposed=true`` says it)."""
        if len(outputs) != 1 or outputs[0][1] is None or len(outputs[0][1]) != 3:
            return None
        name, shape = outputs[0]
        if is_ultralytics(producer):
            if not ultralytics_detector(producer) or ultralytics_end_to_end(producer):
                return None  # segment/pose/obb carry more channels; end-to-end exports are layout detections
            classes = class_count(producer.get("names"))
            transposed = classes is not None and shape[2] == 4 + classes and shape[1] != 4 + classes
            channels = shape[2] if transposed else shape[1]
            if channels is not None and channels < 5:
                return None
            return Recognised({"transposed": transposed, "points": shape[1] if transposed else shape[2]}, [name],
                              preprocess=dict(ULTRALYTICS_PREPROCESS), nms=dict(ULTRALYTICS_NMS),
                              family="{} (detect)".format(ultralytics_model_name(producer)))
        height, width = producer.get("input_size") or (None, None)
        channels, points = shape[1], shape[2]
        if not height or channels is None or points is None or channels < 5 or channels == points:
            return None
        if points not in [level_cells((height, width), strides) for strides in STANDARD_STRIDES]:
            return None
        return Recognised({"transposed": False, "points": points}, [name], preprocess=dict(ULTRALYTICS_PREPROCESS),
                          nms=dict(ULTRALYTICS_NMS),
                          family="anchor-free (N, 4 + classes, points) detector (recognised from its shape; "
                                 "Ultralytics' preprocessing and NMS assumed)")

    def from_options(self, options, outputs, input_size):
        """``--param transposed=true|false`` (default: from the shape, points being the longer axis)."""
        unknown = sorted(set(options) - set(["transposed", "points"]))
        if unknown:
            raise InputError("layout anchor_free takes --param transposed=true|false, not {}".format(
                ", ".join(unknown)[:80]))
        shape = outputs[0][1] if len(outputs) == 1 and outputs[0][1] else ()
        if len(shape) != 3:
            raise InputError("layout anchor_free takes one (N, 4 + classes, points) output, got {}: pass the "
                             "detector's decoded output".format([list(s or ()) for _, s in outputs][:4]))
        transposed = options.get("transposed")
        if transposed is None:
            transposed = shape[1] is not None and shape[2] is not None and shape[1] > shape[2]
        if not isinstance(transposed, bool):
            raise InputError("layout anchor_free: --param transposed={} must be true or false".format(
                str(transposed)[:20]))
        return {"transposed": transposed, "points": shape[1] if transposed else shape[2]}


def _decoded(image):
    """One image's (4 + C, K) float32 columns as corner boxes and per-class scores, as Ultralytics'
    ``xywh2xyxy`` computes them (half = wh / 2; x1y1 = xy - half; x2y2 = xy + half)."""
    half = image[2:4] / np.float32(2.0)
    boxes = np.empty((image.shape[1], 4), dtype=np.float32)
    np.subtract(image[0:2], half, out=boxes[:, 0:2].T)
    np.add(image[0:2], half, out=boxes[:, 2:4].T)
    return Decoded(boxes, np.ascontiguousarray(image[4:].T))


# -- Ultralytics' metadata_props (what its exporter writes: author, description, version, task, stride, imgsz, names,
# args, end2end...) ----------------------------------------------------------------------------------------------------
def is_ultralytics(producer):
    return str(producer.get("author", "")).strip() == "Ultralytics"


def ultralytics_detector(producer):
    """An Ultralytics detection head that writes boxes in input pixels (``Detect``, ``v10Detect``, ``WorldDetect``,
    ``YOLOEDetect``; not RT-DETR's ``RTDETRDecoder``, whose (N, 300, 4 + C) boxes are normalised)."""
    head = str(producer.get("head", "Detect"))
    return producer.get("task", "detect") == "detect" and head.endswith("Detect")


def ultralytics_end_to_end(producer):
    """Whether an Ultralytics export ends in final detections: ``end2end`` (YOLOv10/YOLO26's one-to-one head) or
    ``args`` with ``nms: True`` (NMS in the graph)."""
    if str(producer.get("end2end", "")).strip().lower() == "true":
        return True
    args = _literal(producer.get("args"))
    return isinstance(args, dict) and args.get("nms") is True


def ultralytics_model_name(producer):
    """``Ultralytics YOLOv8n`` from the description Ultralytics writes (``Ultralytics YOLOv8n model trained on
    ...``); printable and bounded, as it comes from the file."""
    text = "".join(c for c in str(producer.get("description", ""))[:200] if c.isprintable())
    head = text.split(" model")[0].strip()
    if not head.startswith("Ultralytics"):
        head = "Ultralytics " + head if head else "Ultralytics"
    return head[:80]


def class_count(text):
    """How many classes a producer's ``names`` property lists (Ultralytics: ``{0: 'person', ...}``), or None."""
    value = _literal(text)
    return len(value) if isinstance(value, (dict, list, tuple)) and value else None


def _literal(text):
    """A Python literal from a metadata string (``ast.literal_eval``: never evaluated as code), or None."""
    if not isinstance(text, str) or not text or len(text) > 1 << 20:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
