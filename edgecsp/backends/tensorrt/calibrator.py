"""Device side INT8 calibrators (TensorRT's Python calibrator classes fed through pycuda) and the CUDA context.

TensorRT and pycuda are imported on first use and the calibrator class is made at run time, because its base
class comes from the tensorrt module. The choices (which base class, the cache header) are pure functions.
Python 3.6.
"""
import contextlib

import numpy as np

from edgecsp._files import write_bytes_atomic
from edgecsp._lazy import require
from edgecsp.backends.tensorrt.calib_cache import restamp
from edgecsp.errors import InputError

# cache-header algorithm -> TensorRT calibrator class that reads and writes it
CALIBRATOR_CLASSES = {"EntropyCalibration2": "IInt8EntropyCalibrator2",
                      "EntropyCalibration": "IInt8EntropyCalibrator",
                      "MinMaxCalibration": "IInt8MinMaxCalibrator"}


def calibrator_class_name(algorithm):
    # type: (str) -> str
    """The TensorRT calibrator class for a cache-header algorithm; InputError for the ones edgecsp cannot feed."""
    if algorithm not in CALIBRATOR_CLASSES:
        raise InputError("calibration algorithm {!r} is not one edgecsp feeds (known: {}): recalibrate with "
                         "--calib IMAGES".format(algorithm, ", ".join(sorted(CALIBRATOR_CLASSES))))
    return CALIBRATOR_CLASSES[algorithm]


@contextlib.contextmanager
def cuda_context(device=0):
    """Make CUDA device ``device``'s primary context current (the one TensorRT's runtime API uses)."""
    cuda = require("pycuda.driver", "feeding TensorRT from Python")
    cuda.init()
    context = cuda.Device(int(device)).retain_primary_context()
    context.push()
    try:
        yield cuda
    finally:
        context.pop()


def make_calibrator(trt, cuda, algorithm, batch_size, batches=None, cache_text=None, cache_out=None):
    """A TensorRT calibrator for ``algorithm`` that hands TensorRT ``cache_text`` (re-stamped for the installed
    TensorRT and this calibrator's algorithm) when given, else the float32 NCHW ``batches`` one by one; writes
    the cache TensorRT produces to ``cache_out`` (atomically). Call inside ``cuda_context()``."""
    base = getattr(trt, calibrator_class_name(algorithm))
    cache = restamp(cache_text, trt.__version__, algorithm).encode("ascii") if cache_text else None

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self._batches = iter(batches if batches is not None else ())
            self._device_buffer = None
            self.batches_fed = 0

        def get_batch_size(self):
            return int(batch_size)

        def get_batch(self, names, *args):
            try:
                batch = np.ascontiguousarray(next(self._batches), dtype=np.float32)
            except StopIteration:
                return None
            if self._device_buffer is None:
                self._device_buffer = cuda.mem_alloc(batch.nbytes)
            cuda.memcpy_htod(self._device_buffer, batch)
            self.batches_fed += 1
            return [int(self._device_buffer)]

        def read_calibration_cache(self, *args):
            return cache

        def write_calibration_cache(self, data, *args):
            if cache_out:
                write_bytes_atomic(cache_out, bytes(data))

    return Calibrator()
