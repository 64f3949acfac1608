"""Model metadata: everything the runtime needs to pre- and post-process an artefact's tensors.

It travels with every artefact: as JSON under the key ``edgecsp.meta`` in ONNX ``metadata_props``, in OpenVINO
``rt_info`` and in the sidecar manifest of engines. Python 3.6 compatible (NamedTuple, no dataclasses).

Format 2: the outputs are described by an output ``layout`` (``edgecsp.runtime.layouts``: one module per layout,
``yolo_raw``, ``detections``, ``anchor_free``...) and its ``params``; the preprocessing by ``input_size``,
``letterbox`` (keep the aspect ratio and pad at ``pad_position`` with ``pad_value``, else stretch),
``channel_order`` and ``input = (pixel * scale - mean) / std`` per channel (in the network's channel order);
the family's own NMS rule by ``nms`` (``multi_label``, ``iou``), used where the user sets none.
Format-1 artefacts (``heads`` and ``activated`` at the top level, layouts ``yolo_raw``, ``yolo_decoded``,
``logits``, ``probs``) still load: each layout converts the format-1 records it took over.
"""
import json
from typing import List, NamedTuple, Optional, Sequence, Tuple

from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import get_layout, list_layouts
from edgecsp.runtime.schema import (Field, flag, free_json, integer, list_of, number, one_of, optional, parse_json,
                                    read_record, text)

META_KEY = "edgecsp.meta"
FORMAT_VERSION = 2
# what an artefact's input takes: the runtime's float32 NCHW batch (pixels * scale, in channel_order), or the
# letterboxed uint8 NHWC BGR frames themselves, the graph doing the channel swap, scaling and layout
FLOAT_NCHW, UINT8_NHWC_BGR = "float_nchw", "uint8_nhwc_bgr"
INPUT_FORMS = (FLOAT_NCHW, UINT8_NHWC_BGR)
# where a letterbox puts the image: centred (YOLOv5/v8, darknet, edgecsp), or at the top left with the padding
# at the bottom and right (YOLOX, mmdet's Pad, PaddleDetection)
PAD_CENTER, PAD_TOP_LEFT = "center", "top_left"
PAD_POSITIONS = (PAD_CENTER, PAD_TOP_LEFT)


class ModelMeta(NamedTuple):
    """What the runtime must know about a model; see the module docstring."""

    names: List[str]
    input_size: Tuple[int, int]  # (height, width) of the network input
    task: str = "detect"  # "detect" | "classify": the layout's task
    letterbox: bool = True  # keep aspect ratio and pad (else: plain resize)
    pad_value: int = 114
    channel_order: str = "RGB"  # order the network expects; frames arrive as BGR from OpenCV
    scale: float = 1.0 / 255.0  # input = (pixel * scale - mean) / std, NCHW float32
    layout: str = "yolo_raw"  # a layout of edgecsp.runtime.layouts
    params: object = None  # the layout's parameters (what its module's make_params returns)
    outputs: List[str] = []  # output tensor names in the layout's order
    input_name: str = "images"
    model: str = ""  # registry name, "darknet:<cfg stem>", or the producer of an imported ONNX
    extra: dict = {}  # provenance: opset, precision, target, versions, source hash...
    input_form: str = FLOAT_NCHW  # INPUT_FORMS; artefacts without it (older ones) take float NCHW
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # per channel, in channel_order, after * scale
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_position: str = PAD_CENTER
    nms: dict = {}  # the family's own NMS rule, used where the user sets none: {"multi_label": bool, "iou": float}

    @property
    def num_classes(self):
        return len(self.names)

    @property
    def spec(self):
        """The output layout (``edgecsp.runtime.layouts.Layout``) of this model."""
        return get_layout(self.layout)

    @property
    def scale_divisor(self):
        """``1 / scale`` when it is a whole number (255 for pixel / 255): the input is then divided by it, as the
        families' own code does (Ultralytics, YOLOv5/v7, darknet), so the float32 input is bit-identical to
        theirs; None when ``scale`` multiplies."""
        divisor = 1.0 / float(self.scale)
        whole = round(divisor)
        return float(whole) if 1 <= whole <= 65535 and abs(divisor - whole) <= 1e-6 * whole else None

    @property
    def normalized(self):
        """Whether the input has a mean or std beyond the scale."""
        return tuple(self.mean) != (0.0, 0.0, 0.0) or tuple(self.std) != (1.0, 1.0, 1.0)

    def to_dict(self):
        d = self._asdict()
        d["format"] = FORMAT_VERSION
        d["input_size"] = list(self.input_size)
        d["params"] = self.spec.params_dict(self.params)
        d["mean"], d["std"] = [float(v) for v in self.mean], [float(v) for v in self.std]
        return d

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_extra(self, **items):
        """A copy whose ``extra`` dict has ``items`` added."""
        extra = dict(self.extra)
        extra.update(items)
        return self._replace(extra=extra)

    @classmethod
    def from_dict(cls, d, where="metadata"):
        """The metadata record ``d`` (a parsed JSON object) read through ``META_FIELDS`` and its layout's
        parameters, checked for consistency; MetadataError naming the field, the value and the fix otherwise."""
        if isinstance(d, dict):
            version = d.get("format", 1)
            if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
                raise MetadataError("{} uses metadata format {} but this edgecsp reads up to {}: upgrade "
                                    "edgecsp".format(where, version, FORMAT_VERSION))
            if version == 1:
                d = _from_format_1(d, where)
        fields = read_record(d, META_FIELDS, where, REEXPORT_FIX)
        fields.pop("format")
        layout = get_layout(fields["layout"], where)
        fields["params"] = layout.read_params(fields["params"], where)
        fields["input_size"] = tuple(fields["input_size"])
        fields["mean"], fields["std"] = tuple(fields["mean"]), tuple(fields["std"])
        return cls(**fields)._consistent(where)

    @classmethod
    def from_json(cls, text, where="metadata"):
        return cls.from_dict(parse_json(text, where + "'s edgecsp metadata", REEXPORT_FIX), where)

    def validate(self, where="metadata"):
        """Raise MetadataError unless this record passes the rules a reader applies (what is written loads)."""
        try:
            document = json.loads(self.to_json())
        except (TypeError, ValueError, AttributeError) as exc:  # a numpy scalar, NaN, params of another layout...
            raise MetadataError("{} has edgecsp metadata that is not plain JSON ({}): {}".format(
                where, exc, REEXPORT_FIX))
        return ModelMeta.from_dict(document, where)

    def _consistent(self, where):
        """MetadataError when the fields, each valid alone, contradict each other."""
        layout = self.spec
        problems = []
        if self.task != layout.task:
            problems.append("layout {} is a {} layout, not {}".format(layout.name, layout.task, self.task))
        else:
            problems.extend(layout.problems(self))
        if len(set(self.outputs)) != len(self.outputs):
            problems.append("output names repeat")
        if problems:
            raise MetadataError("{} has invalid edgecsp metadata: {}; {}".format(where, "; ".join(problems),
                                                                                 REEXPORT_FIX))
        return self


