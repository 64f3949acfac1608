"""Model metadata: everything the runtime needs to pre- and post-process an artefact's tensors.

It travels with every artefact: as JSON under the key ``edgecsp.meta`` in ONNX ``metadata_props``, in OpenVINO
``rt_info`` and in the sidecar manifest of engines. Python 3.6 compatible (NamedTuple, no dataclasses).

Output layout ``yolo_raw`` (the only detection layout so far): one output per head, in ``heads`` order, shaped
``(N, A * (5 + C), H, W)`` exactly as the last 1x1 convolution writes it; per anchor the channels are
``tx, ty, tw, th, objectness, class_0..class_{C-1}``. Box decoding happens in the runtime (``decode.py``),
which keeps the graph free of ops that TensorRT 8.2 parses badly and lets darknet models share the code.
"""
import json
from typing import List, NamedTuple, Optional, Tuple

from edgecsp.errors import MetadataError

META_KEY = "edgecsp.meta"
FORMAT_VERSION = 1
# what an artefact's input takes: the runtime's float32 NCHW batch (pixels * scale, in channel_order), or the
# letterboxed uint8 NHWC BGR frames themselves, the graph doing the channel swap, scaling and layout
FLOAT_NCHW, UINT8_NHWC_BGR = "float_nchw", "uint8_nhwc_bgr"
# detection output layouts: the raw heads (what the runtime decodes), or the decode appended in the graph for
# DeepStream (`edgecsp export --decode-in-graph`): one (N, M, 6) output of x1, y1, x2, y2, score, class
RAW_LAYOUT, DECODED_LAYOUT = "yolo_raw", "yolo_decoded"
INPUT_FORMS = (FLOAT_NCHW, UINT8_NHWC_BGR)


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
        try:
            version = int(d.get("format", FORMAT_VERSION))
            if version > FORMAT_VERSION:
                raise MetadataError("{} uses metadata format {} but this edgecsp reads up to {}: upgrade edgecsp".format(
                    where, version, FORMAT_VERSION))
            heads = [HeadMeta(int(h["stride"]), [tuple(float(v) for v in a) for a in h["anchors"]],
                              float(h.get("scale_x_y", 1.0)), bool(h.get("new_coords", False)))
                     for h in d.get("heads", [])]
            fields = dict((k, v) for k, v in d.items() if k in cls._fields)
            fields["heads"] = heads
            fields["names"] = [str(n) for n in d["names"]]
            fields["input_size"] = tuple(int(v) for v in d["input_size"])
            meta = cls(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError("{} has malformed edgecsp metadata ({}: {}): re-export the model with edgecsp export".format(
                where, exc.__class__.__name__, exc))
        meta.validate(where)
        return meta

    @classmethod
    def from_json(cls, text, where="metadata"):
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise MetadataError("{} has edgecsp metadata that is not JSON ({}): re-export the model".format(where, exc))
        return cls.from_dict(d, where)

    def validate(self, where="metadata"):
        """Raise MetadataError when the record is inconsistent."""
        problems = []
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            problems.append("input_size must be (height, width) > 0")
        if self.task not in ("detect", "classify"):
            problems.append("task must be detect or classify, not {!r}".format(self.task))
        if self.task == "detect":
            if self.layout not in (RAW_LAYOUT, DECODED_LAYOUT):
                problems.append("unknown output layout {!r}".format(self.layout))
            if not self.heads:
                problems.append("a detector needs at least one head")
            if self.layout == DECODED_LAYOUT and len(self.outputs) != 1:
                problems.append("a decoded ({}) model has one output, not {}".format(DECODED_LAYOUT, len(self.outputs)))
            if self.layout == RAW_LAYOUT and self.outputs and len(self.outputs) != len(self.heads):
                problems.append("{} outputs for {} heads".format(len(self.outputs), len(self.heads)))
            for h in self.heads:
                if h.stride <= 0 or not h.anchors:
                    problems.append("head with stride {} needs a positive stride and anchors".format(h.stride))
        if not self.names:
            problems.append("class names are empty")
        if self.input_form not in INPUT_FORMS:
            problems.append("input_form must be one of {}, not {!r}".format(", ".join(INPUT_FORMS), self.input_form))
        if problems:
            raise MetadataError("{} has invalid edgecsp metadata: {}".format(where, "; ".join(problems)))
        return self


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
