"""ONNX helpers shared by export and every backend: load and check, opset, metadata, simplify, save.

It sits below both ``edgecsp.export`` and ``edgecsp.backends`` (neither imports the other); the onnx and onnxsim
packages are imported on first use. Saving goes through the one atomic writer (``edgecsp._files``).
"""
import os
from typing import Optional

from edgecsp._files import atomic_output, require_file
from edgecsp._lazy import require
from edgecsp.errors import InputError, UnsupportedError, VerificationError
from edgecsp.runtime.meta import FLOAT_NCHW, META_KEY, UINT8_NHWC_BGR, ModelMeta, check_interface, load_meta_or_raise
from edgecsp.validate import choice

ONNX_HINT = "pass the path of an .onnx exported by `edgecsp export`"

__all__ = ["INPUT_CHOICES", "ONNX_HINT", "add_uint8_input", "check_onnx_meta", "check_opset", "decode_tail",
           "input_form_of", "load_onnx", "onnx_interface", "onnx_meta_json", "onnx_opset", "save_onnx", "set_onnx_meta", "simplify"]


def load_onnx(path):
    """``(onnx.ModelProto, ModelMeta)`` for the exported ONNX at ``path``, checked; needs the onnx package.

    InputError when the file is missing or not a valid ONNX model, MetadataError when it has no edgecsp metadata.
    """
    onnx = require("onnx", "reading ONNX models")
    path = require_file(path, "ONNX model", ONNX_HINT)
    where = os.path.basename(path)
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, checker ValidationError, external data errors...
        raise InputError("{} is not a valid ONNX model ({}: {}): {}".format(
            where, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", ONNX_HINT))
    return model, check_onnx_meta(model, load_meta_or_raise(onnx_meta_json(model), path), where)


def onnx_meta_json(model):
    """The edgecsp metadata JSON stored in an ``onnx.ModelProto`` (None when it has none)."""
    props = dict((p.key, p.value) for p in model.metadata_props)
    return props.get(META_KEY)


def onnx_opset(model):
    # type: (...) -> int
    """The default-domain opset an ``onnx.ModelProto`` imports (0 when it imports none)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def onnx_interface(model):
    """``(input name, input shape, [(output name, shape)])`` of an ``onnx.ModelProto``'s graph (None for a
    dynamic or unknown size, shape None for an unknown rank); the first input that is not an initializer."""
    graph = model.graph
    initializers = set(i.name for i in graph.initializer)

    def shape(value):
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            return None
        return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)

    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedError("the model has {} inputs; edgecsp runs single-input models".format(len(inputs)))
    return inputs[0].name, shape(inputs[0]) or (), [(v.name, shape(v)) for v in graph.output]


CONVOLUTIONS = ("Conv", "ConvTranspose")


def decode_tail(model, convolutions=True):
    """Names of the nodes between the last convolutions and the outputs of an ``onnx.ModelProto``: the decode a
    family put in its graph (Ultralytics' DFL, box arithmetic and sigmoid; YOLOX's grid decode; a reshape or
    sigmoid), kept in float by every INT8 build. With ``convolutions`` the convolutions that end the walk (the
    head convolutions, Ultralytics' DFL) are included. Unnamed nodes are left out (they cannot be named in an
    exclusion list)."""
    producers = dict((out, node) for node in model.graph.node for out in node.output)
    names, seen, stack = [], set(), [o.name for o in model.graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        is_convolution = node.op_type in CONVOLUTIONS
        if node.name and (convolutions or not is_convolution):
            names.append(node.name)
        if not is_convolution:
            stack.extend(node.input)
    return names


def check_onnx_meta(model, meta, where):
    """MetadataError unless ``meta`` describes the graph of ``model`` (``check_interface``, what every runner
    checks when it loads the artefact): an ONNX edgecsp writes or builds from also runs."""
    input_name, input_shape, outputs = onnx_interface(model)
    check_interface(meta, input_name, input_shape, outputs, where)
    return meta


def set_onnx_meta(model, meta, where="the model"):
    # type: (...) -> object
    """Store ``meta`` (a ModelMeta) under META_KEY in ``model.metadata_props`` (in place), replacing an older one,
    after checking it (its rules, and against the graph: ``check_onnx_meta``)."""
    if not isinstance(meta, ModelMeta):
        raise TypeError("set_onnx_meta takes a ModelMeta, got {}".format(type(meta).__name__))
    check_onnx_meta(model, meta.validate(where), where)
    for prop in list(model.metadata_props):
        if prop.key == META_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    return model


def check_opset(opset, target, where):
    # type: (int, ...) -> None
    """UnsupportedError when an ONNX model's ``opset`` is above what ``target``'s parser takes."""
    if opset > target.max_opset:
        raise UnsupportedError("{} uses ONNX opset {} but target {} takes at most {}: re-export with "
                               "`edgecsp export --opset {}`".format(where, opset, target.name, target.max_opset,
                                                                    target.max_opset))


def simplify(onnx_model):
    """onnxsim with shape inference; raises VerificationError if it cannot prove its result equivalent."""
    onnxsim = require("onnxsim", "simplifying ONNX")
    simplified, ok = onnxsim.simplify(onnx_model)
    if not ok:
        raise VerificationError("onnxsim could not validate the simplified model: re-run with --no-simplify")
    return simplified


def save_onnx(model, path):
    """Write an ``onnx.ModelProto`` to ``path`` atomically (no external data); returns ``path``."""
    onnx = require("onnx", "writing ONNX models")
    with atomic_output(path) as tmp:
        onnx.save(model, tmp)
    return str(path)


# `edgecsp build --input`: what a CPU artefact's input takes (edgecsp.runtime.meta.INPUT_FORMS)
INPUT_CHOICES = {"uint8": UINT8_NHWC_BGR, "float": FLOAT_NCHW}


def input_form_of(value, default="uint8"):
    # type: (Optional[str], str) -> str
    """The input form an ``--input`` value asks for (``uint8``: the letterboxed frames; ``float``: NCHW floats)."""
    return INPUT_CHOICES[choice(value or default, "--input", tuple(sorted(INPUT_CHOICES)))]


def add_uint8_input(model, meta):
    """Make ``model`` (an onnx.ModelProto taking the runtime's float NCHW batch) take the letterboxed uint8 NHWC
    BGR frames: a Cast -> Gather (BGR -> RGB, when the model wants RGB) -> Transpose -> Div(1/scale) or Mul(scale) [-> Sub(mean) ->
    Div(std)] prefix in front of its input, computing exactly what ``edgecsp.runtime.preprocess`` does. In place; returns the model."""
    onnx = require("onnx", "adding the uint8 input to ONNX models")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    import numpy as np

    graph = model.graph
    initializers = set(i.name for i in graph.initializer)
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedError("a uint8 input needs a single-input model; this one has {}".format(len(inputs)))
    original = inputs[0]
    dims = list(original.type.tensor_type.shape.dim)
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise UnsupportedError("a uint8 input needs an NCHW input with 3 channels; build with --input float")
    name = original.name
    # the prefix's tensors get names no tensor of the graph has: ONNX Runtime's INT8 build already names the
    # input's quantization parameters `<input>_scale` / `<input>_zero_point`, and a second initializer of one name
    # silently feeds one of them the other's value
    taken = set(initializers).union(i.name for i in graph.input).union(o.name for o in graph.output).union(
        v.name for v in graph.value_info).union(x for node in graph.node for x in list(node.input) + list(node.output))

    def fresh(suffix):
        candidate, number = name + suffix, 1
        while candidate in taken:
            candidate, number = "{}{}_{}".format(name, suffix, number), number + 1
        taken.add(candidate)
        return candidate

    inner = fresh("_float_nchw")
    for node in graph.node:  # the network now reads the prefix's output
        node.input[:] = [inner if x == name else x for x in node.input]
    n, h, w = dims[0], dims[2], dims[3]
    new_input = helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None)
    for dim in (n, h, w):
        new_input.type.tensor_type.shape.dim.add().CopyFrom(dim)
    new_input.type.tensor_type.shape.dim.add().dim_value = 3
    current = fresh("_f32")
    nodes = [helper.make_node("Cast", [name], [current], to=onnx.TensorProto.FLOAT, name="edgecsp_uint8_cast")]
    extra = []
    if str(meta.channel_order).upper() == "RGB":
        order, rgb = fresh("_bgr_to_rgb"), fresh("_rgb")
        extra.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), order))
        nodes.append(helper.make_node("Gather", [current, order], [rgb], axis=3, name="edgecsp_uint8_bgr_to_rgb"))
        current = rgb
    nchw = fresh("_nchw")
    nodes.append(helper.make_node("Transpose", [current], [nchw], perm=[0, 3, 1, 2], name="edgecsp_uint8_nchw"))
    current = nchw
    scaled = fresh("_scaled") if meta.normalized else inner
    divisor = meta.scale_divisor  # divide or multiply exactly as the runtime's preprocess does
    scale = fresh("_scale")
    extra.append(numpy_helper.from_array(np.array(meta.scale if divisor is None else divisor, np.float32), scale))
    nodes.append(helper.make_node("Mul" if divisor is None else "Div", [current, scale], [scaled],
                                  name="edgecsp_uint8_scale"))
    if meta.normalized:  # (x - mean) / std per channel, as the runtime computes it
        mean, std, centred = fresh("_mean"), fresh("_std"), fresh("_centred")
        extra.append(numpy_helper.from_array(np.array(meta.mean, np.float32).reshape(1, 3, 1, 1), mean))
        extra.append(numpy_helper.from_array(np.array(meta.std, np.float32).reshape(1, 3, 1, 1), std))
        nodes.append(helper.make_node("Sub", [scaled, mean], [centred], name="edgecsp_uint8_mean"))
        nodes.append(helper.make_node("Div", [centred, std], [inner], name="edgecsp_uint8_std"))
    graph.initializer.extend(extra)
    kept = [i for i in graph.input if i.name != name]
    del graph.input[:]
    graph.input.extend([new_input] + kept)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body)
    return model
