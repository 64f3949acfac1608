"""``export --decode-in-graph``: the YOLO decode appended to the ONNX gives what edgecsp's numpy decode gives,
for both darknet box forms, in DeepStream-Yolo's NvDsInferParseYolo layout (N, M, 6)."""
import numpy as np
import pytest

from tests.darknet import darknet_helpers as helpers

pytestmark = [pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime]


def _run(path, x):
    from edgecsp.export.onnx_export import run_onnx

    return run_onnx(path, x)


def _export(tmp_path, name, **config):
    from edgecsp.export.onnx_export import ExportConfig, export

    raw = export(ExportConfig(output=str(tmp_path / (name + ".onnx")), **config))
    decoded = export(ExportConfig(output=str(tmp_path / (name + "-ds.onnx")), decode_in_graph=True, **config))
    return raw, decoded


def _darknet(tmp_path, cfg_name, size):
    from edgecsp.darknet import parse_cfg, plan_network, random_weights, write_weights

    cfg = helpers.sized_cfg(helpers.fixture_cfg(cfg_name), size, tmp_path)
    weights = str(tmp_path / "random.weights")
    plan = plan_network(parse_cfg(cfg))
    write_weights(weights, plan, random_weights(plan, 0))
    return dict(darknet_cfg=cfg, darknet_weights=weights, simplify=False)


@pytest.mark.parametrize("source", ["demo", "yolov4-tiny", "yolov4-csp"])
def test_graph_decode_matches_numpy(source, tmp_path, demo_card):
    """demo: classic boxes, logits; yolov4-tiny: scale_x_y 1.05; yolov4-csp: new_coords on activated heads."""
    from edgecsp.export.decode_graph import decode_reference

    if source == "demo":
        config, size = dict(card=demo_card), 256
    else:
        size = 128 if source == "yolov4-tiny" else 64
        config = _darknet(tmp_path, source, size)
    raw, decoded = _export(tmp_path, source, **config)
    heads = raw.meta.params.heads
    if source == "yolov4-tiny":
        assert {h.scale_x_y for h in heads} == {1.05} and not any(h.new_coords for h in heads)
    if source == "yolov4-csp":
        assert all(h.new_coords for h in heads) and raw.meta.params.activated
    assert decoded.meta.layout == "detections" and decoded.meta.outputs == ["output"]
    assert decoded.meta.params["nms_applied"] is False and decoded.meta.params["columns"][4:] == ["score", "class"]
    x = helpers.image_input(size, seed=5)
    outputs = _run(raw.path, x)
    want = decode_reference(dict(zip(raw.meta.outputs, outputs)), raw.meta)
    got = _run(decoded.path, x)[0]
    cells = sum(len(h.anchors) * (size // h.stride) ** 2 for h in heads)
    assert got.shape == want.shape == (1, cells, 6)
    assert np.abs(got[..., :5] - want[..., :5]).max() <= 1e-4
    tied = np.isclose(got[..., 4], want[..., 4], atol=1e-6)
    assert ((got[..., 5] == want[..., 5]) | tied).all()
    assert decoded.decode_max_abs <= 1e-4
