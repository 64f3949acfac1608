"""INT8 builds for cpu (OpenVINO + NNCF) and cpu-ort (ONNX Runtime QDQ): metadata, provenance, bad input."""
import os

import numpy as np
import pytest

from tests.gates import needs

from edgecsp._files import file_sha256
from edgecsp.backends import open_runner, read_artefact_meta
from edgecsp.build import BuildConfig, build
from edgecsp.calibration import provenance_path, read_record
from edgecsp.cli import main
from edgecsp.errors import InputError, UnsupportedError, VerificationError

def needs_nncf(test):
    return pytest.mark.nncf(pytest.mark.openvino(test))
CALIB = {"calib": "shapes:0", "calib_count": 4}


def _written(folder, prefix):
    return sorted(n for n in os.listdir(str(folder)) if n.startswith(prefix))


@pytest.mark.openvino
@needs_nncf
def test_openvino_int8_carries_metadata_and_provenance(tiny_detector_onnx, tmp_path):
    out = build(BuildConfig(tiny_detector_onnx, target="cpu", precision="int8", output=str(tmp_path / "m.xml"),
                            options=CALIB))
    assert _written(tmp_path, "m.") == ["m.bin", "m.calibration.json", "m.xml"]
    meta = read_artefact_meta(out)
    assert meta.extra["precision"] == "int8" and meta.extra["target"] == "cpu"
    calibration = meta.extra["calibration"]
    assert calibration["samples"] == 4 and calibration["provenance"] == "m.calibration.json"
    record = read_record(provenance_path(out))
    assert record["model"]["sha256"] == file_sha256(tiny_detector_onnx)
    assert record["data"]["fingerprint"] == calibration["fingerprint"] and record["samples"] == 4
    assert record["algorithm"]["method"] == "nncf.quantize/PERFORMANCE" and record["algorithm"]["fake_quantize_ops"] > 0
    assert record["algorithm"]["slices_as_strided_slice"] == 3  # the three CSP channel splits
    # the head convolutions and what follows them up to the outputs (their bias Adds, named like the outputs)
    assert set(record["algorithm"]["kept_float"]) == {"/predict.0/Conv/WithoutBiases", "/predict.1/Conv/WithoutBiases",
                                                      "head16", "head32"}
    assert "nncf" in record["tools"] and "openvino" in record["tools"]
    assert record["preprocessing"]["input_size"] == [128, 128]
    assert meta.input_form == "uint8_nhwc_bgr"  # quantized on the float network, then given the uint8 input
    from edgecsp.backends.openvino.runner import executed_precisions

    convolutions = executed_precisions(out)["Convolution"]  # what the CPU plugin really runs
    floats = sum(v for k, v in convolutions.items() if k in ("f32", "bf16", "f16"))  # bf16 on AMX CPUs
    assert floats == 2 and sum(v for k, v in convolutions.items() if k in ("u8", "i8")) > 2  # the 2 heads float
    # the CSP splits are quantized once, before the split, and nothing requantizes after it (the graph NNCF wrote,
    # the same on every CPU); the plugin then runs them in int8 (seen on AVX-512 and AMX Xeons)
    import openvino as ov

    graph = ov.Core().read_model(out)  # keep it alive while its ops are inspected
    splits = [op for op in graph.get_ops() if op.get_type_name() == "StridedSlice"]
    assert len(splits) == 3
    for op in splits:
        assert op.input_value(0).get_node().get_type_name() == "FakeQuantize"
        assert [t.get_node().get_type_name() for t in op.output(0).get_target_inputs()] == ["Convolution"]
    if "avx512" in open("/proc/cpuinfo").read():
        assert set(executed_precisions(out)["StridedSlice"]) <= {"u8", "i8"}
    with open_runner(out) as runner:
        outputs = runner.infer(np.full((1, 128, 128, 3), 128, np.uint8))
    assert all(np.isfinite(o).all() for o in outputs)
    # an FP32 rebuild to the same path drops the INT8 record: it would describe another artefact
    build(BuildConfig(tiny_detector_onnx, target="cpu", precision="fp32", output=out))
    assert _written(tmp_path, "m.") == ["m.bin", "m.xml"]


@pytest.mark.openvino
def test_slices_become_identical_strided_slices(tiny_detector_onnx):
    """The rewrite NNCF needs to quantize through the CSP splits changes no output bit."""
    import openvino as ov

    from edgecsp.backends.openvino.quantize import strided_slices

    core = ov.Core()
    model = core.read_model(tiny_detector_onnx)
    rewritten = core.read_model(tiny_detector_onnx)
    assert strided_slices(rewritten) == 3
    kinds = [op.get_type_name() for op in rewritten.get_ops()]
    assert "Slice" not in kinds and kinds.count("StridedSlice") == 3
    batch = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    before = core.compile_model(model, "CPU", config)(batch)
    after = core.compile_model(rewritten, "CPU", config)(batch)
    for port in range(len(model.outputs)):
        assert np.array_equal(before[port], after[port])