def _from_format_1(d, where):
    """A format-1 record as format 2: the layout that took over its layout name converts it."""
    old = d.get("layout", "yolo_raw" if d.get("task", "detect") == "detect" else "logits")
    for layout in list_layouts():
        if old in getattr(layout, "legacy_names", ()):
            converted = dict((k, v) for k, v in d.items() if k not in ("heads", "activated"))
            converted.update(format=FORMAT_VERSION, layout=layout.name, params=layout.params_from_format_1(d, old))
            return converted
    raise MetadataError("{} names format-1 output layout {}, which this edgecsp cannot read: {}".format(
        where, repr(old)[:40], REEXPORT_FIX))


# -- the rules every reader and writer of the metadata applies (edgecsp.runtime.schema) ------------------------
REEXPORT_FIX = "re-export the model with `edgecsp export` (or rebuild the artefact from a good ONNX)"
MAX_INPUT_SIDE = 8192  # pixels; a side beyond this is a typo or an attack, not a detector input
_NAME = text(256)
_EXTRA = free_json(typed=[  # provenance; the keys the code reads are typed, the rest is free (bounded) JSON
    Field("precision", optional(text(32))), Field("target", optional(text(64))), Field("backend", optional(text(64))),
    Field("decode_in_graph", optional(free_json(typed=[Field("cells", integer(1, 1 << 30))]))),
    Field("calibration", optional(free_json())),
])
_TRIPLE = list_of(number(-1e6, 1e6), 3, 3, tuple)
META_FIELDS = [
    Field("format", integer(2, FORMAT_VERSION), default=FORMAT_VERSION),
    Field("names", list_of(text(256, empty=True), 1, 100000), required=True),
    Field("input_size", list_of(integer(1, MAX_INPUT_SIDE), 2, 2), required=True),
    Field("task", one_of("detect", "classify"), default="detect"),
    Field("letterbox", flag(), default=True),
    Field("pad_value", integer(0, 255), default=114),
    Field("pad_position", one_of(*PAD_POSITIONS), default=PAD_CENTER),
    Field("channel_order", one_of("RGB", "BGR"), default="RGB"),
    Field("scale", number(1e-6, 1), default=1.0 / 255.0),  # smaller would zero every input in float32
    Field("mean", _TRIPLE, default=(0.0, 0.0, 0.0)),
    Field("std", list_of(number(1e-6, 1e6), 3, 3, tuple), default=(1.0, 1.0, 1.0)),
    Field("layout", text(64), required=True),
    Field("params", optional(free_json())),
    Field("outputs", list_of(_NAME, 0, 64), default=[]),
    Field("input_name", _NAME, default="images"),
    Field("model", text(256, empty=True), default=""),
    Field("extra", _EXTRA, default={}),
    Field("input_form", one_of(*INPUT_FORMS), default=FLOAT_NCHW),
    Field("nms", free_json(8, typed=[Field("multi_label", optional(flag())),
                                     Field("iou", optional(number(0, 1, low_open=True)))]), default={}),
]


