"""Deployment targets as data: one record per device, read by ``edgecsp build`` and the backends.

Adding a device means adding a record to ``_TARGETS``; nothing else in edgecsp branches on a target's name.
Python 3.6 compatible (it is read on the Jetson).
"""
import re
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
    device_python: str  # Python on the device: "3.6" (JetPack 4.6.x), "3.8+"...
    suffix: str  # artefact file suffix: ".xml", ".onnx", ".engine"
    trt_version: Optional[Tuple[str, str]] = None  # (lowest, highest) TensorRT version; None off TensorRT
    sm: Optional[str] = None  # CUDA compute capability, e.g. "6.2"; None for CPUs and "any NVIDIA GPU"
    fast_fp16: bool = False  # the hardware runs FP16 faster than FP32
    fast_int8: bool = False  # the hardware has fast INT8 (tensor cores / DP4A / VNNI)
    dla_cores: int = 0  # NVDLA cores (Xavier and AGX Orin / Orin NX: 2; TX2, Nano, Orin Nano: none)
    jetpack: Optional[str] = None  # JetPack release the record describes (sets CUDA, TensorRT, Python)
    l4t: Optional[str] = None  # the L4T (Jetson Linux) release of that JetPack, which `cat /etc/nv_tegra_release` shows
    cuda: Optional[str] = None  # CUDA version on the device
    docker: Optional[str] = None  # docker/Dockerfile.<docker> builds the device image


_TARGETS = (
    Target(
        name="cpu",
        backend="openvino",
        description="x86 CPU through OpenVINO IR (INT8: NNCF post-training quantization, --calib)",
        precisions=("fp32", "fp16", "int8"),
        default_precision="fp32",
        max_opset=18,
        device_python="3.8+",
        suffix=".xml",
    ),
    Target(
        name="cpu-ort",
        backend="onnxruntime",
        description="any CPU through ONNX Runtime's CPU execution provider (INT8: static QDQ, --calib)",
        precisions=("fp32", "int8"),
        default_precision="fp32",
        max_opset=19,
        device_python="3.8+",
        suffix=".onnx",
    ),
    # TensorRT targets: engines only run on the GPU and TensorRT version that built them, so `edgecsp build`
    # writes a device bundle on other machines and the engine is built on the device (README "TensorRT").
    # trt_version is (lowest, highest) as shipped by the JetPack release(s); "x" matches any number. JetPack 4.6
# itself (L4T r32.6.1) ships TensorRT 8.0.1: edgecsp refuses it with the upgrade to 4.6.1+ (policy.JETPACKS).
    Target(
        name="tx2",
        backend="tensorrt",
        description="Jetson TX2 (Pascal), JetPack 4.6.1+ (L4T r32.7.x): FP16; no fast INT8, no DLA",
        precisions=("fp16", "fp32", "int8"),
        default_precision="fp16",
        max_opset=13,
        device_python="3.6",
        suffix=".engine",
        trt_version=("8.2.1", "8.2.1"),
        sm="6.2",
        fast_fp16=True,
        jetpack="4.6.1",
        l4t="r32.7",
        cuda="10.2",
        docker="jetpack4",
    ),
    Target(
        name="nano",
        backend="tensorrt",
        description="Jetson Nano (Maxwell), JetPack 4.6.1+ (L4T r32.7.x): FP16; no fast INT8, no DLA",
        precisions=("fp16", "fp32", "int8"),
        default_precision="fp16",
        max_opset=13,
        device_python="3.6",
        suffix=".engine",
        trt_version=("8.2.1", "8.2.1"),
        sm="5.3",
        fast_fp16=True,
        jetpack="4.6.1",
        l4t="r32.7",
        cuda="10.2",
        docker="jetpack4",
    ),
    Target(
        name="xavier-nx",
        backend="tensorrt",
        description="Jetson Xavier NX (Volta): FP16, INT8, 2 DLA cores",
        precisions=("fp16", "int8", "fp32"),
        default_precision="fp16",
        max_opset=17,
        device_python="3.8",
        suffix=".engine",
        trt_version=("8.5.2", "8.5.2"),
        sm="7.2",
        fast_fp16=True,
        fast_int8=True,
        dla_cores=2,
        jetpack="5.1",
        l4t="r35.2",
        cuda="11.4",
        docker="jetpack5",
    ),
    Target(
        name="agx-xavier",
        backend="tensorrt",
        description="Jetson AGX Xavier (Volta): FP16, INT8, 2 DLA cores",
        precisions=("fp16", "int8", "fp32"),
        default_precision="fp16",
        max_opset=17,
        device_python="3.8",
        suffix=".engine",
        trt_version=("8.5.2", "8.5.2"),
        sm="7.2",
        fast_fp16=True,
        fast_int8=True,
        dla_cores=2,
        jetpack="5.1",
        l4t="r35.2",
        cuda="11.4",
        docker="jetpack5",
    ),
    Target(
        name="orin",
        backend="tensorrt",
        description="Jetson AGX Orin / Orin NX (Ampere) on JetPack 6 (L4T r36): FP16, INT8, 2 DLA cores",
        precisions=("fp16", "int8", "fp32"),
        default_precision="fp16",
        max_opset=17,
        device_python="3.10",
        suffix=".engine",
        trt_version=("8.6.2", "10.3.x"),
        sm="8.7",
        fast_fp16=True,
        fast_int8=True,
        dla_cores=2,
        jetpack="6",
        l4t="r36",
        cuda="12.2",
        docker="jetpack6",
    ),
    Target(
        name="x86-cuda",
        backend="tensorrt",
        description="x86-64 with an NVIDIA GPU (Turing or newer) and TensorRT 10",
        precisions=("fp16", "int8", "fp32"),
        default_precision="fp16",
        max_opset=20,
        device_python="3.8+",
        suffix=".engine",
        trt_version=("10.0.1", "10.x"),
        fast_fp16=True,
        fast_int8=True,
        cuda="12.x",
    ),
)


