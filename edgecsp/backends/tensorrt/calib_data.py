"""Calibration batches for TensorRT: the backend-independent ``edgecsp.calibration.CalibrationSet``.

The same set (sampled with the same seed, preprocessed by the runtime's one ``preprocess``) feeds the host's
FP16 range check and calibration cache and the device's TensorRT calibrator. Python 3.6; numpy and OpenCV.
"""
from edgecsp.backends.tensorrt.options import calibration_config
from edgecsp.calibration.dataset import CalibrationSet


def calibration_set(options, meta, batch_size=1):
    """The CalibrationSet of ``options`` (TensorRTOptions with ``calib``) for a model described by ``meta``;
    iterate it (several times if needed) for float32 NCHW batches of ``batch_size`` images."""
    # undecodable images left out now, before the build: the calibrator's sample names stay aligned with its batches
    return CalibrationSet(calibration_config(options), meta, batch_size).drop_unreadable()


def batch_size_of(input_shape):
    """The batch a static-batch input takes (1 for a dynamic batch dimension)."""
    first = input_shape[0] if input_shape else None
    return int(first) if isinstance(first, int) and first > 0 else 1
