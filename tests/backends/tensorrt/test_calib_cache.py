"""TensorRT calibration-cache format and the histogram calibration behind it."""
import struct

import numpy as np
import pytest

from edgecsp.backends.tensorrt.cache_format import (cache_header, format_cache, hex_to_scale, parse_cache, restamp,
                                                   scale_to_hex)
from edgecsp.backends.tensorrt.host.calib_cache import (activation_histograms, calibration_cache, compute_amaxes,
                                                        entropy_amax, percentile_amax)
from edgecsp.errors import InputError

from tests.backends.tensorrt import trt_models


def test_scales_are_big_endian_float32_hex():
    assert scale_to_hex(1.0) == "3f800000" and scale_to_hex(2.0) == "40000000"
    assert hex_to_scale("3c008912") == struct.unpack(">f", bytes.fromhex("3c008912"))[0]
    assert hex_to_scale("800000") == struct.unpack(">f", bytes.fromhex("00800000"))[0]  # TensorRT drops zeros


def test_cache_text_round_trips():
    amaxes = {"images": 1.0, "onnx::Conv_7": 3.5, "/head/Conv_output_0": 0.25}
    text = format_cache(amaxes, "8.2.1.8")
    lines = text.splitlines()
    assert lines[0] == "TRT-8201-EntropyCalibration2" and lines[1] == "images: " + scale_to_hex(np.float32(1 / 127.0))
    version, algorithm, scales = parse_cache(text)
    assert (version, algorithm, list(scales)) == (8201, "EntropyCalibration2", list(amaxes))
    for name, amax in amaxes.items():
        assert scales[name] == np.float32(np.float32(amax / 127.0))
    assert cache_header("10.0.1", "MinMaxCalibration") == "TRT-100001-MinMaxCalibration"


def test_restamp_changes_only_the_header():
    text = format_cache({"x": 2.0}, "8.2.1")
    again = restamp(text, "8.5.2.2")
    assert again.splitlines()[0] == "TRT-8502-EntropyCalibration2" and again.splitlines()[1:] == text.splitlines()[1:]
    assert restamp(text, "10.3.0", "MinMaxCalibration").splitlines()[0] == "TRT-100300-MinMaxCalibration"


@pytest.mark.parametrize("text, message", [("", "first line must look like TRT-8201"),
                                           ("TRT-x-Entropy\n", "first line"),
                                           ("TRT-8201-EntropyCalibration2\nno colon here\n", "line 2 is not"),
                                           ("TRT-8201-EntropyCalibration2\nx: zz\n", "line 2 is not")])
def test_malformed_caches_are_refused(text, message):
    with pytest.raises(InputError, match=message):
        parse_cache(text)


def _reference_entropy(hist, edges, num_quant_bins, start_bin):
    """pytorch-quantization's _compute_amax_entropy, loop for loop (np.digitize, Counter), as the reference."""
    from collections import Counter

    bins = np.asarray(hist, dtype=np.float64)
    divergences, arguments = [], []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=num_quant_bins + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        counts = np.zeros(num_quant_bins)
        for idx, d in enumerate(digitized):
            if d != -1:
                counts[d] += bins[idx]
        for key, val in Counter(digitized).items():
            if key != -1:
                counts[key] /= val
        q = np.array([counts[d] if d != -1 else 0.0 for d in digitized])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        kl = np.inf if np.any(q[mask] == 0) else float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        divergences.append(kl)
        arguments.append(i)
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return float(edges[arguments[last_argmin]])


def test_entropy_matches_the_reference_and_clips_the_tail():
    rng = np.random.RandomState(0)
    values = np.abs(rng.laplace(size=50000))  # a long tail to clip
    hist, edges = np.histogram(values, bins=384, range=(0, values.max()))
    amax = entropy_amax(hist, edges, num_quant_bins=64, start_bin=64)
    assert amax == _reference_entropy(hist, edges, 64, 64)
    assert np.percentile(values, 99) < amax < values.max()  # clips the tail, keeps the bulk
    assert percentile_amax(hist, edges, 100.0) == edges[-1]
    uniform, uedges = np.histogram(rng.rand(100000), bins=1000, range=(0, 1))
    assert abs(percentile_amax(uniform, uedges, 99.0) - 0.99) < 0.005


@pytest.mark.onnx
@pytest.mark.onnxruntime
def test_cache_scales_match_the_histograms_of_the_model():
    rng = np.random.RandomState(1)
    batches = [rng.rand(1, 3, 32, 32).astype(np.float32) for _ in range(3)]
    model = trt_models.clean_model()
    histograms = activation_histograms(model, lambda: iter(batches))
    assert list(histograms) == ["images", "pool", "p8"]
    hist, edges = histograms["images"]
    assert hist.sum() == 3 * 3 * 32 * 32 and edges[-1] == max(float(b.max()) for b in batches)
    for method in ("entropy", "minmax", "percentile"):
        text, amaxes = calibration_cache(model, lambda: iter(batches), "8.5.2", method)
        assert amaxes == compute_amaxes(histograms, method)
        version, algorithm, scales = parse_cache(text)
        assert version == 8502 and algorithm == ("EntropyCalibration2" if method == "entropy" else "MinMaxCalibration")
        assert scales == dict((n, float(np.float32(a / 127.0))) for n, a in amaxes.items())
    minmax = compute_amaxes(histograms, "minmax")
    assert minmax["pool"] == max(float(np.abs(b.reshape(1, 3, 4, 8, 4, 8).max(axis=(3, 5))).max()) for b in batches)
