"""Layout ``anchor_decoded``: one ``(N, M, 5 + C)`` output of decoded boxes with objectness.

Written by classic YOLOv5 (``export.py``, every export: its ``Detect`` decodes in the graph), YOLOv7
``export.py --grid`` and YOLOX ``tools/export_onnx.py --decode_in_inference``. Each of the M rows (every anchor
of every cell of every level) is ``cx, cy, w, h`` in network-input pixels, then the objectness and the C class
probabilities, all already through the logistic; a row's score for class c is ``objectness * class_c``.

Candidates: a score is ``obj * cls <= obj`` (both are probabilities, so in [0, 1], and float32 rounding keeps the
product at or below ``obj``), so a row whose objectness is not above ``conf`` never passes; only the rows above
it are decoded, and they are exactly the dense rows that pass, in the same order, with the same values.

Recognised (no inference at import: shapes and the graph's op types only): one 3-D output ``(N, M, 5 + C)`` with
``M = 3 x`` the cells of strides 8, 16, 32 (and 64 for P6 models) is YOLOv5 / YOLOv7 ``--grid`` (three anchors a
cell); ``M =`` the cells (one point a cell) is YOLOX, decoded here only when the graph computes an ``Exp`` (its
``decode_in_inference`` tail): YOLOX's default export is raw (layout ``yolox_raw``).
"""
import numpy as np

from edgecsp.errors import InputError
from edgecsp.runtime.layouts import (Decoded, Layout, Recognised, as_outputs, check_array, keep_passing,
                                     level_cells)
from edgecsp.runtime.schema import Field, integer, optional

