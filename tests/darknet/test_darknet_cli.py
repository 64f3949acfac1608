"""`edgecsp export --darknet` -> `edgecsp build --target cpu` -> `edgecsp infer`, and bad darknet input.

All in-process through ``edgecsp.cli.main``, on the yolov4-tiny fixture with random weights.
"""
import json
import os

import numpy as np
import pytest

from tests.gates import optional

from tests.darknet import darknet_helpers as helpers

from edgecsp.cli import main
from edgecsp.darknet import parse_cfg, plan_network, random_weights, write_weights

onnx = optional("onnx")

pytestmark = [pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(cfg, random .weights) for the unmodified yolov4-tiny fixture."""
    cfg = helpers.fixture_cfg("yolov4-tiny")
    weights = str(tmp_path_factory.mktemp("tiny") / "random.weights")
    plan = plan_network(parse_cfg(cfg))
    write_weights(weights, plan, random_weights(plan, 0))
    return cfg, weights


def one_line_error(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("edgecsp export: error: ")
    return lines[0]


@pytest.mark.openvino
def test_export_build_infer(tiny, tmp_path, monkeypatch, capsys):
    cfg, weights = tiny
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--darknet", cfg, weights, "--names", helpers.coco_names()]) == 0
    onnx_path = os.path.join("engines", "darknet-yolov4-tiny-416x416-op13.onnx")
    props = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    meta = json.loads(props["edgecsp.meta"])
    assert meta["model"] == "darknet:yolov4-tiny" and meta["task"] == "detect"
    assert meta["names"][:3] == ["person", "bicycle", "car"] and len(meta["names"]) == 80
    assert meta["input_size"] == [416, 416] and meta["letterbox"] is False and meta["params"]["activated"] is False
    assert [h["stride"] for h in meta["params"]["heads"]] == [32, 16]
    assert meta["params"]["heads"][1]["anchors"] == [[23.0, 27.0], [37.0, 58.0], [81.0, 82.0]]  # mask = 1,2,3
    assert all(h["scale_x_y"] == 1.05 and h["new_coords"] is False for h in meta["params"]["heads"])

    xml = str(tmp_path / "tiny.xml")
    assert main(["build", onnx_path, "--target", "cpu", "-o", xml]) == 0
    import cv2

    image = str(tmp_path / "frame.jpg")
    cv2.imwrite(image, (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8))
    out = str(tmp_path / "detections.jsonl")
    capsys.readouterr()
    assert main(["infer", "--engine", xml, image, "--save-json", out, "--conf", "0.3", "--no-progress"]) == 0
    with open(out) as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert len(records) == 1 and records[0]["frame"] == 0
    for det in records[0]["detections"]:
        assert det["name"] == meta["names"][det["class_id"]] and det["score"] >= 0.3


def edited_cfg(tmp_path, old, new):
    with open(helpers.fixture_cfg("yolov4-tiny")) as f:
        text = f.read()
    assert old in text
    path = str(tmp_path / "edited.cfg")
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old,new,expected", [
    ("[maxpool]", "[maxpooling]", "edited.cfg line 93, [maxpooling] layer 9: unsupported section [maxpooling]"),
    ("activation=leaky", "activation=leakyrelu", "edited.cfg line 40, [convolutional] layer 0: unknown activation "
                                                 "'leakyrelu'"),
    ("layers = -1, 23", "layers = -1, 42", "line 260, [route] layer 34: layers=-1,42 refers to layer 42, which "
                                           "does not exist"),
    ("mask = 3,4,5", "mask = 4,5,6", "[yolo] layer 30: mask=4,5,6 refers to anchor 6, but there are only 6 anchors"),
])
def test_bad_cfg(tiny, tmp_path, capsys, old, new, expected):
    _, weights = tiny
    out = str(tmp_path / "out.onnx")
    code = main(["export", "--darknet", edited_cfg(tmp_path, old, new), weights, "-o", out])
    assert code == 3
    assert expected in one_line_error(capsys)
    assert not os.path.exists(out)


def test_truncated_weights(tiny, tmp_path, capsys):
    cfg, weights = tiny
    short = str(tmp_path / "short.weights")
    with open(weights, "rb") as f:
        data = f.read()
    with open(short, "wb") as f:
        f.write(data[:20 + 4 * 3031402])
    out = str(tmp_path / "out.onnx")
    assert main(["export", "--darknet", cfg, short, "-o", out]) == 3
    line = one_line_error(capsys)
    assert "short.weights holds 3031402 floats" in line and "yolov4-tiny.cfg needs exactly 6062814 floats" in line
    assert "truncated" in line
    assert not os.path.exists(out) and os.listdir(str(tmp_path)) == ["short.weights"]


def test_names_file_must_match_classes(tiny, tmp_path, capsys):
    cfg, weights = tiny
    names = tmp_path / "two.names"
    names.write_text("cat\ndog\n")
    assert main(["export", "--darknet", cfg, weights, "--names", str(names), "-o", str(tmp_path / "o.onnx")]) == 3
    assert "lists 2 classes but the cfg has 80" in one_line_error(capsys)


def test_new_coords_model_reports_activated_heads():
    from edgecsp.darknet import build_model
    from edgecsp.export.metadata import meta_from_model

    plan = plan_network(parse_cfg(helpers.fixture_cfg("yolov4-csp")), (64, 64))
    meta = meta_from_model(build_model(plan), "darknet:yolov4-csp")  # attributes only: no weights needed
    assert meta.params.activated and meta.letterbox and meta.pad_value == 127
    assert [h.stride for h in meta.params.heads] == [8, 16, 32]
    assert all(h.new_coords and h.scale_x_y == 2.0 for h in meta.params.heads)
    assert meta.params.heads[2].anchors == [(142.0, 110.0), (192.0, 243.0), (459.0, 401.0)]


def test_input_size_override(tiny, tmp_path):
    cfg, weights = tiny
    out = str(tmp_path / "small.onnx")
    assert main(["export", "--darknet", cfg, weights, "--input-size", "128x160", "--no-simplify", "-o", out]) == 0
    model = onnx.load(out)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["edgecsp.meta"])
    assert meta["input_size"] == [128, 160] and [h["stride"] for h in meta["params"]["heads"]] == [32, 16]
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    assert dims == [[1, 255, 4, 5], [1, 255, 8, 10]]
    assert meta["names"][0] == "class0"  # no --names: generic names


@pytest.mark.parametrize("size_args,where", [
    (["--input-size", "300"], "the input size 300x300 of yolov4-tiny"),
    (["--input-size", "416x200"], "the input size 416x200 of yolov4-tiny"),
])
def test_size_not_a_multiple_of_the_stride(tiny, tmp_path, capsys, size_args, where):
    """Refused up front, in one line naming the network's largest stride, not deep in a [route] layer."""
    cfg, weights = tiny
    out = str(tmp_path / "out.onnx")
    assert main(["export", "--darknet", cfg, weights, "-o", out] + size_args) == 3
    line = one_line_error(capsys)
    assert where in line and "use a multiple of 32" in line and "[route]" not in line, line
    assert not os.path.exists(out)


def test_cfg_size_not_a_multiple_of_the_stride(tiny, tmp_path, capsys):
    _, weights = tiny
    cfg = helpers.sized_cfg(helpers.fixture_cfg("yolov4-tiny"), 410, tmp_path)  # [net] width=410 height=410
    assert main(["export", "--darknet", cfg, weights, "-o", str(tmp_path / "out.onnx")]) == 3
    line = one_line_error(capsys)
    assert "[net] width=410 height=410" in line and "use a multiple of 32 (e.g. 416x416)" in line, line


def test_max_stride_of_the_fixtures():
    from edgecsp.darknet.graph import max_stride

    assert max_stride(parse_cfg(helpers.fixture_cfg("yolov4-tiny"))) == 32
    assert max_stride(parse_cfg(helpers.fixture_cfg("yolov4-csp"))) == 32
