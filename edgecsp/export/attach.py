"""Attach edgecsp metadata to an ONNX exported elsewhere (``edgecsp export --onnx model.onnx --names ...``).

The graph must end in YOLO heads laid out as ``yolo_raw`` (one ``(N, A*(5+C), H, W)`` output per head, e.g. a
darknet-style export without decode); the options supply what the file cannot say: class names, anchors per
head, and the decode form. Strides and the input size are read from the graph's static shapes.
"""
import os
from typing import NamedTuple, Optional, Tuple

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.onnxio import save_onnx, set_onnx_meta
from edgecsp.runtime.meta import HeadMeta, ModelMeta


class AttachConfig(NamedTuple):
    onnx_path: str
    names_file: str
    anchors: str  # "w,h,w,h,...; w,h,..." one group per output, in output order
    output: Optional[str] = None
    strides: Optional[Tuple[int, ...]] = None  # default: input size / grid size per output
    scale_x_y: float = 1.0
    new_coords: bool = False
    activated: bool = False
    letterbox: bool = True
    input_size: Optional[Tuple[int, int]] = None


def read_names(path):
    """Class names, one per line (blank lines ignored), as in darknet's coco.names."""
    if not os.path.isfile(path):
        raise InputError("names file {} not found: pass a text file with one class name per line".format(path))
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise InputError("names file {} is empty: write one class name per line".format(path))
    return names


def parse_anchor_groups(text):
    """``"10,14, 23,27; 37,58, 81,82"`` -> [[(10, 14), (23, 27)], [(37, 58), (81, 82)]]."""
    groups = []
    for part in text.split(";"):
        values = [v for v in part.replace(" ", ",").split(",") if v]
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = []
        if not numbers or len(numbers) % 2:
            raise InputError("--anchors group {!r} is not an even list of numbers: write w,h pairs per head, heads "
                             "separated by ';' (e.g. \"23,27,37,58,81,82; 81,82,135,169,344,319\")".format(part.strip()))
        groups.append([(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2)])
    return groups


def _static_dims(value_info, what):
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]
    if len(dims) != 4 or any(d is None for d in dims[1:]):
        raise InputError("{} {} has shape {}: edgecsp needs static NCHW shapes (re-export with a fixed input "
                         "size)".format(what, value_info.name, dims))
    return dims


def attach_metadata(config):
    """Write a copy of ``config.onnx_path`` carrying edgecsp metadata; returns (path, ModelMeta)."""
    onnx = require("onnx", "reading ONNX models")

    if not os.path.isfile(config.onnx_path):
        raise InputError("{} not found: pass the .onnx file to describe".format(config.onnx_path))
    try:
        model = onnx.load(config.onnx_path)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError...: all mean "not a usable ONNX"
        raise InputError("{} is not a valid ONNX model ({}): pass the exported .onnx file".format(
            config.onnx_path, exc.__class__.__name__))
    names = read_names(config.names_file)
    groups = parse_anchor_groups(config.anchors)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise InputError("{} has {} inputs: edgecsp runs single-image-input detectors".format(
            config.onnx_path, len(inputs)))
    _, _, in_h, in_w = _static_dims(inputs[0], "input")
    if config.input_size:
        in_h, in_w = config.input_size
    outputs = list(model.graph.output)
    if len(outputs) != len(groups):
        raise InputError("{} has {} outputs but --anchors gives {} groups: give one ';'-separated group per "
                         "output, in output order ({})".format(config.onnx_path, len(outputs), len(groups),
                                                               ", ".join(o.name for o in outputs)))
    strides = list(config.strides or [])
    if strides and len(strides) != len(outputs):
        raise InputError("--strides gives {} values for {} outputs".format(len(strides), len(outputs)))
    heads = []
    for i, (out, anchors) in enumerate(zip(outputs, groups)):
        _, channels, grid_h, grid_w = _static_dims(out, "output")
        expected = len(anchors) * (5 + len(names))
        if channels != expected:
            raise InputError("output {} has {} channels but {} anchors x (5 + {} classes) = {}: check --anchors "
                             "and --names".format(out.name, channels, len(anchors), len(names), expected))
        stride = strides[i] if strides else in_h // grid_h
        if in_h != stride * grid_h or in_w != stride * grid_w:
            raise InputError("output {} grid {}x{} does not divide the {}x{} input by stride {}: pass --strides".format(
                out.name, grid_h, grid_w, in_h, in_w, stride))
        heads.append(HeadMeta(int(stride), anchors, float(config.scale_x_y), bool(config.new_coords)))
    meta = ModelMeta(names=names, input_size=(int(in_h), int(in_w)), task="detect", letterbox=config.letterbox,
                     activated=config.activated, heads=heads, outputs=[o.name for o in outputs],
                     input_name=inputs[0].name, model=os.path.splitext(os.path.basename(config.onnx_path))[0],
                     extra={"source": os.path.basename(config.onnx_path), "attached_by": "edgecsp export --onnx"})
    meta.validate(config.onnx_path)
    set_onnx_meta(model, meta)
    output = config.output or os.path.splitext(config.onnx_path)[0] + "-edgecsp.onnx"
    if os.path.abspath(output) == os.path.abspath(config.onnx_path):
        raise InputError("-o {} would overwrite the source: pick another output path".format(output))
    save_onnx(model, output)
    return output, meta
