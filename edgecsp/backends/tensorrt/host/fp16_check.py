"""FP16 range check: run the FP32 model with ONNX Runtime on calibration batches and report every tensor whose
values leave the FP16 range (|x| > 65504 becomes inf in FP16). Those tensors' layers are kept in FP32 on the
device. Host side: needs onnx and onnxruntime. Python 3.6 syntax.
"""
from typing import Dict, Iterable, List, NamedTuple

import numpy as np

from edgecsp._lazy import require

FP16_MAX = 65504.0


class RangeFinding(NamedTuple):
    """A tensor that overflows FP16: the node writing it (= the TensorRT layer name) and its largest |value|."""

    tensor: str
    node: str
    op_type: str
    absmax: float
    batches: int  # batches in which it overflowed

    def __str__(self):
        return "{} (written by {} {}): |x| up to {:.4g} > {:g} in {} batch(es)".format(
            self.tensor, self.op_type, self.node, self.absmax, FP16_MAX, self.batches)


def float_tensors(model):
    """``[(tensor, node name, op type)]`` for every float32 node output of ``model`` in graph order, typed by
    shape inference; the model's own outputs included."""
    onnx = require("onnx", "inspecting ONNX tensors")
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        types[info.name] = info.type.tensor_type.elem_type
    found = []
    for index, node in enumerate(model.graph.node):
        for name in node.output:
            if name and types.get(name) == onnx.TensorProto.FLOAT:
                found.append((name, node.name or "{}#{}".format(node.op_type, index), node.op_type))
    return found


def exposing_session(model, tensors):
    """An ONNX Runtime session over a copy of ``model`` whose outputs are ``tensors`` (names); CPU provider."""
    onnx = require("onnx", "inspecting ONNX tensors")
    ort = require("onnxruntime", "running the FP32 model on the host")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in tensors)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # no graph optimizations: fused nodes would hide the intermediate tensors asked for
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(probe.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def fp16_range_report(model, batches, limit=FP16_MAX):
    # type: (object, Iterable[np.ndarray], float) -> List[RangeFinding]
    """The tensors of ``model`` (onnx.ModelProto) whose |value| exceeds ``limit`` on any of ``batches``.

    Inf/NaN already present in FP32 count as overflow too. Findings are in graph order.
    """
    tensors = float_tensors(model)
    if not tensors:
        return []
    names = [t[0] for t in tensors]
    session = exposing_session(model, names)
    input_name = session.get_inputs()[0].name
    absmax = dict((n, 0.0) for n in names)  # type: Dict[str, float]
    hits = dict((n, 0) for n in names)
    for batch in batches:
        for name, value in zip(names, session.run(names, {input_name: batch})):
            if value.size == 0:
                continue
            finite = np.isfinite(value)
            peak = float(np.max(np.abs(value[finite]))) if finite.any() else 0.0
            if not finite.all():
                peak = float("inf")
            absmax[name] = max(absmax[name], peak)
            if peak > limit:
                hits[name] += 1
    return [RangeFinding(name, node, op, absmax[name], hits[name]) for name, node, op in tensors if hits[name]]


def report_dict(findings, images, source):
    """The JSON-ready record written next to the bundle's ONNX (fp16_range.json)."""
    return {"fp16_max": FP16_MAX, "images": images, "source": source,
            "overflowing": [f._asdict() for f in findings]}
