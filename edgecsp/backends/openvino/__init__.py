"""OpenVINO backend: builds OpenVINO IR (.xml + .bin) from exported ONNX and runs it (target ``cpu``).

The edgecsp metadata lives in the IR's rt_info under ``edgecsp/meta`` (a JSON string, see ``RT_INFO_PATH``).
"""
from edgecsp._lazy import available
from edgecsp.backends.openvino.build import BUILD_OPTIONS, build, weight_precisions
from edgecsp.backends.openvino.runner import RT_INFO_PATH, OpenVINORunner, read_meta

NAME = "openvino"
Runner = OpenVINORunner

__all__ = ["BUILD_OPTIONS", "NAME", "RT_INFO_PATH", "Runner", "OpenVINORunner", "build", "is_available", "read_meta", "version",
           "weight_precisions"]


def is_available():
    # type: () -> bool
    return available("openvino")


def version():
    """The installed OpenVINO version, or None when it is not installed."""
    if not is_available():
        return None
    import openvino

    return openvino.__version__.split("-")[0]