@pytest.mark.openvino
@needs_nncf
def test_mixed_preset_on_request(tiny_detector_onnx, tmp_path):
    out = build(BuildConfig(tiny_detector_onnx, target="cpu", precision="int8", output=str(tmp_path / "mx.xml"),
                            options=dict(CALIB, int8_preset="mixed")))
    algorithm = read_record(provenance_path(out))["algorithm"]
    assert algorithm["method"] == "nncf.quantize/MIXED" and algorithm["preset"] == "MIXED"


@pytest.mark.onnxruntime
def test_onnxruntime_int8_is_qdq_and_runs(tiny_detector_onnx, tmp_path):
    import onnx

    out = build(BuildConfig(tiny_detector_onnx, target="cpu-ort", precision="int8", output=str(tmp_path / "q.onnx"),
                            options=CALIB))
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("Conv") >= 2
    meta = read_artefact_meta(out)
    assert meta.extra["precision"] == "int8" and meta.extra["calibration"]["samples"] == 4
    assert read_record(provenance_path(out))["algorithm"]["method"].startswith("onnxruntime.quantize_static/QDQ")
    assert meta.input_form == "uint8_nhwc_bgr" and ops[0] == "Cast"  # the uint8 prefix in front of the QDQ graph
    with open_runner(out) as runner:
        assert all(np.isfinite(o).all() for o in runner.infer(np.full((1, 128, 128, 3), 128, np.uint8)))


@pytest.mark.parametrize("target", ["cpu", "cpu-ort"])
def test_bad_int8_requests_write_nothing(tiny_detector_onnx, tmp_path, target):
    needs("openvino" if target == "cpu" else "onnxruntime")
    suffix = ".xml" if target == "cpu" else ".onnx"
    out = str(tmp_path / ("bad" + suffix))
    cases = [
        ({}, "int8", InputError, "INT8 needs calibration data: pass --calib"),
        (CALIB, "fp32", InputError, "apply to --precision int8, not fp32"),
        ({"calib": "shapes:0", "calib_count": 0}, "int8", InputError, "--count must be a positive integer"),
        ({"calib": str(tmp_path / "nowhere")}, "int8", InputError, "calibration source .*nowhere does not exist"),
    ]
    if target == "cpu":
        cases.append(({"calib": "shapes:0", "calib_cache": "x.calibration.json"}, "int8", UnsupportedError,
                      "calibrates on every build"))
        cases.append(({"int8_preset": "mixed"}, "fp32", InputError, "--int8-preset apply to --precision int8"))
        cases.append((dict(CALIB, int8_preset="fast"), "int8", InputError,
                      "--int8-preset must be one of mixed, performance, got 'fast'"))
    else:
        cases.append(({"calib": "shapes:0", "max_drop": 1.0}, "int8", InputError, "takes no option max_drop"))
    for options, precision, error, message in cases:
        with pytest.raises(error, match=message):
            build(BuildConfig(tiny_detector_onnx, target=target, precision=precision, output=out, options=options))
        assert _written(tmp_path, "bad") == []


@pytest.mark.openvino
@needs_nncf
def test_max_drop_failure_says_what_was_reached(tiny_detector_onnx, shapes_val, tmp_path, monkeypatch):
    import edgecsp.backends.openvino.quantize as quantize

    figures = {"fp32": 0.90, "int8": 0.87}
    monkeypatch.setattr(quantize, "measure", lambda ov, model, meta, precision, validation: figures[precision])
    monkeypatch.setattr(quantize, "_controlled", lambda nncf, model, *args: model)  # NNCF's search is not the point
    out = str(tmp_path / "strict.xml")
    with pytest.raises(VerificationError, match=r"INT8 map50 is 87.00 vs FP32 90.00 on 10 images of annotations.json: "
                                                r"a drop of 3.00 points, above --max-drop 0.5; nothing was written"):
        build(BuildConfig(tiny_detector_onnx, target="cpu", precision="int8", output=out,
                          options=dict(CALIB, max_drop=0.5, val_data=shapes_val)))
    assert _written(tmp_path, "strict") == []


