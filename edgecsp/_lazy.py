"""Import heavy optional packages on first use, with an error that names how to install them."""
import importlib

from edgecsp.errors import MissingDependency

# module -> how to get it
_HINTS = {
    "torch": "pip install 'edgecsp[export]' (CPU build: pip install torch==2.13.0)",
    "onnx": "pip install 'edgecsp[export]'",
    "onnxsim": "pip install 'edgecsp[export]'",
    "onnxruntime": "pip install 'edgecsp[cpu]' (or onnxruntime alone)",
    "openvino": "pip install 'edgecsp[cpu]' (or openvino alone)",
    "cv2": "pip install 'edgecsp[cpu]' (opencv-python-headless); on a Jetson: sudo apt install python3-opencv",
    "av": "pip install 'edgecsp[cpu]' (PyAV, for H.264 video output)",
    "tensorrt": "on a Jetson it ships with JetPack (sudo apt install python3-libnvinfer); elsewhere install TensorRT",
    "pycuda": "pip install pycuda (on a Jetson after JetPack's CUDA is on PATH)",
    "nncf": "pip install 'edgecsp[quantize]' (nncf, for INT8 OpenVINO IR)",
    "matplotlib": "pip install 'edgecsp[eval]' (matplotlib, for the --plot chart)",
    "faster_coco_eval": "pip install 'edgecsp[eval]'",
    "pycocotools": "pip install 'edgecsp[eval]' (or pycocotools alone)",
}


def require(module, purpose=""):
    """Import ``module`` or raise MissingDependency naming the install command."""
    if module.split(".")[0] == "cv2":
        from edgecsp._quiet import quiet_opencv_environment

        quiet_opencv_environment()  # before OpenCV reads its log levels: edgecsp reports bad videos itself
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = _HINTS.get(top, "pip install " + top)
        what = " for " + purpose if purpose else ""
        raise MissingDependency("{} is needed{} but is not installed ({}): {}".format(
            top, what, exc.__class__.__name__, hint))


# The oldest numpy the device-side code runs on: JetPack 4.6.x's apt python3-numpy (Ubuntu 18.04) is 1.13.3.
# tests/test_python36.py checks device-side modules against scripts/check_numpy_floor.py's table of newer APIs.
NUMPY_FLOOR = (1, 13)
NUMPY_FIX = "pip3 install numpy==1.19.5 (the last numpy with Python 3.6 aarch64 wheels; docker/Dockerfile.jetpack4 pins it)"


def numpy_version_tuple(version):
    """``"1.19.5"`` -> ``(1, 19)``; ``"2.0.0rc1"`` -> ``(2, 0)``."""
    import re

    parts = [int(re.match(r"\d*", p).group() or 0) for p in str(version).split(".")[:2]]
    return tuple(parts + [0] * (2 - len(parts)))


def check_numpy(version=None):
    """MissingDependency when the installed numpy is older than NUMPY_FLOOR (what the device commands run on)."""
    if version is None:
        import numpy

        version = numpy.__version__
    if numpy_version_tuple(version) < NUMPY_FLOOR:
        raise MissingDependency("numpy {} is older than {}, the oldest edgecsp runs on: {}".format(
            version, ".".join(str(v) for v in NUMPY_FLOOR), NUMPY_FIX))
    return version


def available(module):
    """True when ``module`` can be imported (the same check the tests' markers use)."""
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False