MAX_ROWS = 1 << 30
LEVELS_P5, LEVELS_P6 = (8, 16, 32), (8, 16, 32, 64)
# YOLOv5 / YOLOv7 (export.py, utils.datasets.letterbox): RGB scaled to 0..1, centred letterbox padded with 114
YOLOV5_PREPROCESS = {"channel_order": "RGB", "scale": 1.0 / 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                     "pad_position": "center", "pad_value": 114, "letterbox": True}
# YOLOX >= 0.2.0 (data_augment.preproc, ValTransform(legacy=False)): BGR pixels 0..255 as they are, the image at
# the top left, padded right and below with 114. Models trained before 0.2.0 (demo --legacy) take RGB / 255 with
# ImageNet mean/std: override with --channel-order RGB --scale 0.00392156862745098 --mean 0.485,0.456,0.406 --std
# 0.229,0.224,0.225.
YOLOX_PREPROCESS = {"channel_order": "BGR", "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                    "pad_position": "top_left", "pad_value": 114, "letterbox": True}
# their NMS: each box's best class. YOLOv5 / YOLOv7 detect.py: IoU 0.45 per class. YOLOX: postprocess() and the
# ONNX Runtime demo's multiclass_nms (0.45) for these files; its demos run it class-agnostic (not recorded here)
YOLOV5_NMS = {"multi_label": False, "iou": 0.45}
YOLOX_NMS = {"multi_label": False, "iou": 0.45}


def rows_output(outputs, producer):
    """``(name, M, C)`` when ``outputs`` is one static ``(N, M, 5 + C)`` output and the input size is known."""
    if len(outputs) != 1 or outputs[0][1] is None:
        return None
    name, shape = outputs[0]
    if len(shape) != 3 or shape[1] is None or shape[2] is None or shape[2] < 6 or not producer.get("input_size"):
        return None
    return name, shape[1], shape[2] - 5


def computes_exp(producer):
    """Whether the ONNX's graph has an ``Exp`` node (``producer["op_types"]``, filled by ``edgecsp export --onnx``;
    unknown: False). YOLOX's decode tail is the only Exp in its graphs."""
    return "Exp" in (producer.get("op_types") or ())


class AnchorDecoded(Layout):
    name = "anchor_decoded"
    writers = "classic YOLOv5 export.py, YOLOv7 export.py --grid, YOLOX export_onnx.py --decode_in_inference"
    fields = (Field("rows", optional(integer(1, MAX_ROWS))),)  # M when the model always writes that many rows
    export_options = ()  # `--layout anchor_decoded` alone: M is read from the output's shape (--param rows=M)

    # -- interface ---------------------------------------------------------------------------------------------
    def example(self):
        return {"input_size": (64, 64), "classes": 3, "params": {"rows": None}}

    def output_shape(self, meta, index):
        return (None, self.row_count(meta), 5 + meta.num_classes)

    def row_count(self, meta):
        return meta.params["rows"]

    def describe_output(self, meta, index):
        return "a (N, rows, cx cy w h objectness + classes) output"

    # -- decoding ----------------------------------------------------------------------------------------------
    def _rows(self, outputs, meta):
        (array,) = as_outputs(outputs, meta, 1)
        return check_array(array, meta, self, 0)

    def centres(self, rows, meta, index):
        """``(cx cy (K, 2), w h (K, 2))`` float32 in input pixels of ``rows`` (K, 5 + C), the output rows
        ``index`` (None: all of them, in order)."""
        return rows[:, 0:2], rows[:, 2:4]

    def _decode_rows(self, rows, meta, index=None):
        xy, wh = self.centres(rows, meta, index)
        half = wh * np.float32(0.5)  # exact: the families' w / 2
        boxes = np.empty((rows.shape[0], 4), dtype=np.float32)
        np.subtract(xy, half, out=boxes[:, 0:2])
        np.add(xy, half, out=boxes[:, 2:4])
        return Decoded(boxes, rows[:, 4:5] * rows[:, 5:])

    def decode(self, outputs, meta, batch=None):
        rows = self._rows(outputs, meta)
        return [self._decode_rows(rows[i], meta) for i in range(rows.shape[0])]

    def candidates(self, outputs, meta, conf, batch=None):
        rows = self._rows(outputs, meta)
        found = []
        for i in range(rows.shape[0]):
            index = np.nonzero(rows[i, :, 4] > np.float32(conf))[0]  # score <= objectness: see the docstring
            found.append(keep_passing(self._decode_rows(rows[i][index], meta, index), conf))
        return found

    # -- import --------------------------------------------------------------------------------------------------
    def recognise(self, outputs, producer):
        found = rows_output(outputs, producer)
        if found is None:
            return None
        name, count, _ = found
        size = producer["input_size"]
        if count in (3 * level_cells(size, LEVELS_P5), 3 * level_cells(size, LEVELS_P6)):
            return Recognised({"rows": count}, [name], preprocess=dict(YOLOV5_PREPROCESS), nms=dict(YOLOV5_NMS),
                              family="YOLOv5 / YOLOv7 --grid (decoded boxes with objectness, 3 anchors a cell)")
        if count in (level_cells(size, LEVELS_P5), level_cells(size, LEVELS_P6)) and computes_exp(producer):
            return Recognised({"rows": count}, [name], preprocess=dict(YOLOX_PREPROCESS), nms=dict(YOLOX_NMS),
                              family="YOLOX --decode_in_inference (decoded boxes with objectness)")
        return None

    def from_options(self, options, outputs, input_size):
        """``--layout anchor_decoded`` [``--param rows=M``]: M from the output's shape when it is static."""
        unknown = sorted(set(options) - set(f.name for f in self.fields))
        if unknown:
            raise InputError("layout {} takes no option {}: leave it out (it takes --param rows=M)".format(
                self.name, ", ".join("--" + k.replace("_", "-") for k in unknown)))
        shape = outputs[0][1] if len(outputs) == 1 else None
        if not shape or len(shape) != 3 or (shape[2] is not None and shape[2] < 6):
            raise InputError("layout {} takes one (N, rows, 5 + classes) output, the model has {}: pick another "
                             "--layout".format(self.name, [list(s) if s else s for _, s in outputs]))
        return {"rows": options.get("rows", shape[1])}
