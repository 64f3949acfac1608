"""CPU artefacts take the letterboxed uint8 HWC BGR frame (the graph swaps, scales and transposes): the same
outputs as the float path, the form in the metadata, one-line errors for the wrong form, old artefacts intact."""
import json

import numpy as np
import pytest

from edgecsp.backends import open_runner, read_artefact_meta
from edgecsp.build import BuildConfig, build
from edgecsp.cli import main
from edgecsp.errors import InputError
from edgecsp.runtime.meta import ModelMeta
from edgecsp.runtime.pipeline import DetectOptions, detect
from edgecsp.runtime.preprocess import preprocess
from tests.gates import host_targets, needs

pytestmark = [pytest.mark.onnx, pytest.mark.opencv]


def _frames(video, count=4):
    import cv2

    capture = cv2.VideoCapture(video)
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    return frames


@pytest.mark.parametrize("target", [t.name for t in host_targets()])
def test_uint8_and_float_builds_give_the_same_outputs(target, demo_onnx, demo_video, tmp_path):
    from edgecsp.targets import get_target

    needs(get_target(target).backend)
    suffix = get_target(target).suffix
    uint8 = build(BuildConfig(demo_onnx, target=target, output=str(tmp_path / ("u" + suffix))))  # the default
    floats = build(BuildConfig(demo_onnx, target=target, output=str(tmp_path / ("f" + suffix)),
                               options={"input_form": "float"}))
    assert read_artefact_meta(uint8).input_form == "uint8_nhwc_bgr"
    assert read_artefact_meta(floats).input_form == "float_nchw"
    frames = _frames(demo_video[0])
    with open_runner(uint8) as a, open_runner(floats) as b:
        assert a.input_shape[1:] == (256, 256, 3) and b.input_shape[1:] == (3, 256, 256)
        worst, scale = 0.0, 1.0
        for frame in frames:
            xa, xb = preprocess([frame], a.meta)[0], preprocess([frame], b.meta)[0]
            assert xa.dtype == np.uint8 and xb.dtype == np.float32
            for oa, ob in zip(a.infer(xa), b.infer(xb)):
                worst = max(worst, float(np.max(np.abs(oa - ob))))
                scale = max(scale, float(np.max(np.abs(ob))))
        # ONNX Runtime: 0 exactly; OpenVINO folds the scaling into the first convolution, so float32 rounding
        # moves by ~1e-6 of the outputs' magnitude (measured: 1.2e-5 on head logits up to 18)
        assert worst <= 1e-5 * scale, (worst, scale)
        print("{}: max |uint8 - float| {:.3g} on outputs up to {:.3g}".format(target, worst, scale))
        options = DetectOptions(conf=0.25, iou=0.45)
        for frame in frames:  # a static batch of 1: one frame per request
            (da,), (db,) = detect(a, [frame], options), detect(b, [frame], options)
            np.testing.assert_array_equal(da.class_ids, db.class_ids)
            np.testing.assert_allclose(da.boxes, db.boxes, atol=1e-3)
        # the wrong form: one line that names the artefact's form
        with pytest.raises(InputError, match=r"takes the letterboxed uint8 NHWC BGR frames \(input form "
                                             r"uint8_nhwc_bgr\), got float32"):
            a.infer(np.zeros((1, 3, 256, 256), np.float32))
        with pytest.raises(InputError, match=r"takes float32 NCHW input shaped .* \(input form float_nchw\), got "
                                             r"uint8"):
            b.infer(np.zeros((1, 256, 256, 3), np.uint8))


@pytest.mark.onnxruntime
def test_compare_feeds_each_form_its_own_input(demo_onnx, tmp_path):
    from edgecsp.evaluation.compare import compare_artefacts

    uint8 = build(BuildConfig(demo_onnx, target="cpu-ort", output=str(tmp_path / "u.onnx")))
    result = compare_artefacts(uint8, demo_onnx, "shapes:0", count=3, atol=0, rtol=0)
    assert result.passed and max(o.max_abs for o in result.outputs) == 0.0


@pytest.mark.onnxruntime
def test_the_onnx_prefix_is_a_valid_graph_and_old_metadata_means_float(demo_onnx, tmp_path):
    import onnx

    out = build(BuildConfig(demo_onnx, target="cpu-ort", output=str(tmp_path / "u.onnx")))
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node[:4]] == ["Cast", "Gather", "Transpose", "Div"]  # pixel / 255
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    old = read_artefact_meta(demo_onnx).to_dict()
    old.pop("input_form")  # an artefact written before input forms existed
    assert ModelMeta.from_dict(json.loads(json.dumps(old))).input_form == "float_nchw"


def test_the_cli_option_and_targets_without_it(demo_onnx, tmp_path, capsys):
    needs("onnxruntime")
    assert main(["build", "--target", "cpu-ort", demo_onnx, "--input", "float", "-o", str(tmp_path / "f.onnx")]) == 0
    assert read_artefact_meta(str(tmp_path / "f.onnx")).input_form == "float_nchw"
    capsys.readouterr()
    # TensorRT: an opt-in where TensorRT has uint8 inputs (tests/backends/tensorrt/test_trt_bundle.py), refused on tx2
    assert main(["build", "--target", "tx2", demo_onnx, "--input", "uint8", "-o", str(tmp_path / "b")]) == 7
    err = capsys.readouterr().err
    assert "needs TensorRT 8.5 or newer" in err and not (tmp_path / "b").exists()
