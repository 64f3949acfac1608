"""TensorRT backend: device bundles on any machine, engines and their runner where TensorRT and the GPU are.

``write_bundle`` is the host half of ``edgecsp build --target tx2`` (no TensorRT needed; its modules are in
``host/``); ``build`` builds the engine on the device (from an ONNX or a bundle); ``adopt_engine`` writes the
manifest of an engine trtexec built from a bundle there; ``Runner`` runs either with pycuda.
Importing this package needs numpy only and loads nothing from ``host/``: tensorrt, pycuda and onnx are imported
by the functions that use them.
"""
from edgecsp._lazy import available
from edgecsp.backends.tensorrt.adopt import adopt_engine
from edgecsp.backends.tensorrt.device import build_problem
from edgecsp.backends.tensorrt.engine_build import build, build_from_bundle
from edgecsp.backends.tensorrt.options import BUILD_OPTIONS, TensorRTOptions
from edgecsp.backends.tensorrt.runner import TensorRTRunner, read_meta


NAME = "tensorrt"
Runner = TensorRTRunner

__all__ = ["BUILD_OPTIONS", "NAME", "Runner", "TensorRTOptions", "TensorRTRunner", "adopt_engine", "build",
           "build_from_bundle", "build_problem", "is_available", "read_meta", "version", "write_bundle"]


def write_bundle(onnx_path, out_dir, precision=None, target="tx2", **options):
    """The host half (``host.bundle.write_bundle``), imported when called: the device half never loads it."""
    from edgecsp.backends.tensorrt.host.bundle import write_bundle as write

    return write(onnx_path, out_dir, precision, target, **options)


def is_available():
    # type: () -> bool
    return available("tensorrt")


def version():
    """The installed TensorRT version, or None when it is not installed."""
    if not is_available():
        return None
    import tensorrt

    return str(tensorrt.__version__)
