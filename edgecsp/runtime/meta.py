"""Model metadata: everything the runtime needs to pre- and post-process an artefact's tensors.

It travels with every artefact: as JSON under the key ``edgecsp.meta`` in ONNX ``metadata_props``, in OpenVINO
``rt_info`` and in the sidecar manifest of engines. Python 3.6 compatible (NamedTuple, no dataclasses).

Output layout ``yolo_raw`` (the only detection layout so far): one output per head, in ``heads`` order, shaped
``(N, A * (5 + C), H, W)`` exactly as the last 1x1 convolution writes it; per anchor the channels are
``tx, ty, tw, th, objectness, class_0..class_{C-1}``. Box decoding happens in the runtime (``decode.py``),
which keeps the graph free of ops that TensorRT 8.2 parses badly and lets darknet models share the code.
"""
import json
from typing import List, NamedTuple, Optional, Sequence, Tuple

from edgecsp.errors import MetadataError
from edgecsp.runtime.schema import (Field, flag, free_json, integer, list_of, number, one_of, optional,
                                    parse_json, read_record, record, text)

META_KEY = "edgecsp.meta"
FORMAT_VERSION = 1
# what an artefact's input takes: the runtime's float32 NCHW batch (pixels * scale, in channel_order), or the
# letterboxed uint8 NHWC BGR frames themselves, the graph doing the channel swap, scaling and layout
FLOAT_NCHW, UINT8_NHWC_BGR = "float_nchw", "uint8_nhwc_bgr"
# detection output layouts: the raw heads (what the runtime decodes), or the decode appended in the graph for
# DeepStream (`edgecsp export --decode-in-graph`): one (N, M, 6) output of x1, y1, x2, y2, score, class
RAW_LAYOUT, DECODED_LAYOUT = "yolo_raw", "yolo_decoded"
INPUT_FORMS = (FLOAT_NCHW, UINT8_NHWC_BGR)
DETECT_LAYOUTS = (RAW_LAYOUT, DECODED_LAYOUT)
CLASSIFY_LAYOUTS = ("logits", "probs")  # a classifier's one (N, C) output: before or after softmax


class HeadMeta(NamedTuple):
    """One YOLO head: its stride in input pixels and its anchors in input pixels."""

    stride: int
    anchors: List[Tuple[float, float]]
    scale_x_y: float = 1.0
    new_coords: bool = False


