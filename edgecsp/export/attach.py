"""Import an ONNX exported elsewhere: ``edgecsp export --onnx model.onnx [-o described.onnx]``.

The output layout is recognised from the outputs' shapes and the producer's ``metadata_props`` (Ultralytics writes
names, imgsz, stride, task and end2end there) by the layout registry (``edgecsp.runtime.layouts``); where it
cannot tell, ``--layout NAME`` with that layout's options says it (``--anchors ... --strides ...`` for
``yolo_raw``, ``--param KEY=VALUE`` for any parameter). The preprocessing is the family's (recognised) unless
options override it. Then the same stages as edgecsp's own exports: onnxsim (unless ``simplify`` is off), the
ONNX checker, and ONNX Runtime runs of the original and the simplified graph on the same input, which must agree
(1e-5); only then is the described copy written. The producers' packages are never imported.
"""
import ast
import logging
import os
import uuid
from typing import NamedTuple, Optional, Tuple

import numpy as np

from edgecsp._files import READS, WRITES, Staged, check_paths
from edgecsp._lazy import require
from edgecsp.errors import InputError, MetadataError, UnsupportedError, VerificationError
from edgecsp.onnxio import onnx_interface, set_onnx_meta, simplify
from edgecsp.runtime.layouts import get_layout, list_layouts, recognise
from edgecsp.runtime.schema import SchemaProblem
from edgecsp.runtime.meta import FLOAT_NCHW, FORMAT_VERSION, ModelMeta, check_interface
from edgecsp.validate import shown

PREPROCESS_FIELDS = ("letterbox", "pad_value", "pad_position", "channel_order", "scale", "mean", "std")
RESHAPES = ("Reshape", "Transpose", "Identity", "Flatten", "Squeeze", "Unsqueeze")  # seen through by output_ops
log_warning = logging.getLogger(__name__).warning


class AttachConfig(NamedTuple):
    onnx_path: str
    names_file: Optional[str] = None  # class names, one per line; default: the producer's (Ultralytics) or an error
    output: Optional[str] = None  # default: <onnx stem>-edgecsp.onnx next to it
    layout: Optional[str] = None  # None: recognise it
    options: dict = {}  # the layout's own options (its ``export_options``: --anchors, --strides...)
    params: dict = {}  # ``--param KEY=VALUE``: layout parameters by their names (checked by the layout's rules)
    preprocess: dict = {}  # ModelMeta preprocessing fields that override the family's (PREPROCESS_FIELDS)
    input_size: Optional[Tuple[int, int]] = None  # (H, W) when the ONNX's input size is dynamic
    simplify: bool = True
    verify: bool = True


# what attaching reads and writes: the copy may not replace the source (edgecsp._files.check_paths)
PATHS = (("onnx_path", "--onnx", READS), ("names_file", "--names", READS), ("output", "-o", WRITES))


def read_names(path):
    """Class names, one per line (blank lines ignored), as in darknet's coco.names."""
    if not os.path.isfile(path):
        raise InputError("names file {} not found: pass a text file with one class name per line".format(path))
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise InputError("names file {} is empty: write one class name per line".format(path))
    return names


def producer_metadata(model, input_size):
    """The ONNX's ``metadata_props`` as a dict (what its producer wrote), plus ``input_size`` (H, W) and
    ``graph_parameters`` (the weights in its initializers and Constant nodes: tells a family's sizes apart, e.g.
    yolov7-tiny's anchors from yolov7's)."""
    props = dict((p.key, p.value) for p in model.metadata_props)
    props["input_size"] = tuple(input_size)
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                               for a in n.attribute if a.name == "value"]
    props["graph_parameters"] = sum(int(np.prod(t.dims)) if t.dims else 1 for t in tensors)
    props["op_types"] = sorted(set(n.op_type for n in model.graph.node))  # YOLOX decoded vs raw: an Exp or not
    return props


def names_from_producer(text):
    """Class names from a producer's ``names`` property: Ultralytics writes a dict literal ``{0: 'person', ...}``,
    others a JSON or Python list; None when it is neither (never evaluated: ``ast.literal_eval`` on a bounded
    string)."""
    if not text or len(text) > 1 << 20:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(value, dict) and sorted(value) == list(range(len(value))):
        return [str(value[i]) for i in range(len(value))]
    if isinstance(value, (list, tuple)) and value:
        return [str(v) for v in value]
    return None


def producer_input_size(model):
    """(H, W) from the producer's ``imgsz`` property (Ultralytics writes ``[640, 640]``), or None."""
    text = dict((p.key, p.value) for p in model.metadata_props).get("imgsz")
    try:
        value = ast.literal_eval(text) if text and len(text) < 64 else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 8192 for v in value)
    return tuple(value) if ok else None


