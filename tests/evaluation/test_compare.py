"""``edgecsp compare``: per-output differences, NaN/Inf detection and the pass/fail verdict."""
import json

import numpy as np
import pytest

from edgecsp.cli import main
from edgecsp.errors import InputError
from edgecsp.evaluation.compare import compare_artefacts
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.meta import META_KEY

pytestmark = [pytest.mark.onnx, pytest.mark.onnxruntime]

SIZE = 16


def make_model(path, head="identity", scale=1.0, size=SIZE):
    """A one-head "detector" (1 anchor, 1 class: 6 channels) built with onnx.helper.

    head: "identity" -> pooled pixels * scale; "nan" -> Sqrt(pooled - 2), NaN for every input in [0, 1];
    "inf" -> Log(pooled - pooled) = -inf.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Concat", ["pooled", "pooled"], ["both"], axis=1),
             helper.make_node("Mul", ["both", "scale"], ["scaled"])]
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "scale"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    if head == "nan":
        nodes += [helper.make_node("Sub", ["scaled", "two"], ["negative"]), helper.make_node("Sqrt", ["negative"],
                                                                                            ["out"])]
    elif head == "inf":
        nodes += [helper.make_node("Sub", ["scaled", "scaled"], ["zero"]), helper.make_node("Log", ["zero"], ["out"])]
    else:
        nodes += [helper.make_node("Identity", ["scaled"], ["out"])]
    graph = helper.make_graph(nodes, "cmp", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                           [1, 3, size, size])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 6, size // 8, size // 8])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = yolo_meta(names=["thing"], input_size=(size, size), heads=[HeadMeta(8, [(8.0, 8.0)])], outputs=["out"],
                     model="cmp-test")
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    onnx.save(model, str(path))
    return str(path)


def test_identical_models_pass(tmp_path):
    a = make_model(tmp_path / "a.onnx")
    result = compare_artefacts(a, make_model(tmp_path / "b.onnx"), count=2)
    assert result.passed and result.batches == 2
    (out,) = result.outputs
    assert (out.name, out.shape, out.max_abs, out.outside, out.nonfinite_a) == ("out", (1, 6, 2, 2), 0.0, 0, 0)


def test_differences_are_measured_against_the_tolerances(tmp_path):
    a, b = make_model(tmp_path / "a.onnx"), make_model(tmp_path / "b.onnx", scale=1.01)
    batch = np.full((1, 3, SIZE, SIZE), 0.5, np.float32)
    loose = compare_artefacts(a, b, [batch], atol=0.0, rtol=0.02)
    (out,) = loose.outputs
    assert loose.passed and out.max_abs == pytest.approx(0.005, rel=1e-5)
    assert out.max_rel == pytest.approx(0.01 / 1.01, rel=1e-5) and out.mean_rel == pytest.approx(out.max_rel)
    strict = compare_artefacts(a, b, [batch], atol=1e-3, rtol=1e-3)
    assert not strict.passed and strict.outputs[0].outside == 24


@pytest.mark.parametrize("head, nan", [("nan", 24), ("inf", 0)])
def test_nan_and_inf_fail_whatever_the_tolerance(tmp_path, head, nan):
    a, b = make_model(tmp_path / "a.onnx"), make_model(tmp_path / "b.onnx", head=head)
    result = compare_artefacts(a, b, count=1, atol=1e9, rtol=1e9)
    (out,) = result.outputs
    assert not result.passed
    assert (out.nonfinite_a, out.nonfinite_b, out.nan_b, out.outside) == (0, 24, nan, 24)


def test_cli_compare_reports_nan_and_exits_6(tmp_path, capsys):
    a, b = make_model(tmp_path / "a.onnx"), make_model(tmp_path / "b.onnx", head="nan")
    report = str(tmp_path / "cmp.json")
    assert main(["compare", a, b, "--count", "2", "--json", report]) == 6
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "NaN/Inf" in captured.out
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err) == 1 and "produce NaN/Inf in output(s) out" in err[0]
    data = json.load(open(report))
    assert data["passed"] is False and data["outputs"][0]["nan_b"] == 48
    assert main(["compare", a, a, "--count", "1"]) == 0


def test_models_with_different_inputs_are_refused(tmp_path):
    a, b = make_model(tmp_path / "a.onnx"), make_model(tmp_path / "b.onnx", size=32)
    with pytest.raises(InputError, match="take differently preprocessed inputs"):
        compare_artefacts(a, b, count=1)
    with pytest.raises(InputError, match="--atol must be a non-negative number"):
        compare_artefacts(a, a, count=1, atol=-1)