class ModelMeta(NamedTuple):
    """What the runtime must know about a model; see the module docstring for the output layout."""

    names: List[str]
    input_size: Tuple[int, int]  # (height, width) of the network input
    task: str = "detect"  # "detect" | "classify"
    letterbox: bool = True  # keep aspect ratio and pad (else: plain resize)
    pad_value: int = 114
    channel_order: str = "RGB"  # order the network expects; frames arrive as BGR from OpenCV
    scale: float = 1.0 / 255.0  # input = pixel * scale, NCHW float32
    layout: str = "yolo_raw"  # detect: "yolo_raw"; classify: "logits"
    activated: bool = False  # True when the graph already applied the logistic to the head outputs
    heads: List[HeadMeta] = []
    outputs: List[str] = []  # output tensor names in heads order
    input_name: str = "images"
    model: str = ""  # registry name or "darknet:<cfg stem>"
    extra: dict = {}  # provenance: opset, precision, target, versions, source hash...
    input_form: str = FLOAT_NCHW  # INPUT_FORMS; artefacts without it (older ones) take float NCHW

    @property
    def num_classes(self):
        return len(self.names)

    def to_dict(self):
        d = self._asdict()
        d["format"] = FORMAT_VERSION
        d["input_size"] = list(self.input_size)
        d["heads"] = [dict(h._asdict(), anchors=[list(a) for a in h.anchors]) for h in self.heads]
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
        """The metadata record ``d`` (a parsed JSON object) read through ``META_FIELDS`` and checked for
        consistency; MetadataError naming the field, the value and the fix otherwise."""
        if isinstance(d, dict):
            version = d.get("format", FORMAT_VERSION)
            if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
                raise MetadataError("{} uses metadata format {} but this edgecsp reads up to {}: upgrade "
                                    "edgecsp".format(where, version, FORMAT_VERSION))
        fields = read_record(d, META_FIELDS, where, REEXPORT_FIX)
        fields.pop("format")
        fields["heads"] = [HeadMeta(**h) for h in fields["heads"]]
        fields["input_size"] = tuple(fields["input_size"])
        return cls(**fields)._consistent(where)

    @classmethod
    def from_json(cls, text, where="metadata"):
        return cls.from_dict(parse_json(text, where + "'s edgecsp metadata", REEXPORT_FIX), where)

    def validate(self, where="metadata"):
        """Raise MetadataError unless this record passes the rules a reader applies (what is written loads)."""
        try:
            document = json.loads(self.to_json())
        except (TypeError, ValueError) as exc:  # a numpy scalar, NaN... where JSON needs a plain finite value
            raise MetadataError("{} has edgecsp metadata that is not plain JSON ({}): {}".format(
                where, exc, REEXPORT_FIX))
        return ModelMeta.from_dict(document, where)

    def _consistent(self, where):
        """MetadataError when the fields, each valid alone, contradict each other."""
        problems = []
        side = max(self.input_size)
        if self.task == "detect":
            if self.layout not in DETECT_LAYOUTS:
                problems.append("a detector's layout is one of {}, not {!r}".format(", ".join(DETECT_LAYOUTS),
                                                                                   self.layout))
            if not self.heads:
                problems.append("a detector needs at least one head")
            if self.layout == DECODED_LAYOUT and len(self.outputs) != 1:
                problems.append("a decoded ({}) model has one output, not {}".format(DECODED_LAYOUT, len(self.outputs)))
            if self.layout == RAW_LAYOUT and self.outputs and len(self.outputs) != len(self.heads):
                problems.append("{} outputs for {} heads".format(len(self.outputs), len(self.heads)))
            for i, h in enumerate(self.heads):
                if h.stride > side:
                    problems.append("heads[{}].stride {} is larger than the input ({}x{})".format(
                        i, h.stride, *self.input_size))
                if max(max(a) for a in h.anchors) > MAX_ANCHOR_FACTOR * side:
                    problems.append("heads[{}] has an anchor larger than {} x the input side".format(
                        i, MAX_ANCHOR_FACTOR))
        elif self.layout not in CLASSIFY_LAYOUTS or self.heads:
            problems.append("a classifier has layout {} and no heads".format(" or ".join(CLASSIFY_LAYOUTS)))
        if len(set(self.outputs)) != len(self.outputs):
            problems.append("output names repeat")
        if problems:
            raise MetadataError("{} has invalid edgecsp metadata: {}; {}".format(where, "; ".join(problems),
                                                                                 REEXPORT_FIX))
        return self


# -- the rules every reader and writer of the metadata applies (edgecsp.runtime.schema) ------------------------
REEXPORT_FIX = "re-export the model with `edgecsp export` (or rebuild the artefact from a good ONNX)"
MAX_INPUT_SIDE = 8192  # pixels; a side beyond this is a typo or an attack, not a detector input
MAX_ANCHOR_FACTOR = 16  # an anchor at most this many input sides long
_NAME = text(256)
_HEAD = record([
    Field("stride", integer(1, MAX_INPUT_SIDE), required=True),
    Field("anchors", list_of(list_of(number(0, None, low_open=True), 2, 2, tuple), 1, 64), required=True),
    Field("scale_x_y", number(0, 16, low_open=True), default=1.0),
    Field("new_coords", flag(), default=False),
])
_EXTRA = free_json(typed=[  # provenance; the keys the code reads are typed, the rest is free (bounded) JSON
    Field("precision", optional(text(32))), Field("target", optional(text(64))), Field("backend", optional(text(64))),
    Field("decode_in_graph", optional(free_json(typed=[Field("cells", integer(1, 1 << 30))]))),
    Field("calibration", optional(free_json())),
])
META_FIELDS = [
    Field("format", integer(1, FORMAT_VERSION), default=FORMAT_VERSION),
    Field("names", list_of(text(256, empty=True), 1, 100000), required=True),
    Field("input_size", list_of(integer(1, MAX_INPUT_SIDE), 2, 2), required=True),
    Field("task", one_of("detect", "classify"), default="detect"),
    Field("letterbox", flag(), default=True),
    Field("pad_value", integer(0, 255), default=114),
    Field("channel_order", one_of("RGB", "BGR"), default="RGB"),
    Field("scale", number(0, 1, low_open=True), default=1.0 / 255.0),
    Field("layout", one_of(*(DETECT_LAYOUTS + CLASSIFY_LAYOUTS)), default=RAW_LAYOUT),
    Field("activated", flag(), default=False),
    Field("heads", list_of(_HEAD, 0, 16), default=[]),
    Field("outputs", list_of(_NAME, 0, 64), default=[]),
    Field("input_name", _NAME, default="images"),
    Field("model", text(256, empty=True), default=""),
    Field("extra", _EXTRA, default={}),
    Field("input_form", one_of(*INPUT_FORMS), default=FLOAT_NCHW),
]