def _input(model, where, input_size):
    name, shape, outputs = onnx_interface(model)
    if len(shape) != 4 or shape[1] not in (None, 3):
        raise UnsupportedError("{}'s input {!r} is shaped {}: edgecsp runs models with one NCHW 3-channel image "
                               "input".format(where, name, list(shape)))
    if not input_size and None in shape[2:]:  # a dynamic export: the size its producer says it was made for
        input_size = producer_input_size(model)
    height, width = input_size or shape[2:]
    if not height or not width:
        raise InputError("{}'s input size is dynamic: pass --input-size HxW (the size it was trained or exported "
                         "at)".format(where))
    return name, (int(height), int(width)), outputs


def output_ops(model):
    """``{output name: op type}``: the node that computes each graph output, seen through reshapes and
    transposes (a head's Sigmoid stays a Sigmoid when the export reshapes it to 5-D)."""
    producers = dict((out, node) for node in model.graph.node for out in node.output)
    found = {}
    for output in model.graph.output:
        node = producers.get(output.name)
        for _ in range(16):
            if node is None or node.op_type not in RESHAPES or not node.input:
                break
            node = producers.get(node.input[0])
        found[output.name] = node.op_type if node is not None else None
    return found


def describe_layouts():
    """``layout (options)`` for every layout an import can name, for messages."""
    return "; ".join("{} ({})".format(layout.name, ", ".join("--" + o.replace("_", "-") for o in layout.export_options)
                                      or "--param KEY=VALUE")
                     for layout in list_layouts() if layout.task == "detect")


def _implied_layout(options):
    """The one layout whose options include all of ``options`` (``--anchors`` alone implies yolo_raw)."""
    fits = [layout for layout in list_layouts()
            if set(options) <= set(layout.export_options) | set(f.name for f in layout.fields)]
    if len(fits) != 1:
        raise InputError("layout options {} need --layout NAME ({}): one of {}".format(
            ", ".join("--" + k.replace("_", "-") for k in sorted(options)),
            "no layout takes them all" if not fits else "more than one layout takes them",
            ", ".join(layout.name for layout in fits or list_layouts())))
    return fits[0].name


def _checked_params(layout, params):
    """``--param`` values through the layout's own rules (``Layout.fields``): InputError for a key the layout
    does not have or a value its rule refuses."""
    fields = dict((f.name, f) for f in layout.fields)
    unknown = sorted(k for k in params if k not in fields)
    if unknown:
        raise InputError("layout {} has no parameter {} (it has {}): fix --param".format(
            layout.name, shown(", ".join(unknown), 60), ", ".join(sorted(fields)) or "none"))
    try:
        return dict((key, fields[key].rule(value, key)) for key, value in params.items())
    except SchemaProblem as problem:
        raise InputError("--param {}: fix the value (layout {})".format(problem, layout.name))


def _layout_of(config, outputs, producer, input_size, where):
    given = dict(config.options or {})
    given.update(config.params or {})
    name = config.layout or (_implied_layout(given) if given else None)
    if name:
        layout = get_layout(name, "--layout")
        options = dict(config.options or {})
        options.update(_checked_params(layout, config.params or {}))
        params = layout.from_options(options, outputs, input_size)
        try:  # what the options make must pass the layout's rules before anything else reads it
            layout.read_params(params, where)
        except MetadataError as exc:
            raise InputError("{}; check --layout {}'s options".format(str(exc).split("; re-export")[0], layout.name))
        return layout, params, None, [output for output, _ in outputs], {}, "", {}
    found = recognise(outputs, producer)
    if found is None:
        raise InputError("{}: cannot tell the output layout of outputs {}: pass --layout with its options, one of: "
                         "{}".format(where, shown([[n, list(s) if s else s] for n, s in outputs], 160),
                                     describe_layouts()))
    layout, got = found
    return layout, got.params, got.names, got.outputs, dict(got.preprocess), got.family, dict(got.nms)