@pytest.mark.openvino
@needs_nncf
def test_max_drop_runs_accuracy_control_and_records_the_drop(tiny_detector_onnx, shapes_val, tmp_path):
    out = build(BuildConfig(tiny_detector_onnx, target="cpu", precision="int8", output=str(tmp_path / "ac.xml"),
                            options=dict(CALIB, max_drop=100.0, val_data=shapes_val)))
    record = read_record(provenance_path(out))
    assert record["algorithm"]["method"] == "nncf.quantize_with_accuracy_control/PERFORMANCE"
    assert record["algorithm"]["max_drop"] == 100.0
    accuracy = record["accuracy"]
    assert accuracy["validation_images"] == 10 and accuracy["metric"] == "map50"
    assert accuracy["drop_points"] == pytest.approx(100.0 * (accuracy["fp32"] - accuracy["int8"]))
    assert read_artefact_meta(out).extra["calibration"]["accuracy"] == accuracy


@pytest.mark.openvino
@needs_nncf
def test_cli_int8_build_and_its_errors(tiny_detector_onnx, tmp_path, capsys):
    out = str(tmp_path / "cli.xml")
    assert main(["build", "--target", "cpu", "-p", "int8", tiny_detector_onnx, "-o", out, "--calib", "shapes:3",
                 "--count", "3", "--seed", "1"]) == 0
    assert read_record(provenance_path(out))["data"]["source"] == "shapes:3"
    capsys.readouterr()
    folder = tmp_path / "two"
    folder.mkdir()
    import cv2

    for i in range(2):
        cv2.imwrite(str(folder / "{}.png".format(i)), np.zeros((8, 8, 3), np.uint8))
    code = main(["build", "--target", "cpu", "-p", "int8", tiny_detector_onnx, "-o", str(tmp_path / "few.xml"),
                 "--calib", str(folder), "--count", "5"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 3 and len(err) == 1 and "has 2 images, fewer than --count 5" in err[0]
    assert _written(tmp_path, "few") == []


@pytest.mark.openvino
@needs_nncf
def test_demo_model_int8_keeps_its_accuracy(demo_onnx, demo_ir, tmp_path):
    """The shipped demo model: INT8 (64 calibration images) within 1 mAP@0.5 point of FP32 on 40 held-out images."""
    from edgecsp.data.shapes import generate_dataset
    from edgecsp.evaluation import EvalConfig, evaluate

    int8 = build(BuildConfig(demo_onnx, target="cpu", precision="int8", output=str(tmp_path / "demo-int8.xml"),
                             options={"calib": "shapes:0", "calib_count": 64}))
    data = generate_dataset(str(tmp_path / "val"), 40, seed=1000)
    report = evaluate(EvalConfig(engine=int8, baseline=demo_ir, data=data, coco=False, progress=False))
    assert report["baseline"]["map50"] > 0.85  # the trained model, not random weights
    assert report["drop"]["map50"] < 1.0, report["drop"]


@pytest.mark.openvino
@needs_nncf
def test_max_drop_names_the_layers_back_in_float_and_the_drop(demo_onnx, shapes_val, tmp_path, capsys):
    """Two calibration images leave the demo model below FP32 on the validation set; --max-drop 0 makes NNCF send
    layers back to float. The build says which and the drop it reached, and those layers are float in the IR."""
    import openvino as ov

    from edgecsp.backends.openvino.quantize import decode_tail, float_weighted_layers

    out = str(tmp_path / "ac.xml")
    capsys.readouterr()
    assert main(["build", "--target", "cpu", "-p", "int8", demo_onnx, "-o", out, "--calib", "shapes:5",
                 "--count", "2", "--max-drop", "0", "--data", shapes_val]) == 0
    lines = capsys.readouterr().out.splitlines()
    calibration = read_artefact_meta(out).extra["calibration"]
    reverted, figures = calibration["reverted_to_float"], calibration["accuracy"]
    assert reverted and calibration["max_drop"] == 0.0 and figures["drop_points"] <= 1e-9
    assert "INT8 mAP@0.5 {:.2f} vs FP32 {:.2f} on 10 images of annotations.json: a drop of {:.2f} points " \
           "(--max-drop 0)".format(100 * figures["int8"], 100 * figures["fp32"], figures["drop_points"]) in lines
    assert "back in float after accuracy control: {} layer(s): {}".format(len(reverted), ", ".join(reverted)) in lines
    model = ov.Core().read_model(out)
    tail = [n.replace("/WithoutBiases", "") for n in decode_tail(model)]
    floats = float_weighted_layers(model)
    assert set(reverted) <= set(floats) and not set(reverted) & set(tail)
    assert read_record(provenance_path(out))["algorithm"]["reverted_to_float"] == reverted
    # the same build without accuracy control: only the decode tail stays in float
    plain = build(BuildConfig(demo_onnx, target="cpu", precision="int8", output=str(tmp_path / "plain.xml"),
                              options={"calib": "shapes:5", "calib_count": 2}))
    assert set(float_weighted_layers(ov.Core().read_model(plain))) <= set(tail)
    assert "reverted_to_float" not in read_artefact_meta(plain).extra["calibration"]
