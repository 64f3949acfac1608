"""Every registered model exports to ONNX (opset 13, simplified) and matches ONNX Runtime."""
import pytest

from tests.gates import optional

onnx = optional("onnx")

from edgecsp.export.onnx_export import ExportConfig, export  # noqa: E402
from edgecsp.models import list_models  # noqa: E402
from edgecsp.runtime.meta import META_KEY, ModelMeta  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime]

# registry name -> (small export size, number of outputs). A registered model missing here fails the
# completeness test below, so a new model cannot land without its export test.
EXPECTED = {
    "cspdarknet53": (64, 1),
    "cspresnet50": (64, 1),
    "cspresnext50": (64, 1),
    "shapes_tiny_csp": (64, 2),
    "yolov4_csp": (64, 3),
    "yolov4_tiny_csp": (64, 2),
    "yolov4_tiny_csp_efm": (64, 2),
}


def test_every_registered_model_has_an_export_test():
    assert sorted(e.name for e in list_models()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_export_matches_onnxruntime(name, tmp_path):
    size, n_outputs = EXPECTED[name]
    out = str(tmp_path / (name + ".onnx"))
    report = export(ExportConfig(model=name, output=out, input_size=(size, size)))
    # float32 accumulation error grows with the output scale (random classifiers give logits in the hundreds)
    assert report.torch_vs_ort_max_abs <= 1e-4 * max(1.0, report.reference_max_abs)
    assert report.simplified_vs_raw_max_abs <= 1e-5
    model = onnx.load(out)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    ops = {n.op_type for n in model.graph.node}
    assert "Mish" not in ops
    assert len(model.graph.output) == n_outputs
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMeta.from_json(props[META_KEY])
    assert meta.input_size == (size, size)
    assert meta.outputs == [o.name for o in model.graph.output]
    if meta.task == "detect":
        for out_info, head in zip(model.graph.output, meta.params.heads):
            dims = [d.dim_value for d in out_info.type.tensor_type.shape.dim]
            assert dims == [1, len(head.anchors) * (5 + meta.num_classes), size // head.stride, size // head.stride]
