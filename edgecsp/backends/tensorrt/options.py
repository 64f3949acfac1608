"""The options of a TensorRT build, shared by the host half (bundle) and the device half (engine). Python 3.6.

The calibration options (``calib``, ``calib_count``, ``calib_seed``, ``calib_every``) mean what they mean for
every backend (edgecsp.calibration); ``calib_cache`` takes a TensorRT cache file or the
``.calibration.json`` record of an earlier TensorRT bundle.
"""
from typing import NamedTuple, Optional, Tuple

from edgecsp.calibration.config import DEFAULT_CALIB_COUNT, CalibrationConfig
from edgecsp.errors import InputError
from edgecsp.validate import choice, number_in, positive_int

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
    input_form: Optional[str] = None  # --input uint8 (TensorRT 8.5+ targets, opt-in) | float (default)


BUILD_OPTIONS = TensorRTOptions._fields


def make_options(**values):
    """A checked TensorRTOptions from keyword values (None: the default); InputError naming bad ones."""
    unknown = sorted(k for k in values if k not in BUILD_OPTIONS)
    if unknown:
        raise InputError("unknown TensorRT build option(s) {}: known options are {}".format(
            ", ".join(unknown), ", ".join(BUILD_OPTIONS)))
    options = TensorRTOptions(**dict((k, v) for k, v in values.items() if v is not None))
    workspace = number_in(options.workspace_mib, "--workspace (MiB)", 16)
    choice(options.calib_method, "--calib-method", CALIB_METHODS)
    number_in(options.calib_percentile, "the calibration percentile", 50.0, 100.0, low_open=True)
    choice(options.calibrate_on, "calibrate_on", ("host", "device"))
    max_batch = positive_int(options.max_batch, "--max-batch")
    if options.calib:
        calibration_config(options).checked()
    return options._replace(workspace_mib=int(workspace), max_batch=max_batch,
                            fp32_tensors=tuple(options.fp32_tensors))


def calibration_config(options):
    # type: (TensorRTOptions) -> CalibrationConfig
    """The backend-independent calibration request these options make (edgecsp.calibration)."""
    return CalibrationConfig(source=options.calib, count=options.calib_count, seed=options.calib_seed,
                             every=options.calib_every)