def meta_or_none(text, where="metadata"):
    # type: (Optional[str], str) -> Optional[ModelMeta]
    return None if text is None else ModelMeta.from_json(text, where)


# Which `edgecsp export` options supply the metadata; kept here so every message says the same. The registry
# model gives anchors and strides, --card the class names, --input-size the input size.
EXPORT_META_HINT = ("export it with `edgecsp export MODEL [--checkpoint W.pt]`, `--card CARD.json` or "
                    "`--darknet CFG WEIGHTS`, or import an ONNX exported elsewhere with "
                    "`edgecsp export --onnx M.onnx` (its layout is recognised, or pass --layout)")


def load_meta_or_raise(meta_json, path):
    # type: (Optional[str], str) -> ModelMeta
    """Parse the metadata JSON found in the artefact at ``path``; MetadataError when there is none."""
    import os

    where = os.path.basename(str(path))
    if not meta_json:
        raise MetadataError("{} has no edgecsp metadata (key {}): {}".format(where, META_KEY, EXPORT_META_HINT))
    return ModelMeta.from_json(meta_json, where)


def _dims(shape):
    return tuple(int(d) if d is not None and not isinstance(d, str) and int(d) > 0 else None for d in shape)


def _shape_text(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def check_interface(meta, input_name, input_shape, outputs, where):
    # type: (ModelMeta, str, Sequence, Sequence[Tuple[str, Optional[Sequence]]], str) -> List[str]
    """MetadataError unless a model whose input is ``input_name`` shaped ``input_shape`` and whose outputs are
    ``outputs`` (``(name, shape or None)`` pairs; None or a string for a dynamic size) is what ``meta`` describes.

    The one check of metadata against a real model: run by every runner when it loads an artefact and by export,
    build and package before they write one, so that an artefact that builds also runs. Returns the output names
    in the metadata's order."""
    shape = _dims(input_shape)
    if len(shape) != 4:
        raise MetadataError("{} has a {}-D input {!r}; edgecsp runs NCHW (4-D) models: re-export it".format(
            where, len(shape), input_name))
    if meta.input_name and meta.input_name != input_name:
        raise MetadataError("{}'s metadata names input {!r} but the model's input is {!r}: re-export it".format(
            where, meta.input_name, input_name))
    hw = shape[1:3] if meta.input_form == UINT8_NHWC_BGR else shape[2:]
    channels = shape[3] if meta.input_form == UINT8_NHWC_BGR else shape[1]
    if None not in hw and tuple(hw) != tuple(meta.input_size):
        raise MetadataError("{}'s metadata says input size {} but the model takes {}x{}: re-export it".format(
            where, "x".join(str(v) for v in meta.input_size), hw[0], hw[1]))
    if channels not in (None, 3):
        raise MetadataError("{} takes {} input channels; edgecsp feeds 3-channel images: re-export it".format(
            where, channels))
    found = [(str(name), None if dims is None else _dims(dims)) for name, dims in outputs]
    available = [name for name, _ in found]
    names = list(meta.outputs) or available
    missing = [n for n in names if n not in available]
    if missing:
        raise MetadataError("{}'s metadata lists outputs {} that the model lacks (it has {}): re-export it".format(
            where, ", ".join(missing), ", ".join(available)))
    layout = meta.spec
    count = layout.output_count(meta)
    if len(names) != count:
        raise MetadataError("{} has {} outputs where its {} metadata describes {}: re-export it".format(
            where, len(names), layout.name, count))
    shapes = dict(found)
    for index, name in enumerate(names):
        dims = shapes[name]
        if dims is not None and not layout.shape_fits(meta, index, dims):
            raise MetadataError("{}'s output {!r} is shaped {} but its {} metadata ({} classes, input {}) needs {} "
                                "shaped {}: the class names, layout parameters or input size do not match the "
                                "model; re-export it".format(where, name, _shape_text(dims), layout.name,
                                                             meta.num_classes,
                                                             "x".join(str(v) for v in meta.input_size),
                                                             layout.describe_output(meta, index),
                                                             _shape_text(layout.output_shape(meta, index))))
    return names
