"""Layout ``detections``: one output of rows that are already boxes with a score and a class.

* ``(N, K, 6)`` ``x1, y1, x2, y2, score, class``: Ultralytics ``export(nms=True)``, YOLOv10 / YOLO26 end-to-end
  (``nms_applied``: the runtime only thresholds and caps them), and ``edgecsp export --decode-in-graph`` for
  DeepStream-Yolo's ``NvDsInferParseYolo`` (every anchor cell, NMS not applied: the runtime runs it);
* ``(K, 7)`` ``batch, x1, y1, x2, y2, class, score``: YOLOv7 ``export.py --end2end`` for ONNX Runtime (NMS
  applied; rows of every image of the batch, told apart by their ``batch`` column).

``columns`` names what each column holds (``x1 y1 x2 y2`` or ``cx cy w h``, ``score``, ``class``, and ``batch``
for the 2-D form); boxes are in network-input pixels.
"""
import numpy as np

from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.layouts import Decoded, Layout, Recognised, as_outputs, check_array, level_cells
from edgecsp.runtime.schema import Field, flag, integer, list_of, one_of, optional

COLUMN_NAMES = ("x1", "y1", "x2", "y2", "cx", "cy", "w", "h", "score", "class", "batch")
XYXY, CXCYWH = ("x1", "y1", "x2", "y2"), ("cx", "cy", "w", "h")
DEFAULT_COLUMNS = list(XYXY) + ["score", "class"]
YOLOV7_END2END = ["batch"] + list(XYXY) + ["class", "score"]


def _grid_rows(rows, input_size):
    """Whether ``rows`` is one or three rows per cell of strides 8-32 (8-64) at ``input_size``: a decoded
    one-class YOLOv5/YOLOX output (N, M, 6), not end-to-end detections."""
    if not input_size:
        return False
    cells = [level_cells(input_size, strides) for strides in ((8, 16, 32), (8, 16, 32, 64))]
    return any(rows in (c, 3 * c) for c in cells)


