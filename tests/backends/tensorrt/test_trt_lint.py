"""The TensorRT lint and graph fitting: the bad cases fail for tx2 and pass where the matrix allows."""
import numpy as np
import pytest

from edgecsp.backends.tensorrt.host.fit import decompose_mish, fit_graph, name_nodes
from edgecsp.backends.tensorrt.host.lint import errors_of, lint_model, raise_on_errors, targets_supporting
from edgecsp.errors import UnsupportedError

from tests.backends.tensorrt import trt_models

pytestmark = pytest.mark.onnx

BAD_FOR_TX2 = {
    "nonzero": (trt_models.nonzero_model, "TensorRT 8.2 cannot parse NonZero", "mask_indices (NonZero)"),
    "opset17": (lambda: trt_models.clean_model(opset=17), "ONNX opset 17 is above the 13",
                "`edgecsp export --opset 13`"),
    "computed_resize": (trt_models.computed_resize_model,
                        "input 'scales' (tensor scales) is computed at run time but TensorRT 8.2 needs it as an "
                        "initializer", "upsample (Resize)"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOR_TX2))
def test_bad_models_fail_for_tx2_naming_the_node_and_fix(case):
    make, problem, where = BAD_FOR_TX2[case]
    findings = lint_model(make(), "tx2")
    errors = errors_of(findings)
    assert len(errors) == 1 and problem in str(errors[0]) and where in str(errors[0]) + str(errors[0].fix)
    assert errors[0].fix
    with pytest.raises(UnsupportedError, match="will not build for tx2 .TensorRT 8.2.: 1 problem"):
        raise_on_errors(findings, case + ".onnx", "tx2")
    assert errors_of(lint_model(make(), "nano"))  # same JetPack, same parser


@pytest.mark.parametrize("case", sorted(BAD_FOR_TX2))
@pytest.mark.parametrize("target", ["orin", "x86-cuda"])
def test_bad_models_pass_where_the_matrix_allows(case, target):
    assert lint_model(BAD_FOR_TX2[case][0](), target) == []


def test_clean_and_constant_resize_models_pass_everywhere():
    for target in ("tx2", "nano", "xavier-nx", "agx-xavier", "orin", "x86-cuda"):
        assert lint_model(trt_models.clean_model(), target) == []
        assert lint_model(trt_models.constant_resize_model(), target) == []


def test_nonzero_fix_names_the_targets_that_parse_it():
    assert targets_supporting("NonZero") == ["xavier-nx", "agx-xavier", "orin", "orin-nano", "orin-jp5", "x86-cuda"]
    assert targets_supporting("Mish") == ["x86-cuda"]


def test_efficient_nms_on_tensorrt_82_is_a_warning():
    from onnx import helper

    model = trt_models.clean_model()
    model.graph.node.append(helper.make_node("EfficientNMS_TRT", ["p8"], ["dets"], name="nms"))
    findings = lint_model(model, "tx2")
    assert [(f.severity, f.node) for f in findings] == [("warning", "nms")]
    assert "negative scores" in findings[0].problem
    assert [f.severity for f in lint_model(model, "orin")] == ["warning"]  # a plugin, not an ONNX op


@pytest.mark.onnxruntime
def test_custom_mish_is_decomposed_and_computes_mish():
    from edgecsp.backends.tensorrt.host.fp16_check import exposing_session

    model, count = decompose_mish(trt_models.custom_mish_model())
    assert count == 1 and [n.op_type for n in model.graph.node][:4] == ["MaxPool", "Softplus", "Tanh", "Mul"]
    assert [o.domain for o in model.opset_import] == [""]  # the custom domain is gone
    assert lint_model(model, "tx2") == []
    x = np.random.RandomState(0).randn(1, 3, 32, 32).astype(np.float32)
    probe = exposing_session(model, ["pool"]).run(["pool"], {"images": x})[0]  # the Mish output keeps its name
    pooled = x.reshape(1, 3, 4, 8, 4, 8).max(axis=(3, 5))
    assert np.allclose(probe, pooled * np.tanh(np.log1p(np.exp(pooled))), atol=1e-5)


@pytest.mark.onnxsim
def test_fit_graph_folds_a_computed_resize_and_decomposes_mish():
    model, notes = fit_graph(trt_models.computed_resize_model(), trt_models.tiny_meta(), "tx2")
    assert lint_model(model, "tx2") == []  # onnxsim folded Shape->Div->Mul into an initializer
    assert any("simplified" in n for n in notes)
    assert all(n.name for n in model.graph.node)
    model, notes = fit_graph(trt_models.custom_mish_model(), trt_models.tiny_meta(), "x86-cuda", simplify=False)
    assert "decomposed 1 Mish node(s) into Softplus/Tanh/Mul" in notes and lint_model(model, "x86-cuda") == []


def test_fit_graph_refuses_a_too_new_opset_with_the_export_fix():
    with pytest.raises(UnsupportedError, match=r"opset 17 but target tx2 takes at most 13: re-export with "
                                               r"`edgecsp export --opset 13`"):
        fit_graph(trt_models.clean_model(opset=17), trt_models.tiny_meta(), "tx2", simplify=False, where="m.onnx")


def test_name_nodes_gives_unique_colon_free_names():
    model = trt_models.clean_model()
    for node in model.graph.node:
        node.name = ""
    assert name_nodes(model) == 2
    names = [n.name for n in model.graph.node]
    assert names == ["MaxPool_0", "Conv_1"] and name_nodes(model) == 0


def _graph(nodes, inits, out="o"):
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                         [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_end_to_end_and_dynamic_exports_name_the_export_to_use_instead():
    """What TensorRT 8.2 cannot parse in the families' exports: NonZero (Ultralytics nms=True), Mod (YOLOv10 /
    YOLO26 end-to-end top-k), a float Range computed at run time (classic YOLOv5 --dynamic grids)."""
    from onnx import TensorProto, helper

    grid = _graph([helper.make_node("Shape", ["images"], ["s"]),
                   helper.make_node("Gather", ["s", "i"], ["h"], axis=0),
                   helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
                   helper.make_node("Range", ["zero", "hf", "one"], ["o"], name="grid_range")],
                  [helper.make_tensor("i", TensorProto.INT64, [], [2]), helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                   helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    (error,) = errors_of(lint_model(grid, "tx2"))
    assert "floating-point Range" in str(error) and "without --dynamic" in error.fix
    assert lint_model(grid, "orin") == []  # TensorRT 8.5 dropped the restriction
    constant = _graph([helper.make_node("Range", ["zero", "ten", "one"], ["o"], name="r")],
                      [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("zero", 0.0), ("ten", 10.0),
                                                                                     ("one", 1.0))])
    assert lint_model(constant, "tx2") == []
    topk = _graph([helper.make_node("Mod", ["images", "seven"], ["o"], name="topk_index", fmod=1)],
                  [helper.make_tensor("seven", TensorProto.FLOAT, [], [7.0])])
    (error,) = errors_of(lint_model(topk, "tx2"))
    assert "end2end=False" in error.fix and errors_of(lint_model(topk, "nano"))
    assert lint_model(topk, "x86-cuda") == []
    (error,) = errors_of(lint_model(trt_models.nonzero_model(), "tx2"))
    assert "nms=True" in error.fix
