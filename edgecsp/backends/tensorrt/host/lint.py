"""Lint an ONNX model against a target's TensorRT ONNX-parser operator matrix, on the host, before the device.

The matrices are package data (``opsets.py``, generated from onnx-tensorrt's operators.md by
``scripts/encode_trt_operators.py``). A target is linted against the matrix of the lowest TensorRT version it
runs, so a model that passes here parses on every JetPack the record names. Needs the onnx package (operator
schemas map restriction names such as Resize ``scales`` to input positions). Python 3.6 syntax.
"""
from typing import List, NamedTuple

from edgecsp.backends.tensorrt.host.opsets import MATRICES
from edgecsp.backends.tensorrt.versions import closest_at_or_below
from edgecsp.errors import UnsupportedError
from edgecsp.targets import get_target, list_targets

DEFAULT_DOMAINS = ("", "ai.onnx")
# onnx-tensorrt's operators.md of these releases: "Floating point inputs are only supported if `start`, `limit`,
# and `delta` inputs are initializers" (Range; later releases dropped the restriction)
FLOAT_RANGE_NEEDS_CONSTANTS = ("8.2",)
# how to get rid of an operator a matrix lacks; the default names the targets whose TensorRT parses it
OP_FIXES = {
    "NonZero": "remove data-dependent indexing (torch.nonzero, x[mask], boolean masks) from the model's forward; "
               "an export with NMS in the graph has it (Ultralytics `export(nms=True)`): export without NMS "
               "(`yolo export format=onnx opset=13`) and edgecsp decodes, filters and suppresses in the runtime",
    "Mod": "end-to-end heads (YOLOv10, YOLO26 `end2end=True`) compute their top-k indices with Mod: export the "
           "one-to-many head instead (Ultralytics `export(format='onnx', opset=13, end2end=False)`) and edgecsp "
           "runs NMS in the runtime, or build for a target with TensorRT 8.6+",
    "Mish": "edgecsp decomposes Mish into Softplus/Tanh/Mul when it fits the graph; export at opset <= 17 "
            "(edgecsp.models' Mish is already decomposed)",
}


class LintFinding(NamedTuple):
    """One problem of one node: ``severity`` is "error" (the parser fails) or "warning" (it builds, badly)."""

    severity: str
    node: str
    op_type: str
    problem: str
    fix: str

    def __str__(self):
        return "{} ({}): {}; fix: {}".format(self.node, self.op_type, self.problem, self.fix)


def matrix_key(target):
    # type: (...) -> str
    """The MATRICES key for ``target``: the matrix of the lowest TensorRT version the record names."""
    target = get_target(target)
    if not target.trt_version:
        raise UnsupportedError("target {} does not use TensorRT: nothing to lint against".format(target.name))
    key = closest_at_or_below(target.trt_version[0], MATRICES)
    if key is None:
        raise UnsupportedError("no operator matrix for TensorRT {} (known: {})".format(
            target.trt_version[0], ", ".join(sorted(MATRICES))))
    return key


def matrix_for(target):
    """The operator matrix (a dict, see opsets.py) that ``target`` is linted against."""
    return MATRICES[matrix_key(target)]


def targets_supporting(op_type):
    # type: (str) -> List[str]
    """Names of the TensorRT targets whose matrix lists ``op_type`` as supported."""
    return [t.name for t in list_targets() if t.trt_version and op_type in matrix_for(t)["supported"]]


def _opset(model):
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return 0


def _node_label(node, index):
    return node.name or "{}#{} -> {}".format(node.op_type, index, ",".join(node.output))


def _walk(graph):
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies), with the graph's constant names."""
    constants = set(i.name for i in graph.initializer)
    constants.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    for index, node in enumerate(graph.node):
        yield node, index, constants
        for attr in node.attribute:
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                for item in _walk(sub):
                    yield item


def _float_tensors(onnx, model):
    """Names of the floating-point tensors of ``model`` (ONNX shape inference; empty when it fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; the lint stays on the other checks
        return set()
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return set(v.name for v in values if v.type.tensor_type.elem_type in floats)


def _input_positions(onnx, op_type, opset, names):
    """{input name: position} for the ``names`` of ``op_type``'s schema at ``opset`` (unknown names skipped)."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, "")
    except Exception:  # onnx raises SchemaError (not exported under one name across versions)
        return {}
    positions = dict((formal.name, i) for i, formal in enumerate(schema.inputs))
    return dict((n, positions[n]) for n in names if n in positions)


