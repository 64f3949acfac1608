"""TensorRT's calibration-cache text format: read, written and re-stamped on the host and on the device.

Format (what TensorRT's calibrators read and write)::

    TRT-8502-EntropyCalibration2
    images: 3c010204
    /backbone/conv1/Conv_output_0: 3d2f1a5c

The header names NV_TENSORRT_VERSION and the calibrator algorithm; each line is a tensor name and its scale
(``amax / 127``) as the hex of the big-endian IEEE-754 float32. Pure functions (Python 3.6, numpy only); the
host's histogram calibration (``host/calib_cache.py``) writes caches with them, the device re-stamps them for
its TensorRT.
"""
import struct
from typing import Dict, List, Optional, Tuple

import numpy as np

from edgecsp.backends.tensorrt.versions import version_number
from edgecsp.errors import InputError
from edgecsp.validate import ascii_digits

QUANT_MAX = 127.0
# method -> the calibrator algorithm the header names (the device reads the cache with that calibrator class)
ALGORITHMS = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "percentile": "MinMaxCalibration"}
KNOWN_ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
MIN_AMAX = 1e-6  # an all-zero tensor still gets a positive scale


def scale_to_hex(scale):
    # type: (float) -> str
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text):
    # type: (str) -> float
    return struct.unpack(">f", bytes.fromhex(text.strip().rjust(8, "0")))[0]


def cache_header(trt_version, algorithm="EntropyCalibration2"):
    # type: (str, str) -> str
    return "TRT-{}-{}".format(version_number(trt_version), algorithm)


def format_cache(amaxes, trt_version, algorithm="EntropyCalibration2"):
    # type: (Dict[str, float], str, str) -> str
    """The cache text for ``{tensor: amax}`` (scale = amax / 127), tensors in the given order."""
    lines = [cache_header(trt_version, algorithm)]
    for name, amax in amaxes.items():
        lines.append("{}: {}".format(name, scale_to_hex(np.float32(max(float(amax), MIN_AMAX) / QUANT_MAX))))
    return "\n".join(lines) + "\n"


def parse_cache(text):
    # type: (str) -> Tuple[int, str, Dict[str, float]]
    """``(version number, algorithm, {tensor: scale})`` from cache text; InputError when it is not a cache.

    Names may contain ':' (PyTorch writes ``onnx::Conv_12``): the scale is what follows the last one.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    parts = lines[0].strip().split("-", 2) if lines else []
    if len(parts) != 3 or parts[0] != "TRT" or not ascii_digits(parts[1]):
        raise InputError("not a TensorRT calibration cache: the first line must look like "
                         "TRT-8201-EntropyCalibration2, got {!r}".format(lines[0] if lines else ""))
    scales = {}
    for number, line in enumerate(lines[1:], 2):
        name, sep, value = line.rpartition(":")
        try:
            scales[name.strip()] = hex_to_scale(value)
        except (ValueError, struct.error):
            sep = ""
        if not sep or not name.strip():
            raise InputError("calibration cache line {} is not 'tensor: hexscale': {!r}".format(number, line))
    return int(parts[1]), parts[2], scales


def restamp(text, trt_version, algorithm=None):
    # type: (str, str, Optional[str]) -> str
    """``text`` with its header naming ``trt_version`` (and ``algorithm`` when given): the scales depend on
    neither, but TensorRT rejects a cache whose header names another version or another calibrator class than
    the one reading it (the device re-stamps a host cache before handing it over)."""
    _, found, _ = parse_cache(text)
    algorithm = algorithm or found
    body = text.split("\n", 1)[1] if "\n" in text else ""
    return cache_header(trt_version, algorithm) + "\n" + body



def tensors_in_cache(text):
    # type: (str) -> List[str]
    return list(parse_cache(text)[2])
