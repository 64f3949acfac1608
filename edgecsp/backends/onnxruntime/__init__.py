"""ONNX Runtime backend: runs exported .onnx files on the CPU (target ``cpu-ort``).

The runner needs only onnxruntime (metadata comes from the session, not the onnx package); ``build`` is host
side and uses the onnx package.
"""
from edgecsp._lazy import available
from edgecsp.backends.onnxruntime.build import BUILD_OPTIONS, build
from edgecsp.backends.onnxruntime.runner import OnnxRuntimeRunner, read_meta

NAME = "onnxruntime"
Runner = OnnxRuntimeRunner

__all__ = ["BUILD_OPTIONS", "NAME", "Runner", "OnnxRuntimeRunner", "build", "is_available", "read_meta", "version"]


def is_available():
    # type: () -> bool
    return available("onnxruntime")


def version():
    """The installed onnxruntime version, or None when it is not installed."""
    if not is_available():
        return None
    import onnxruntime

    return onnxruntime.__version__