class Detections(Layout):
    name = "detections"
    writers = ("Ultralytics export(nms=True), YOLOv10/YOLO26 end-to-end, YOLOv7 --end2end (ONNX Runtime), "
               "edgecsp export --decode-in-graph (DeepStream)")
    fields = (
        Field("columns", list_of(one_of(*COLUMN_NAMES), 6, 8), default=DEFAULT_COLUMNS),
        Field("nms_applied", flag(), default=True),
        Field("rows", optional(integer(1, 1 << 30))),  # K when the model always writes that many rows
    )
    export_options = ("columns", "nms_applied")
    deepstream_parser = "NvDsInferParseYolo"  # DeepStream-Yolo, (N, M, 6) x1,y1,x2,y2,score,class (since DS 7.1)
    legacy_names = ("yolo_decoded",)

    def example(self):
        return {"input_size": (64, 64), "classes": 3, "params": {"columns": DEFAULT_COLUMNS, "nms_applied": True,
                                                                 "rows": 20}}

    def sample(self, meta, rng, batch):
        columns = meta.params["columns"]
        rows = meta.params["rows"] or 20
        count = rows if self._batched(meta) else rows * batch
        values = {"score": rng.random_sample(count), "class": rng.randint(0, meta.num_classes, count),
                  "batch": np.repeat(np.arange(batch), count // batch if not self._batched(meta) else 1)[:count]}
        corner = rng.random_sample((count, 2)) * 40
        size = rng.random_sample((count, 2)) * 20 + 1
        values.update(x1=corner[:, 0], y1=corner[:, 1], x2=corner[:, 0] + size[:, 0], y2=corner[:, 1] + size[:, 1],
                      cx=corner[:, 0], cy=corner[:, 1], w=size[:, 0], h=size[:, 1])
        table = np.stack([values[c] for c in columns], axis=1).astype(np.float32)
        return [np.stack([table] * batch) if self._batched(meta) else table]

    def params_from_format_1(self, document, old_name):
        extra = document.get("extra") if isinstance(document.get("extra"), dict) else {}
        decoded = extra.get("decode_in_graph") if isinstance(extra.get("decode_in_graph"), dict) else {}
        cells = decoded.get("cells")
        return {"columns": DEFAULT_COLUMNS, "nms_applied": False, "rows": cells}

    def problems(self, meta):
        columns = meta.params["columns"]
        found = []
        if len(set(columns)) != len(columns):
            found.append("detections columns repeat")
        if not (set(XYXY) <= set(columns) or set(CXCYWH) <= set(columns)):
            found.append("detections columns need x1 y1 x2 y2 or cx cy w h")
        if "score" not in columns or "class" not in columns:
            found.append("detections columns need score and class")
        return found

    def deepstream_problem(self, meta):
        if meta.params["columns"] != DEFAULT_COLUMNS:
            return ("DeepStream-Yolo's NvDsInferParseYolo reads (N, K, x1 y1 x2 y2 score class) rows, not {}: "
                    "re-export with x1,y1,x2,y2,score,class columns".format(" ".join(meta.params["columns"])))
        return None

    def batch_first(self, meta):
        return self._batched(meta)

    def _batched(self, meta):
        return "batch" not in meta.params["columns"]

    def output_shape(self, meta, index):
        width = len(meta.params["columns"])
        return (None, meta.params["rows"], width) if self._batched(meta) else (None, width)

    def describe_output(self, meta, index):
        columns = " ".join(meta.params["columns"])
        return "a (N, K, {}) output".format(columns) if self._batched(meta) else "a (K, {}) output".format(columns)

    def nms_applied(self, meta):
        return bool(meta.params["nms_applied"])

    def decode(self, outputs, meta, batch=None):
        (array,) = as_outputs(outputs, meta, 1)
        rows = check_array(array, meta, self, 0)
        columns = meta.params["columns"]
        at = dict((c, i) for i, c in enumerate(columns))
        if self._batched(meta):
            per_image = [rows[i] for i in range(rows.shape[0])]
        else:
            index = np.rint(rows[:, at["batch"]]).astype(np.int64)
            count = int(batch) if batch else (int(index.max()) + 1 if index.size else 1)  # rows of padding dropped
            if index.size and index.min() < 0:
                raise MetadataError("the detections' batch column holds {}: the columns in the metadata do not "
                                    "match the model; re-export it".format(int(index.min())))
            per_image = [rows[index == i] for i in range(count)]
        return [self._rows(r, at, meta) for r in per_image]

    def _rows(self, rows, at, meta):
        if "x1" in at:
            boxes = np.ascontiguousarray(rows[:, [at["x1"], at["y1"], at["x2"], at["y2"]]], dtype=np.float32)
        else:
            cx, cy, w, h = (rows[:, at[c]] for c in CXCYWH)
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
        scores = np.ascontiguousarray(rows[:, at["score"]], dtype=np.float32)
        classes = np.rint(rows[:, at["class"]]).astype(np.int64)
        live = scores > 0  # padding rows (score 0) carry no class
        if live.any() and (classes[live].min() < 0 or classes[live].max() >= meta.num_classes):
            raise MetadataError("the model output class {} but its metadata has {} classes: the class names do not "
                                "belong to this model; re-export it".format(
                                    int(classes[live].max() if classes[live].max() >= meta.num_classes else
                                        classes[live].min()), meta.num_classes))
        return Decoded(boxes, scores, classes)

    def recognise(self, outputs, producer):
        """YOLOv7 --end2end's (K, 7); Ultralytics' end-to-end exports by their metadata (``export(nms=True)``:
        ``args`` with ``nms: True``, zero rows as padding; YOLOv10/YOLO26 with ``nms=False``: ``end2end: True``,
        the one-to-one head's top ``max_det``), both (N, max_det, 6) x1 y1 x2 y2 score class; without a producer's
        word, a (N, K <= 1000, 6) output."""
        from edgecsp.runtime.layouts.anchor_free import (ULTRALYTICS_NMS, ULTRALYTICS_PREPROCESS, is_ultralytics,
                                                         ultralytics_detector, ultralytics_end_to_end,
                                                         ultralytics_model_name)

        if len(outputs) != 1 or outputs[0][1] is None:
            return None
        name, shape = outputs[0]
        if len(shape) == 2 and shape[1] == 7:  # YOLOv7 --end2end for ONNX Runtime: (K, 7), K dynamic
            return Recognised({"columns": YOLOV7_END2END, "nms_applied": True, "rows": None}, [name],
                              family="YOLOv7 --end2end (ONNX Runtime)")
        if len(shape) != 3 or shape[2] != 6:
            return None
        if is_ultralytics(producer):  # its word decides: not end-to-end is layout anchor_free's
            if not ultralytics_detector(producer) or not ultralytics_end_to_end(producer):
                return None
            how = "end-to-end" if str(producer.get("end2end", "")).strip().lower() == "true" else "export(nms=True)"
            return Recognised({"columns": DEFAULT_COLUMNS, "nms_applied": True, "rows": shape[1]}, [name],
                              preprocess=dict(ULTRALYTICS_PREPROCESS), nms=dict(ULTRALYTICS_NMS),
                              family="{} {} (detect)".format(ultralytics_model_name(producer), how))
        if shape[1] is not None and shape[1] <= 1000 and not _grid_rows(shape[1], producer.get("input_size")):
            return Recognised({"columns": DEFAULT_COLUMNS, "nms_applied": True, "rows": shape[1]}, [name],
                              family="end-to-end detections")
        return None

    def from_options(self, options, outputs, input_size):
        columns = options.get("columns") or DEFAULT_COLUMNS
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in columns if c not in COLUMN_NAMES]
        if unknown:
            raise InputError("--columns {} has unknown names {}: use {}".format(
                ",".join(columns)[:80], ", ".join(unknown)[:60], ", ".join(COLUMN_NAMES)))
        shape = outputs[0][1] if len(outputs) == 1 and outputs[0][1] else ()
        rows = shape[1] if len(shape) == 3 else None
        return {"columns": list(columns), "nms_applied": options.get("nms_applied", True) is not False, "rows": rows}