def _unsupported_fix(op_type):
    if op_type in OP_FIXES:
        return OP_FIXES[op_type]
    able = targets_supporting(op_type)
    if able:
        return "replace {} in the model, or build for a target whose TensorRT parses it ({})".format(
            op_type, ", ".join(able))
    return "replace {} in the model (no edgecsp target's TensorRT parses it)".format(op_type)


def lint_model(model, target):
    # type: (...) -> List[LintFinding]
    """Every problem TensorRT's ONNX parser for ``target`` would hit in ``model`` (an onnx.ModelProto)."""
    from edgecsp._lazy import require

    onnx = require("onnx", "linting ONNX models for TensorRT")
    target = get_target(target)
    key = matrix_key(target)
    matrix = MATRICES[key]
    trt = "TensorRT " + key
    findings = []
    opset = _opset(model)
    if opset > matrix["max_opset"] or opset > target.max_opset:
        limit = min(matrix["max_opset"], target.max_opset)
        findings.append(LintFinding(
            "error", "<model>", "opset", "ONNX opset {} is above the {} that {} on {} parses".format(
                opset, limit, trt, target.name),
            "re-export with `edgecsp export --opset {}` (an ONNX file cannot be converted down)".format(limit)))
    elif opset < matrix["min_opset"]:
        findings.append(LintFinding(
            "error", "<model>", "opset", "ONNX opset {} is below the {} that {} parses".format(
                opset, matrix["min_opset"], trt),
            "re-export with `edgecsp export --opset {}`".format(min(13, matrix["max_opset"]))))
    positions_cache = {}
    float_types = None  # tensor names of floating-point type, from shape inference when a Range needs them
    for node, index, constants in _walk(model.graph):
        label, op = _node_label(node, index), node.op_type
        if op in matrix["warnings"]:
            findings.append(LintFinding("warning", label, op, matrix["warnings"][op], "see the problem"))
            continue
        if op.endswith("_TRT"):  # the parser hands unknown ops to the plugin registry by name
            findings.append(LintFinding("warning", label, op, "needs the TensorRT plugin {} on the device".format(op),
                                        "make sure the device's TensorRT ships it (libnvinfer_plugin)"))
            continue
        if node.domain not in DEFAULT_DOMAINS:
            findings.append(LintFinding("error", label, op, "custom-domain operator {}::{} has no TensorRT "
                                        "importer".format(node.domain, op), _unsupported_fix(op)))
            continue
        if op in matrix["unsupported"]:
            findings.append(LintFinding("error", label, op, "{} cannot parse {}".format(trt, op),
                                        _unsupported_fix(op)))
            continue
        if op not in matrix["supported"]:
            findings.append(LintFinding("error", label, op, "{} is not in {}'s operator list".format(op, trt),
                                        _unsupported_fix(op)))
            continue
        if op == "Range" and key in FLOAT_RANGE_NEEDS_CONSTANTS and not all(x in constants for x in node.input):
            if float_types is None:
                float_types = _float_tensors(onnx, model)
            if any(x in float_types for x in node.input):
                findings.append(LintFinding(
                    "error", label, op, "{} takes a floating-point Range only when start, limit and delta are "
                    "initializers; these are computed at run time".format(trt),
                    "export with a fixed input size (classic YOLOv5: `export.py` without --dynamic; Ultralytics: "
                    "dynamic=False) so the grid folds into constants"))
                continue
        wanted = matrix["constant_inputs"].get(op)
        if not wanted:
            continue
        if op not in positions_cache:
            positions_cache[op] = _input_positions(onnx, op, opset, wanted)
        for name, position in sorted(positions_cache[op].items(), key=lambda item: item[1]):
            if position >= len(node.input) or not node.input[position] or node.input[position] in constants:
                continue
            findings.append(LintFinding(
                "error", label, op, "input '{}' (tensor {}) is computed at run time but {} needs it as an "
                "initializer".format(name, node.input[position], trt),
                "simplify the model so it folds into a constant (`edgecsp export` runs onnxsim; keep the input "
                "shape static), or compute it from a fixed factor in the model (F.interpolate(scale_factor=2))"))
    return findings


def errors_of(findings):
    return [f for f in findings if f.severity == "error"]


def raise_on_errors(findings, where, target):
    """UnsupportedError naming every error finding (node, problem, fix); the warnings are left to the caller."""
    errors = errors_of(findings)
    if errors:
        target = get_target(target)
        raise UnsupportedError("{} will not build for {} (TensorRT {}): {} problem(s): {}".format(
            where, target.name, matrix_key(target), len(errors), " | ".join(str(f) for f in errors)))
