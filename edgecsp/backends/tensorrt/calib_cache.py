"""INT8 calibration computed on the host, written in TensorRT's calibration-cache text format.

Format (what TensorRT's calibrators read and write)::

    TRT-8502-EntropyCalibration2
    images: 3c010204
    /backbone/conv1/Conv_output_0: 3d2f1a5c

The header names NV_TENSORRT_VERSION and the calibrator algorithm; each line is a tensor name and its scale
(``amax / 127``) as the hex of the big-endian IEEE-754 float32. The amax per tensor comes from a histogram of
|x| over the calibration batches: ``entropy`` (the KL-divergence search of TensorRT's EntropyCalibration2, as
NVIDIA's pytorch-quantization implements it), ``minmax`` or ``percentile``.

The format functions are pure (Python 3.6, numpy only) and used on the device to re-stamp a cache for the
installed TensorRT; the histogram collection runs the model with ONNX Runtime on the host.
"""
import struct
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from edgecsp.backends.tensorrt.versions import version_number
from edgecsp.errors import InputError
from edgecsp.validate import ascii_digits

QUANT_MAX = 127.0
HISTOGRAM_BINS = 2048
# method -> the calibrator algorithm the header names (the device reads the cache with that calibrator class)
ALGORITHMS = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "percentile": "MinMaxCalibration"}
KNOWN_ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
MIN_AMAX = 1e-6  # an all-zero tensor still gets a positive scale


# -- the text format ------------------------------------------------------------------------------------------
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


# -- amax from a histogram of |x| -----------------------------------------------------------------------------
def entropy_amax(hist, edges, num_quant_bins=128, start_bin=128, stride=1):
    # type: (np.ndarray, np.ndarray, int, int, int) -> float
    """The threshold minimizing KL(P || Q) between the clipped reference distribution P of the first ``i`` bins
    (outliers folded into the last one) and its ``num_quant_bins``-level quantization Q; returns ``edges[i]``.

    Ties go to the largest threshold, as in pytorch-quantization's ``_compute_amax_entropy``.
    """
    hist = np.asarray(hist, dtype=np.float64)
    nbins = len(hist)
    total = hist.sum()
    if total == 0 or nbins <= start_bin:
        return float(edges[-1])
    best_i, best_kl = nbins, np.inf
    suffix = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # suffix[i] = hist[i:].sum()
    for i in range(start_bin, nbins + 1, stride):
        ref = hist[:i]
        p = ref.copy()
        p[-1] += suffix[i]
        nonzero = ref != 0
        group = (np.arange(i) * num_quant_bins) // i
        sums = np.bincount(group, weights=ref, minlength=num_quant_bins)
        counts = np.bincount(group, weights=nonzero.astype(np.float64), minlength=num_quant_bins)
        q = np.where(nonzero, sums[group] / np.maximum(counts[group], 1.0), 0.0)
        p_sum, q_sum = p.sum(), q.sum()
        if q_sum == 0:
            continue
        p_n, q_n = p / p_sum, q / q_sum
        mask = p_n > 0
        if np.any(q_n[mask] == 0):
            kl = np.inf
        else:
            kl = float(np.sum(p_n[mask] * np.log(p_n[mask] / q_n[mask])))
        if kl <= best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def percentile_amax(hist, edges, percentile=99.99):
    # type: (np.ndarray, np.ndarray, float) -> float
    """The upper edge of the first bin where the cumulative share of |x| reaches ``percentile``."""
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    if total == 0:
        return float(edges[-1])
    cdf = np.cumsum(hist) / total
    index = int(np.searchsorted(cdf, percentile / 100.0))
    return float(edges[min(index + 1, len(edges) - 1)])


def amax_from_histogram(method, hist, edges, percentile=99.99):
    if method == "entropy":
        return entropy_amax(hist, edges)
    if method == "minmax":
        return float(edges[-1])
    if method == "percentile":
        return percentile_amax(hist, edges, percentile)
    raise InputError("unknown calibration method {!r}: entropy, minmax or percentile".format(method))


# -- histograms over the model's activations (host: ONNX Runtime) --------------------------------------------
def activation_histograms(model, batches_fn, bins=HISTOGRAM_BINS):
    # type: (object, Callable[[], Iterable[np.ndarray]], int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]
    """``{tensor: (hist, edges)}`` of |x| for the model input and every float32 node output.

    Two passes over ``batches_fn()`` (a fresh iterator each call): the first finds each tensor's max |x|, the
    second fills ``bins`` equal bins over [0, max] — so every histogram covers its tensor's whole range.
    """
    from edgecsp.backends.tensorrt.fp16_check import exposing_session, float_tensors

    input_name = model.graph.input[0].name
    names = [input_name] + [t[0] for t in float_tensors(model) if t[0] != input_name]
    session = exposing_session(model, names[1:])
    outputs = names[1:]

    def run(batch):
        return [batch] + session.run(outputs, {session.get_inputs()[0].name: batch})

    peaks = dict((n, 0.0) for n in names)
    for batch in batches_fn():
        for name, value in zip(names, run(batch)):
            if value.size:
                peaks[name] = max(peaks[name], float(np.max(np.abs(value))))
    hists = dict((n, np.zeros(bins, dtype=np.int64)) for n in names)
    edges = dict((n, np.linspace(0.0, peaks[n] or MIN_AMAX, bins + 1)) for n in names)
    for batch in batches_fn():
        for name, value in zip(names, run(batch)):
            counts, _ = np.histogram(np.abs(value), bins=edges[name])
            hists[name] += counts
    return dict((n, (hists[n], edges[n])) for n in names)


def compute_amaxes(histograms, method="entropy", percentile=99.99):
    # type: (Dict[str, Tuple[np.ndarray, np.ndarray]], str, float) -> Dict[str, float]
    """``{tensor: amax}`` for every histogram, in the histograms' order."""
    return dict((name, amax_from_histogram(method, hist, edges, percentile))
                for name, (hist, edges) in histograms.items())


def calibration_cache(model, batches_fn, trt_version, method="entropy", percentile=99.99):
    # type: (...) -> Tuple[str, Dict[str, float]]
    """``(cache text, {tensor: amax})`` for ``model`` calibrated on ``batches_fn()`` with ``method``."""
    amaxes = compute_amaxes(activation_histograms(model, batches_fn), method, percentile)
    return format_cache(amaxes, trt_version, ALGORITHMS[method]), amaxes


def tensors_in_cache(text):
    # type: (str) -> List[str]
    return list(parse_cache(text)[2])