def class_count(layout, params, order, outputs, input_size, input_name, where):
    """The one class count for which ``layout`` with ``params`` fits ``outputs`` (``check_interface``); InputError
    asking for --names when the shapes allow none or several (end-to-end rows do not say it)."""
    candidates = set()
    for _, shape in outputs:
        for d in shape or ():
            for group in range(1, 10):  # anchors per cell, levels
                if d and d % group == 0:
                    candidates.update(d // group - k for k in range(0, 9) if d // group - k >= 1)
    fits = []
    for count in sorted(candidates):
        try:
            meta = ModelMeta.from_dict(dict(format=FORMAT_VERSION, names=["c"] * count, input_size=list(input_size),
                                            task=layout.task, layout=layout.name, params=params, outputs=list(order),
                                            input_name=input_name), where)
            check_interface(meta, input_name, (None, 3) + tuple(input_size), outputs, where)
        except MetadataError:
            continue
        fits.append(count)
        if len(fits) > 1:
            break
    if len(fits) != 1:
        raise InputError("{} does not say its class names{}: pass --names FILE (one name per line)".format(
            where, "" if fits else " and its outputs do not fit any class count"))
    return fits[0]


def attach_metadata(config, log=None):
    """Write a described (and simplified, verified) copy of ``config.onnx_path``; returns ``(path, ModelMeta)``."""
    onnx = require("onnx", "reading ONNX models")
    log = log or (lambda message: None)
    if not os.path.isfile(config.onnx_path):
        raise InputError("{} not found: pass the .onnx file to describe".format(config.onnx_path))
    output = config.output or os.path.splitext(config.onnx_path)[0] + "-edgecsp.onnx"
    check_paths(config, PATHS, output=output)
    where = os.path.basename(config.onnx_path)
    try:
        model = onnx.load(config.onnx_path)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError...: all mean "not a usable ONNX"
        raise InputError("{} is not a valid ONNX model ({}): pass the exported .onnx file".format(
            config.onnx_path, exc.__class__.__name__))
    input_name, input_size, outputs = _input(model, where, config.input_size)
    producer = producer_metadata(model, input_size)
    layout, params, names, order, preprocess, family, nms = _layout_of(config, outputs, producer, input_size, where)
    if config.names_file:
        names = read_names(config.names_file)
    names = names or names_from_producer(producer.get("names"))
    guessed = not names
    if guessed:  # the outputs may say how many classes there are: class0..classN-1, as darknet's import does
        count = class_count(layout, params, order, outputs, input_size, input_name, where)
        names = ["class{}".format(i) for i in range(count)]
        log("{}: no class names in the file: {} classes named class0..class{} (pass --names FILE for real "
            "names)".format(where, count, count - 1))
    unknown = sorted(set(config.preprocess or {}) - set(PREPROCESS_FIELDS))
    if unknown:
        raise InputError("unknown preprocessing options {}: use {}".format(unknown, ", ".join(PREPROCESS_FIELDS)))
    preprocess.update(config.preprocess or {})
    log("{}: layout {}{}".format(where, layout.name, " ({})".format(family) if family else " (--layout)"))
    document = dict(format=FORMAT_VERSION, names=names, input_size=list(input_size), task=layout.task,
                    layout=layout.name, params=params,
                    outputs=list(order), input_name=input_name, input_form=FLOAT_NCHW,
                    model=family or os.path.splitext(where)[0], nms=nms,
                    extra={"source": where, "attached_by": "edgecsp export --onnx", "family": family,
                           "producer": str(producer.get("author") or producer.get("producer") or "")[:120]})
    document.update((k, list(v) if isinstance(v, tuple) else v) for k, v in preprocess.items())
    try:  # the description against the graph: wrong options or names are the user's to fix (exit 3)
        meta = ModelMeta.from_dict(document, where)
        check_interface(meta, input_name, onnx_interface(model)[1], outputs, where)
    except MetadataError as exc:
        raise InputError("{}; check --names and the layout's options{}".format(
            str(exc).split("; re-export")[0].split(": re-export")[0], " (--layout {})".format(layout.name)))
    refused, doubts = layout.import_doubts(meta, output_ops(model))
    if refused:  # a description that cannot be right: nothing is written
        raise InputError("{}: {}".format(where, refused[0]))
    for doubt in doubts:
        log_warning("edgecsp export: warning: %s: %s", where, doubt)
    with Staged([output]) as staged:
        original = os.path.join(staged.staging, ".original-{}.onnx".format(uuid.uuid4().hex))  # never the output
        onnx.save(model, original)
        final = model
        if config.simplify:
            log("simplifying with onnxsim")
            final = simplify(model)
        final = set_onnx_meta(final, meta, where)  # the metadata's rules and its check against the graph
        onnx.save(final, staged.staged[0])
        onnx.checker.check_model(staged.staged[0], full_check=True)
        if config.verify and config.simplify:
            diff = _verify(original, staged.staged[0], meta)
            log("verified: simplified vs original max |diff| {:.3g} (ONNX Runtime)".format(diff))
        os.remove(original)
    return output, meta


def _verify(original, simplified, meta):
    """Run both graphs with ONNX Runtime on the same input; VerificationError unless they agree within 1e-5."""
    from edgecsp.export.onnx_export import run_onnx, sample_input

    x = sample_input((1, 3) + tuple(meta.input_size))
    want, got = run_onnx(original, x), run_onnx(simplified, x)
    worst = 0.0
    for a, b in zip(want, got):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise VerificationError("simplified vs original: an output changed shape {} -> {}: re-run with "
                                    "--no-simplify".format(a.shape, b.shape))
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b))))
            if np.any(np.abs(a - b) > 1e-5 + 1e-5 * np.abs(a)):
                raise VerificationError("simplified vs original differ by up to {:.3g}: re-run with "
                                        "--no-simplify".format(worst))
    return worst
