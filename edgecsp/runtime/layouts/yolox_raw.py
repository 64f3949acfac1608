"""Layout ``yolox_raw``: YOLOX's raw head, one ``(N, M, 5 + C)`` output decoded on the grid in the runtime.

Written by YOLOX ``tools/export_onnx.py`` with its default ``decode_in_inference=False`` (YOLOX 0.3.0). In
inference its ``YOLOXHead`` concatenates, per level, ``reg`` (raw), ``sigmoid(obj)`` and ``sigmoid(cls)``, and
flattens the levels in ``strides`` order, each row-major (y, then x): one row per cell, no anchors. The runtime
decodes as YOLOX's own ``decode_outputs`` / ``demo_utils.demo_postprocess`` do, ``g`` = the cell (x, y), ``s``
= its level's stride::

    cx, cy = (tx + gx) * s, (ty + gy) * s          w, h = exp(tw) * s, exp(th) * s

and scores are ``objectness * class_c`` as in ``anchor_decoded``, whose candidate rule applies as it is (only the
box arithmetic differs). The same shape with the decode in the graph (``--decode_in_inference``) is
``anchor_decoded``; ``edgecsp export --onnx`` tells them apart by the graph's ``Exp``. YOLOX's preprocessing:
BGR pixels 0..255, no mean/std, the image at the top left padded with 114 (``anchor_decoded.YOLOX_PREPROCESS``).
"""
import threading

import numpy as np

from edgecsp.errors import InputError
from edgecsp.runtime.decode import EXP_CLIP
from edgecsp.runtime.layouts import Recognised, grid_size, level_cells
from edgecsp.runtime.layouts.anchor_decoded import (LEVELS_P5, LEVELS_P6, YOLOX_NMS, YOLOX_PREPROCESS,
                                                    AnchorDecoded, computes_exp, rows_output)
from edgecsp.runtime.layouts.yolo_raw import MAX_SIDE
from edgecsp.runtime.schema import Field, integer, list_of

_TABLES = {}
_TABLES_LOCK = threading.Lock()
_TABLES_MAX = 16


def level_table(input_size, strides):
    """Per row of the output: the cell ``(gx, gy)`` (M, 2) and the stride (M, 1), float32, read-only (cached)."""
    key = (tuple(int(v) for v in input_size), tuple(int(s) for s in strides))
    table = _TABLES.get(key)
    if table is None:
        cells, steps = [], []
        for stride in key[1]:
            h, w = grid_size(key[0][0], stride), grid_size(key[0][1], stride)
            ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
            cells.append(np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1))
            steps.append(np.full((h * w, 1), stride, dtype=np.float32))
        table = (np.concatenate(cells), np.concatenate(steps))
        for array in table:
            array.setflags(write=False)  # shared across calls and threads
        with _TABLES_LOCK:
            if len(_TABLES) >= _TABLES_MAX:
                _TABLES.clear()
            _TABLES[key] = table
    return table


class YoloxRaw(AnchorDecoded):
    name = "yolox_raw"
    writers = "YOLOX export_onnx.py (default: decode_in_inference off)"
    fields = (Field("strides", list_of(integer(1, MAX_SIDE), 1, 8), default=list(LEVELS_P5)),)
    export_options = ("strides",)

    def example(self):
        return {"input_size": (64, 96), "classes": 3, "params": {"strides": [8, 16, 32]}}

    def problems(self, meta):
        side = max(meta.input_size)
        return ["strides[{}] {} is larger than the input ({}x{})".format(i, s, *meta.input_size)
                for i, s in enumerate(meta.params["strides"]) if s > side]

    def row_count(self, meta):
        return level_cells(meta.input_size, meta.params["strides"])

    def describe_output(self, meta, index):
        return "a (N, cells of strides {}, raw tx ty tw th + objectness + classes) output".format(
            ",".join(str(s) for s in meta.params["strides"]))

    def centres(self, rows, meta, index):
        cells, strides = level_table(meta.input_size, meta.params["strides"])
        if index is not None:
            cells, strides = cells[index], strides[index]
        xy = rows[:, 0:2] + cells  # YOLOX's (t + grid) * stride, in its order
        xy *= strides
        wh = np.minimum(rows[:, 2:4], np.float32(EXP_CLIP))  # a new contiguous array: the same exp either path
        np.exp(wh, out=wh)
        wh *= strides
        return xy, wh

    def recognise(self, outputs, producer):
        found = rows_output(outputs, producer)
        if found is None or computes_exp(producer):
            return None
        name, count, _ = found
        for strides in (LEVELS_P5, LEVELS_P6):
            if count == level_cells(producer["input_size"], strides):
                return Recognised({"strides": list(strides)}, [name], preprocess=dict(YOLOX_PREPROCESS),
                                  nms=dict(YOLOX_NMS),
                                  family="YOLOX (raw head, its export's default; decoded in the runtime)")
        return None

    def from_options(self, options, outputs, input_size):
        """``--layout yolox_raw [--strides 8,16,32]``: the output must have one row per cell of those levels."""
        unknown = sorted(set(options) - {"strides"})
        if unknown:
            raise InputError("layout yolox_raw takes --strides only, not {}: leave them out".format(
                ", ".join("--" + k.replace("_", "-") for k in unknown)))
        strides = [int(s) for s in (options.get("strides") or LEVELS_P5)]
        shape = outputs[0][1] if len(outputs) == 1 else None
        if not shape or len(shape) != 3:
            raise InputError("layout yolox_raw takes one (N, cells, 5 + classes) output, the model has {}: pick "
                             "another --layout".format([list(s) if s else s for _, s in outputs]))
        cells = level_cells(input_size, strides)
        if shape[1] is not None and shape[1] != cells:
            raise InputError("the output has {} rows but strides {} at {}x{} make {} cells: pass the model's "
                             "--strides".format(shape[1], ",".join(str(s) for s in strides), input_size[0],
                                                input_size[1], cells))
        return {"strides": strides}