# Orin Nano is an Orin without DLA cores: its record follows orin's. An AGX Orin / Orin NX on JetPack 5.1 (L4T
# r35.2: TensorRT 8.5.2, Python 3.8) is `orin-jp5`, a record of its own: an engine only runs on the TensorRT that
# built it, so one name cannot cover two JetPacks, and `orin` keeps meaning what it always meant (JetPack 6).
# Orin Nano needs JetPack 5.1.1 (L4T r35.3.1), newer than the jetpack5 image: it has no JetPack 5 record.
_ORIN = [t.name for t in _TARGETS].index("orin")
_TARGETS = _TARGETS[:_ORIN + 1] + (
    _TARGETS[_ORIN]._replace(name="orin-nano", dla_cores=0,
                             description="Jetson Orin Nano (Ampere) on JetPack 6 (L4T r36): FP16, INT8; no DLA"),
    _TARGETS[_ORIN]._replace(name="orin-jp5", max_opset=17, device_python="3.8", trt_version=("8.5.2", "8.5.2"),
                             jetpack="5.1", l4t="r35.2", cuda="11.4", docker="jetpack5",
                             description="Jetson AGX Orin / Orin NX (Ampere) on JetPack 5.1 (L4T r35.2): FP16, INT8, "
                                         "2 DLA cores"),
) + _TARGETS[_ORIN + 1:]


def list_targets():
    # type: () -> List[Target]
    """All known targets, in a stable order."""
    return list(_TARGETS)


def get_target(name):
    # type: (str) -> Target
    """The record called ``name`` (a Target passes through); UnsupportedError listing the known names otherwise."""
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


def dla_tag(dla_core):
    # type: (object) -> str
    """``-dla0`` in the name of an artefact built for DLA core 0, "" for the GPU: a DLA build never takes the name
    (and so never replaces the bundle or engine) of the GPU one."""
    if dla_core is None or isinstance(dla_core, bool) or not re.match(r"[0-9]{1,3}\Z", str(dla_core)):
        return ""  # not a core number: check_dla refuses it before anything is written
    return "-dla{}".format(int(dla_core))
