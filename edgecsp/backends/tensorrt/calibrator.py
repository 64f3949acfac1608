"""Device side INT8 calibrators (TensorRT's Python calibrator classes fed through pycuda) and the CUDA context.

TensorRT and pycuda are imported on first use and the calibrator class is made at run time, because its base
class comes from the tensorrt module. The choices (which base class, the cache header) are pure functions.
Python 3.6.
"""
import contextlib

import numpy as np

from edgecsp._files import write_bytes_atomic
from edgecsp._lazy import require
from edgecsp.backends.tensorrt.cache_format import restamp
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
    """Make CUDA device ``device``'s primary context current (the one TensorRT's runtime API uses); released
    (``detach``) after the last ``pop``, so the device's primary context is not leaked."""
    cuda = require("pycuda.driver", "feeding TensorRT from Python")
    cuda.init()
    context = cuda.Device(int(device)).retain_primary_context()
    context.push()
    try:
        yield cuda
    finally:
        context.pop()
        context.detach()


class CalibrationFailure(object):
    """An exception raised inside a TensorRT calibrator callback, kept until the build returns.

    TensorRT 8.2's ``getBatch`` trampoline (pyInt8.cpp) is noexcept without a try/catch, so an exception escaping
    a callback calls std::terminate; 8.4+ prints it and ends the calibration early, silently. The callbacks catch
    everything, return "no more data", and the build re-raises it with the image that failed.
    """

    def __init__(self, where, batch_index, names, error):
        self.where, self.batch_index, self.names, self.error = where, batch_index, names, error

    def message(self):
        # type: () -> str
        images = " ({})".format(", ".join(self.names[:3])) if self.names else ""
        return "INT8 calibration failed in {} at batch {}{}: {}: {}".format(
            self.where, self.batch_index, images, type(self.error).__name__, self.error)

    def raise_it(self):
        if isinstance(self.error, (KeyboardInterrupt, SystemExit)):
            raise self.error
        if isinstance(self.error, InputError):
            raise InputError(self.message())
        raise RuntimeError(self.message())


def batch_names(sample_names, batch_index, batch_size):
    """The sample names of batch ``batch_index`` (empty when unknown)."""
    if not sample_names:
        return []
    return list(sample_names[batch_index * batch_size:(batch_index + 1) * batch_size])


def make_calibrator(trt, cuda, algorithm, batch_size, batches=None, cache_text=None, cache_out=None,
                    sample_names=None):
    """A TensorRT calibrator for ``algorithm`` that hands TensorRT ``cache_text`` (re-stamped for the installed
    TensorRT and this calibrator's algorithm) when given, else the float32 NCHW ``batches`` one by one; writes
    the cache TensorRT produces to ``cache_out`` (atomically). Call inside ``cuda_context()``.

    No exception leaves a callback (see CalibrationFailure): the first one is kept in ``failure`` and
    ``raise_failure()`` raises it after the build, naming the batch and its images (``sample_names``).
    """
    base = getattr(trt, calibrator_class_name(algorithm))
    cache = restamp(cache_text, trt.__version__, algorithm).encode("ascii") if cache_text else None

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self._batches = iter(batches if batches is not None else ())
            self._device_buffer = None
            self.batches_fed = 0
            self.failure = None

        def _fail(self, where, error):
            if self.failure is None:
                self.failure = CalibrationFailure(where, self.batches_fed,
                                                  batch_names(sample_names, self.batches_fed, batch_size), error)

        def raise_failure(self):
            if self.failure is not None:
                self.failure.raise_it()

        def get_batch_size(self):
            return int(batch_size)

        def get_batch(self, names, *args):
            if self.failure is not None:
                return None
            try:
                try:
                    batch = next(self._batches)
                except StopIteration:
                    return None
                batch = np.ascontiguousarray(batch, dtype=np.float32)
                if batch.shape[0] != int(batch_size):
                    raise ValueError("a calibration batch of {} images for a calibrator of batch {}".format(
                        batch.shape[0], batch_size))
                if self._device_buffer is None:
                    self._device_buffer = cuda.mem_alloc(batch.nbytes)
                cuda.memcpy_htod(self._device_buffer, batch)
                self.batches_fed += 1
                return [int(self._device_buffer)]
            except BaseException as error:  # noqa: B902 -- nothing may cross TensorRT 8.2's noexcept trampoline
                self._fail("get_batch", error)
                return None

        def read_calibration_cache(self, *args):
            return cache

        def write_calibration_cache(self, data, *args):
            try:
                if cache_out:
                    write_bytes_atomic(cache_out, bytes(data))
            except BaseException as error:  # noqa: B902 -- as in get_batch
                self._fail("write_calibration_cache", error)

    return Calibrator()
