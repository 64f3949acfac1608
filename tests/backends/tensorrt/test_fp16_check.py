"""FP16 range check: a model built to overflow FP16 is caught, naming the tensors and the nodes writing them."""
import numpy as np
import pytest

from edgecsp.backends.tensorrt.host.fp16_check import FP16_MAX, float_tensors, fp16_range_report, report_dict

from tests.backends.tensorrt import trt_models

pytestmark = [pytest.mark.onnx, pytest.mark.onnxruntime]


def _batches(count=2, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.rand(1, 3, trt_models.SIZE, trt_models.SIZE).astype(np.float32) for _ in range(count)]


def test_overflowing_tensors_are_named_with_their_nodes():
    findings = fp16_range_report(trt_models.overflow_model(), _batches())
    assert [(f.tensor, f.node, f.op_type) for f in findings] == [("scaled_up", "scale_up", "Mul"),
                                                                 ("scaled_relu", "relu", "Relu")]
    for f in findings:
        assert f.absmax > FP16_MAX and f.batches == 2
        assert str(f).startswith("{} (written by {} {}): |x| up to".format(f.tensor, f.op_type, f.node))
    record = report_dict(findings, 2, "imgs")
    assert record["overflowing"][0]["tensor"] == "scaled_up" and record["images"] == 2


def test_a_model_within_range_reports_nothing():
    assert fp16_range_report(trt_models.clean_model(), _batches()) == []


def test_nan_and_inf_already_in_fp32_count_as_overflow():
    from onnx import TensorProto, helper

    model = trt_models.clean_model()
    head = model.graph.node[1]
    head.output[0] = "conv"
    model.graph.node.append(helper.make_node("Div", ["conv", "zero"], ["p8"], name="div0"))
    model.graph.initializer.append(helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
    findings = fp16_range_report(model, _batches(1))
    assert [f.tensor for f in findings] == ["p8"] and findings[0].absmax == float("inf")


def test_float_tensors_lists_node_outputs_in_graph_order():
    names = [t[0] for t in float_tensors(trt_models.overflow_model())]
    assert names == ["pool", "conv", "scaled_up", "scaled_relu", "p8"]
