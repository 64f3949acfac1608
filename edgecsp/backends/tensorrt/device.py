"""Probing the machine edgecsp runs on: TensorRT version and the CUDA GPU (name, SM). Python 3.6.

The GPU is read through the CUDA driver library with ctypes, so the probe needs neither pycuda nor TensorRT;
on a machine without NVIDIA's driver it finds nothing and says so.
"""
import ctypes
from typing import NamedTuple, Optional

from edgecsp._lazy import available
from edgecsp.backends.tensorrt.policy import device_mismatch

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
_DRIVER_NAMES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


class GpuInfo(NamedTuple):
    name: str
    sm: str  # "6.2"


def installed_trt_version():
    # type: () -> Optional[str]
    """``tensorrt.__version__`` (e.g. "8.2.1.8"), or None when TensorRT is not importable."""
    if not available("tensorrt"):
        return None
    import tensorrt

    return str(tensorrt.__version__)


def _driver():
    for name in _DRIVER_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device(index=0):
    # type: (int) -> Optional[GpuInfo]
    """Name and compute capability of CUDA device ``index``, or None without a driver or device."""
    lib = _driver()
    if lib is None or lib.cuInit(0) != 0:
        return None
    device = ctypes.c_int()
    if lib.cuDeviceGet(ctypes.byref(device), int(index)) != 0:
        return None
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, 256, device)
    return GpuInfo(name.value.decode("utf-8", "replace"), "{}.{}".format(major.value, minor.value))


def build_problem(target):
    # type: (...) -> Optional[str]
    """Why this machine cannot build (or run) engines for ``target``; None when it can."""
    trt_version = installed_trt_version()
    if trt_version is None:
        return device_mismatch(target, None, None)
    gpu = cuda_device()
    return device_mismatch(target, trt_version, gpu.sm if gpu else None)
