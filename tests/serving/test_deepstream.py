"""DeepStream: the YOLO decode appended to the ONNX gives what edgecsp's numpy decode gives (both darknet box
forms), in DeepStream-Yolo's NvDsInferParseYolo layout; the nvinfer / deepstream-app configs parse back and
name what they should. DeepStream itself never runs here."""
import configparser
import os

import numpy as np
import pytest

from tests.darknet import darknet_helpers as helpers

from edgecsp.cli import main
from edgecsp.backends import read_artefact_meta as read_meta
from edgecsp.errors import InputError, MetadataError

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
    heads = raw.meta.heads
    if source == "yolov4-tiny":
        assert {h.scale_x_y for h in heads} == {1.05} and not any(h.new_coords for h in heads)
    if source == "yolov4-csp":
        assert all(h.new_coords for h in heads) and raw.meta.activated
    assert decoded.meta.layout == "yolo_decoded" and decoded.meta.outputs == ["output"]
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


def test_deepstream_package(tmp_path, demo_card):
    from edgecsp.export.onnx_export import ExportConfig, export

    onnx_path = export(ExportConfig(card=demo_card, output=str(tmp_path / "demo-ds.onnx"), decode_in_graph=True,
                                    dynamic_batch=True)).path
    folder = tmp_path / "ds"
    assert main(["package", "--deepstream", str(folder), onnx_path, "--streams", "4"]) == 0
    assert sorted(os.listdir(str(folder))) == ["config_infer_primary.txt", "deepstream_app_config.txt",
                                                "demo-ds.onnx", "labels.txt"]
    infer = configparser.ConfigParser()
    infer.read(str(folder / "config_infer_primary.txt"))
    prop = infer["property"]
    assert prop["onnx-file"] == "demo-ds.onnx" and os.path.isfile(str(folder / prop["onnx-file"]))
    assert prop["parse-bbox-func-name"] == "NvDsInferParseYolo" and prop["network-mode"] == "2"  # fp16
    assert int(prop["num-detected-classes"]) == 5 and prop["batch-size"] == "4"
    assert float(prop["net-scale-factor"]) == pytest.approx(1 / 255.0) and prop["model-color-format"] == "0"
    assert prop["maintain-aspect-ratio"] == "1" and prop["symmetric-padding"] == "1"  # edgecsp's centred letterbox
    assert float(infer["class-attrs-all"]["pre-cluster-threshold"]) == 0.25
    labels = (folder / "labels.txt").read_text().splitlines()
    assert labels == ["circle", "square", "triangle", "star", "cross"]
    app = configparser.ConfigParser()
    app.read(str(folder / "deepstream_app_config.txt"))
    assert app["source0"]["num-sources"] == "4" and app["streammux"]["batch-size"] == "4"
    assert app["primary-gie"]["config-file"] == "config_infer_primary.txt"
    assert int(app["tiled-display"]["rows"]) * int(app["tiled-display"]["columns"]) >= 4


def test_deepstream_bad_input(tmp_path, demo_onnx, demo_card, demo_video, capsys):
    from edgecsp.export.onnx_export import ExportConfig, export
    from edgecsp.serving.deepstream import package_deepstream

    decoded = export(ExportConfig(card=demo_card, output=str(tmp_path / "d.onnx"), decode_in_graph=True)).path
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    cases = [
        ([str(tmp_path / "new"), demo_onnx], 5, "writes the raw YOLO heads; DeepStream's parser wants the boxes "
                                                 "decoded in the graph: export it with"),
        ([str(tmp_path / "new"), decoded, "--streams", "3"], 3, "3 streams need a batch of 3 but d.onnx takes 1"),
        ([str(taken), decoded], 3, "already exists and is not empty"),
    ]
    for args, code, message in cases:
        assert main(["package", "--deepstream"] + args) == code
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err
    assert not os.path.exists(str(tmp_path / "new")) and os.listdir(str(taken)) == ["x"]
    with pytest.raises(InputError, match="--precision must be one of"):
        package_deepstream(str(tmp_path / "new"), decoded, precision="int4")
    # edgecsp's own runtime refuses the decoded export in one line instead of misreading it
    from edgecsp.runtime.decode import decode_yolo

    with pytest.raises(MetadataError, match="decodes its boxes in the graph"):
        decode_yolo([np.zeros((1, 1770, 6), np.float32)], read_meta(decoded))
    assert main(["infer", "--engine", decoded, demo_video[0], "--no-progress"]) == 5
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "decodes its boxes in the graph" in err[0], err