def anchors_per_head(meta):
    # type: (ModelMeta) -> List[int]
    return [len(h.anchors) for h in meta.heads]


def expected_channels(meta, head_index):
    # type: (ModelMeta, int) -> int
    """Channels of a yolo_raw output: anchors * (5 + classes)."""
    return len(meta.heads[head_index].anchors) * (5 + meta.num_classes)


def meta_or_none(text, where="metadata"):
    # type: (Optional[str], str) -> Optional[ModelMeta]
    return None if text is None else ModelMeta.from_json(text, where)


# Which `edgecsp export` options supply the metadata; kept here so every message says the same. The registry
# model gives anchors and strides, --card the class names, --input-size the input size.
EXPORT_META_HINT = ("export it with `edgecsp export MODEL [--checkpoint W.pt]`, `--card CARD.json` or "
                    "`--darknet CFG WEIGHTS`, or describe an existing ONNX with "
                    "`edgecsp export --onnx M.onnx --names FILE --anchors ...`")


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


def expected_output(meta, index):
    # type: (ModelMeta, int) -> Tuple[Tuple[Optional[int], ...], str]
    """The shape output ``index`` must have (None where any size goes) and what it is, per the metadata."""
    height, width = meta.input_size
    if meta.task == "classify":
        return (None, meta.num_classes), "(N, classes)"
    if meta.layout == DECODED_LAYOUT:
        cells = (meta.extra.get("decode_in_graph") or {}).get("cells")
        return (None, cells, 6), "(N, cells, 6) boxes"
    head = meta.heads[index]
    return ((None, expected_channels(meta, index), -(-height // head.stride), -(-width // head.stride)),
            "(N, anchors x (5 + classes), H / stride, W / stride) head")


def _same(dims, needed):
    return all(d is None or n is None or d == n for d, n in zip(dims, needed))


def _grid_fits(found, needed, side, stride):
    return found is None or found in (side // stride, needed)


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
    count = 1 if meta.task == "classify" or meta.layout == DECODED_LAYOUT else len(meta.heads)
    if len(names) != count:
        raise MetadataError("{} has {} outputs where its metadata describes {}: re-export it".format(
            where, len(names), count))
    shapes = dict(found)
    for index, name in enumerate(names):
        dims = shapes[name]
        if dims is None:
            continue
        needed, what = expected_output(meta, index)
        if len(needed) == 4:  # a head's grid may round down or up (darknet pads odd sizes)
            stride = meta.heads[index].stride
            ok = (len(dims) == 4 and _same(dims[:2], needed[:2])
                  and _grid_fits(dims[2], needed[2], meta.input_size[0], stride)
                  and _grid_fits(dims[3], needed[3], meta.input_size[1], stride))
        elif meta.task == "classify":  # (N, C), or (N, C, 1, 1) from a final 1x1 convolution
            ok = len(dims) >= 2 and _same(dims[1:2], needed[1:]) and all(d in (None, 1) for d in dims[2:])
        else:
            ok = len(dims) == len(needed) and _same(dims, needed)
        if not ok:
            raise MetadataError("{}'s output {!r} is shaped {} but its metadata ({} classes, input {}) needs a {} "
                                "shaped {}: the class names, anchors, strides or input size do not match the "
                                "model; re-export it".format(where, name, _shape_text(dims), meta.num_classes,
                                                             "x".join(str(v) for v in meta.input_size), what,
                                                             _shape_text(needed)))
    return names
