"""The options of a TensorRT build, shared by the host half (bundle) and the device half (engine). Python 3.6.

The calibration options (``calib``, ``calib_count``, ``calib_seed``, ``calib_every``) mean what they mean for
every backend (edgecsp.calibration); ``calib_cache`` takes a TensorRT cache file or the
``.calibration.json`` record of an earlier TensorRT bundle.
"""
from typing import NamedTuple, Optional, Tuple

from edgecsp.calibration.config import DEFAULT_CALIB_COUNT, CalibrationConfig
from edgecsp.errors import InputError

CALIB_METHODS = ("entropy", "minmax", "percentile")
DEFAULT_WORKSPACE_MIB = 1024


class TensorRTOptions(NamedTuple):
    """What ``edgecsp build`` passes to the TensorRT backend beyond target, precision and paths."""

    workspace_mib: int = DEFAULT_WORKSPACE_MIB  # builder scratch memory (Jetsons share it with the CPU)
    calib: Optional[str] = None  # calibration source (edgecsp.calibration) for the FP16 check and INT8
    calib_count: int = DEFAULT_CALIB_COUNT  # images drawn from it
    calib_seed: int = 0
    calib_every: Optional[int] = None  # video: every Nth frame
    calib_method: str = "entropy"  # entropy (TensorRT's EntropyCalibration2) | minmax | percentile
    calib_percentile: float = 99.99
    calib_cache: Optional[str] = None  # a TensorRT calibration cache, or the .calibration.json naming one
    allow_slow_int8: bool = False  # build INT8 on targets without fast INT8 (tx2, nano)
    dla_core: Optional[int] = None  # run on this DLA core (with GPU fallback) where the target has DLA
    max_batch: int = 1  # upper bound of the optimization profile for dynamic-batch models
    fp16_check: bool = True  # run the FP16 range check when calibration images are given
    fp32_tensors: Tuple[str, ...] = ()  # tensors to keep in FP32 in addition to the FP16 check's findings
    calibrate_on: str = "host"  # INT8 scales from the host (ONNX Runtime, cache in the bundle) or the device (TRT)
    timing_cache: Optional[str] = None  # device: TensorRT timing cache file (default: next to the engine)
    simplify: bool = True  # host: run onnxsim before the lint


BUILD_OPTIONS = TensorRTOptions._fields


def make_options(**values):
    """A checked TensorRTOptions from keyword values (None: the default); InputError naming bad ones."""
    unknown = sorted(k for k in values if k not in BUILD_OPTIONS)
    if unknown:
        raise InputError("unknown TensorRT build option(s) {}: known options are {}".format(
            ", ".join(unknown), ", ".join(BUILD_OPTIONS)))
    options = TensorRTOptions(**dict((k, v) for k, v in values.items() if v is not None))
    problems = []
    if int(options.workspace_mib) < 16:
        problems.append("--workspace must be at least 16 MiB, got {}".format(options.workspace_mib))
    if options.calib_method not in CALIB_METHODS:
        problems.append("--calib-method must be one of {}, got {!r}".format(", ".join(CALIB_METHODS),
                                                                          options.calib_method))
    if not 50.0 < float(options.calib_percentile) <= 100.0:
        problems.append("the calibration percentile must be in (50, 100], got {}".format(options.calib_percentile))
    if options.calibrate_on not in ("host", "device"):
        problems.append("calibrate_on must be host or device, got {!r}".format(options.calibrate_on))
    if int(options.max_batch) < 1:
        problems.append("--max-batch must be >= 1, got {}".format(options.max_batch))
    if problems:
        raise InputError("; ".join(problems))
    if options.calib:
        calibration_config(options).checked()
    return options._replace(workspace_mib=int(options.workspace_mib), max_batch=int(options.max_batch),
                            fp32_tensors=tuple(options.fp32_tensors))


def calibration_config(options):
    # type: (TensorRTOptions) -> CalibrationConfig
    """The backend-independent calibration request these options make (edgecsp.calibration)."""
    return CalibrationConfig(source=options.calib, count=options.calib_count, seed=options.calib_seed,
                             every=options.calib_every)
