"""Deployment targets as data: one record per device, read by ``edgecsp build`` and the backends.

Adding a device means adding a record to ``_TARGETS``; nothing else in edgecsp branches on a target's name.
Python 3.6 compatible (it is read on the Jetson).
"""
from typing import List, NamedTuple, Optional, Tuple

from edgecsp.errors import UnsupportedError


class Target(NamedTuple):
    """What edgecsp needs to know to build and run for one device."""

    name: str  # what the user types: --target cpu
    backend: str  # edgecsp.backends.<backend>: "openvino" | "onnxruntime" | "tensorrt"
    description: str
    precisions: Tuple[str, ...]  # supported now, best-tested first
    default_precision: str
    max_opset: int  # highest ONNX opset the backend's parser is known to take
    device_python: str  # Python on the device: "3.6" (JetPack 4.6), "3.8+"...
    suffix: str  # artefact file suffix: ".xml", ".onnx", ".engine"
    trt_version: Optional[Tuple[str, str]] = None  # (lowest, highest) TensorRT version; None off TensorRT
    sm: Optional[str] = None  # CUDA compute capability, e.g. "6.2"; None for CPUs
    fast_fp16: bool = False  # the hardware runs FP16 faster than FP32
    fast_int8: bool = False  # the hardware has fast INT8 (tensor cores / DP4A / VNNI)
    dla: bool = False  # has NVDLA cores


_TARGETS = (
    Target(
        name="cpu",
        backend="openvino",
        description="x86 CPU through OpenVINO IR (INT8 arrives with calibration)",
        precisions=("fp32", "fp16"),
        default_precision="fp32",
        max_opset=18,
        device_python="3.8+",
        suffix=".xml",
    ),
    Target(
        name="cpu-ort",
        backend="onnxruntime",
        description="any CPU through ONNX Runtime's CPU execution provider",
        precisions=("fp32",),
        default_precision="fp32",
        max_opset=19,
        device_python="3.8+",
        suffix=".onnx",
    ),
)


def list_targets():
    # type: () -> List[Target]
    """All known targets, in a stable order."""
    return list(_TARGETS)


def get_target(name):
    # type: (str) -> Target
    """The record called ``name``; UnsupportedError listing the known names otherwise."""
    if isinstance(name, Target):
        return name
    for target in _TARGETS:
        if target.name == name:
            return target
    raise UnsupportedError("unknown target {!r}: choose one of {}".format(
        name, ", ".join(t.name for t in _TARGETS)))


def check_precision(target, precision=None):
    # type: (Target, Optional[str]) -> str
    """``precision`` (the target's default when None) if ``target`` supports it; UnsupportedError otherwise."""
    target = get_target(target)
    if precision is None:
        return target.default_precision
    if precision not in target.precisions:
        raise UnsupportedError("target {} does not support precision {!r}: choose one of {}".format(
            target.name, precision, ", ".join(target.precisions)))
    return precision
