"""INT8 calibration computed on the host: a TensorRT calibration cache from activation histograms.

The amax per tensor comes from a histogram of |x| over the calibration batches, the model run with ONNX Runtime:
``entropy`` (the KL-divergence search of TensorRT's EntropyCalibration2, as NVIDIA's pytorch-quantization
implements it), ``minmax`` or ``percentile``; the cache is written in TensorRT's text format
(``edgecsp.backends.tensorrt.cache_format``). Host only.
"""
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from edgecsp.backends.tensorrt.cache_format import ALGORITHMS, MIN_AMAX, QUANT_MAX, format_cache
from edgecsp.errors import InputError

HISTOGRAM_BINS = 2048


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
    from edgecsp.backends.tensorrt.host.fp16_check import exposing_session, float_tensors

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
