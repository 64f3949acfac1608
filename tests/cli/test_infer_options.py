"""`edgecsp infer` with what users reach for (issue 20), in-process on real ONNX Runtime and OpenCV: classifiers
(top-k), --save out.png, --classes, --save-txt, --show without a display, folders with unreadable images."""
import json
import os

import numpy as np
import pytest

from tests.gates import optional

cv2 = optional("cv2")

from edgecsp.cli import main  # noqa: E402
from edgecsp.runtime.meta import ModelMeta  # noqa: E402

pytestmark = [pytest.mark.opencv, pytest.mark.onnxruntime, pytest.mark.onnx]

COLOURS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def colour_classifier(tmp_path_factory):
    """A real ONNX classifier: logits = 20 x the mean R, G, B of its 16x16 RGB input (a red image is 'red')."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecsp.onnxio import set_onnx_meta

    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[2, 3], keepdims=0),
             helper.make_node("Mul", ["mean", "gain"], ["logits"])]
    graph = helper.make_graph(nodes, "colours", [helper.make_tensor_value_info(
        "images", TensorProto.FLOAT, ["batch", 3, 16, 16])], [helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, ["batch", 3])], [numpy_helper.from_array(np.array(20.0, np.float32), "gain")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = ModelMeta(names=COLOURS, input_size=(16, 16), task="classify", letterbox=False, layout="classify",
                     params={"probabilities": False}, outputs=["logits"], model="colours")
    set_onnx_meta(model, meta)
    path = str(tmp_path_factory.mktemp("classifier") / "colours.onnx")
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    """The two-head random detector of the ONNX Runtime backend tests (classes cat, dog)."""
    from tests.backends.test_onnxruntime_backend import make_onnx

    path = str(tmp_path_factory.mktemp("detector") / "tiny.onnx")
    make_onnx(path)
    return path


def _image(path, bgr, size=(24, 32)):
    cv2.imwrite(str(path), np.full(size + (3,), bgr, np.uint8))
    return str(path)


def _lines(path):
    return [json.loads(line) for line in open(str(path))]


def test_a_classifier_gives_its_top_k_per_frame_in_json_labels_and_images(colour_classifier, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "a_red.png", (0, 0, 250), size=(120, 160))
    _image(folder / "b_blue.jpg", (250, 30, 0), size=(120, 160))
    out = tmp_path / "out"
    assert main(["infer", "--engine", colour_classifier, str(folder), "--top-k", "2", "--save-json", str(out) + ".jsonl",
                 "--save", str(out), "--save-txt", str(tmp_path / "labels"), "--no-progress"]) == 0
    assert "top-2 classes of 2 frames" in capsys.readouterr().out
    lines = _lines(str(out) + ".jsonl")
    assert [l["source"] for l in lines] == ["a_red.png", "b_blue.jpg"]
    assert [[c["name"] for c in l["classes"]] for l in lines] == [["red", "green"], ["blue", "green"]]
    first = lines[0]["classes"][0]
    assert first["class_id"] == 0 and 0.9 < first["score"] <= 1.0 and "detections" not in lines[0]
    assert sorted(os.listdir(str(out))) == ["a_red.png", "b_blue.jpg"]  # names and formats kept
    drawn, plain = cv2.imread(str(out / "a_red.png")), cv2.imread(str(folder / "a_red.png"))
    assert (drawn[:4] != plain[:4]).any() and (drawn[-4:] == plain[-4:]).all()  # the tags, top-left only
    assert (tmp_path / "labels" / "b_blue.txt").read_text().splitlines()[0].endswith(" blue")

    # --classes: the best of the classes named (names or ids), probabilities over all classes
    assert main(["infer", "--engine", colour_classifier, str(folder / "a_red.png"), "--classes", "green,2",
                 "--save-json", str(tmp_path / "some.jsonl"), "--no-progress"]) == 0
    kept = _lines(tmp_path / "some.jsonl")[0]["classes"]
    assert [c["name"] for c in kept] == ["green", "blue"] and kept[0]["score"] < 0.01


def test_save_keeps_the_image_path_and_format_given(tiny_detector, tmp_path, capsys):
    image = _image(tmp_path / "in.jpg", (90, 160, 30), size=(40, 56))
    assert main(["infer", "--engine", tiny_detector, image, "--save", str(tmp_path / "out.png"), "--no-progress"]) == 0
    assert "annotated output: {}".format(tmp_path / "out.png") in capsys.readouterr().out
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cv2.imread(str(tmp_path / "out.png")).shape == (40, 56, 3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "x.png", (1, 2, 3))
    assert main(["infer", "--engine", tiny_detector, str(folder), "--save", str(tmp_path / "o.jpg"),
                 "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "is an image but the source" in err and "give a folder" in err and err.count("\n") == 1
    assert not (tmp_path / "o.jpg").exists()


def test_classes_keep_only_the_named_classes(tiny_detector, tmp_path, capsys):
    image = str(tmp_path / "noise.png")
    cv2.imwrite(image, np.random.RandomState(0).randint(0, 255, (64, 64, 3)).astype(np.uint8))
    every, dogs = str(tmp_path / "all.jsonl"), str(tmp_path / "dogs.jsonl")
    assert main(["infer", "--engine", tiny_detector, image, "--conf", "0.05", "--save-json", every, "--no-progress"]) == 0
    assert main(["infer", "--engine", tiny_detector, image, "--conf", "0.05", "--classes", "dog", "--save-json", dogs,
                 "--no-progress"]) == 0
    names = [d["name"] for d in _lines(every)[0]["detections"]]
    assert "cat" in names and "dog" in names
    kept = _lines(dogs)[0]["detections"]
    assert kept and set(d["name"] for d in kept) == {"dog"}
    assert kept == [d for d in _lines(every)[0]["detections"] if d["name"] == "dog"]  # per-class NMS: same boxes
    capsys.readouterr()
    assert main(["infer", "--engine", tiny_detector, image, "--classes", "zebra", "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert err == "edgecsp infer: error: --classes zebra: the model has no such class name or id; its classes are " \
                  "0 cat, 1 dog\n"


def test_save_txt_writes_a_yolo_file_per_video_frame(tiny_detector, tmp_path, capsys):
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(3):
        writer.write(np.random.RandomState(i).randint(0, 255, (48, 64, 3)).astype(np.uint8))
    writer.release()
    labels, detections = tmp_path / "labels", str(tmp_path / "d.jsonl")
    assert main(["infer", "--engine", tiny_detector, video, "--conf", "0.05", "--save-txt", str(labels), "--save-json",
                 detections, "--no-progress"]) == 0
    assert "labels: {}".format(labels) in capsys.readouterr().out
    assert sorted(os.listdir(str(labels))) == ["clip_0.txt", "clip_1.txt", "clip_2.txt"]
    for line in _lines(detections):
        rows = [[float(v) for v in row.split()] for row in
                (labels / "clip_{}.txt".format(line["frame"])).read_text().splitlines()]
        assert len(rows) == len(line["detections"]) > 0
        for row, det in zip(rows, line["detections"]):
            x1, y1, x2, y2 = det["box"]
            assert row[0] == det["class_id"] and abs(row[5] - det["score"]) < 1e-4
            assert np.allclose(row[1:5], [(x1 + x2) / 128.0, (y1 + y2) / 96.0, (x2 - x1) / 64.0, (y2 - y1) / 48.0],
                               atol=1e-3)


def test_show_without_a_display_is_a_one_line_input_error(tiny_detector, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    image = _image(tmp_path / "in.png", (1, 2, 3))
    assert main(["infer", "--engine", tiny_detector, image, "--show", "--save-json", str(tmp_path / "d.jsonl"),
                 "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("edgecsp infer: error: --show: ") and err.count("\n") == 1
    assert "DISPLAY is not set" in err or "no GUI backend" in err
    assert not (tmp_path / "d.jsonl").exists()


def test_a_folder_with_a_corrupt_image_and_a_video_still_runs(tiny_detector, tmp_path, capsys, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "1.png", (10, 20, 30))
    (folder / "2.jpg").write_bytes(b"truncated download")
    _image(folder / "3.png", (30, 20, 10))
    (folder / "walk.mp4").write_bytes(b"a video")
    out = str(tmp_path / "d.jsonl")
    assert main(["infer", "--engine", tiny_detector, str(folder), "--save-json", out, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable image(s)" in captured.out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # stderr, outside pytest
    assert any("cannot decode image" in w and "2.jpg" in w for w in warnings)
    assert any("not its 1 video (walk.mp4)" in w for w in warnings)
    assert [l["source"] for l in _lines(out)] == ["1.png", "3.png"]


def test_a_registry_classifier_exports_builds_and_infers(tmp_path, capsys):
    from tests.gates import needs

    from edgecsp._lazy import available

    needs("torch")
    onnx_path = str(tmp_path / "r50.onnx")
    assert main(["export", "cspresnet50", "--input-size", "64", "-o", onnx_path]) == 0
    target, suffix = ("cpu", ".xml") if available("openvino") else ("cpu-ort", ".onnx")
    artefact = str(tmp_path / ("r50-built" + suffix))
    assert main(["build", "--target", target, onnx_path, "-o", artefact]) == 0
    image = str(tmp_path / "in.png")
    cv2.imwrite(image, np.random.RandomState(1).randint(0, 255, (90, 120, 3)).astype(np.uint8))
    out = str(tmp_path / "c.jsonl")
    capsys.readouterr()
    assert main(["infer", "--engine", artefact, image, "--save-json", out, "--save", str(tmp_path / "c.png"),
                 "--no-progress"]) == 0
    assert "top-5 classes of 1 frames" in capsys.readouterr().out
    classes = _lines(out)[0]["classes"]
    scores = [c["score"] for c in classes]
    assert len(classes) == 5 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-4
    assert all(c["name"] == "class{}".format(c["class_id"]) for c in classes)
    assert cv2.imread(str(tmp_path / "c.png")).shape == (90, 120, 3)


def test_save_txt_never_writes_into_or_over_the_source_folder(tiny_detector, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "a.png", (1, 2, 3))
    for target, why in ((folder, "would overwrite the source folder"), (folder / "labels", "is inside the source")):
        assert main(["infer", "--engine", tiny_detector, str(folder), "--save-txt", str(target),
                     "--no-progress"]) == 3
        err = capsys.readouterr().err
        assert err.startswith("edgecsp infer: error: --save-txt ") and why in err and err.count("\n") == 1
    assert sorted(os.listdir(str(folder))) == ["a.png"]


def test_a_darknet_classifier_gives_its_softmax_output_as_scores(tmp_path, capsys):
    from tests.darknet import darknet_helpers as helpers
    from tests.gates import needs

    needs("torch")
    from edgecsp.backends import open_runner
    from edgecsp.darknet import parse_cfg, plan_network, random_weights, write_weights
    from edgecsp.runtime.preprocess import preprocess

    cfg = helpers.fixture_cfg("csdarknet53-omega")  # ends in [softmax]: its output is probabilities already
    weights = str(tmp_path / "random.weights")
    plan = plan_network(parse_cfg(cfg))
    write_weights(weights, plan, random_weights(plan, 0))
    onnx_path = str(tmp_path / "cs.onnx")
    assert main(["export", "--darknet", cfg, weights, "--input-size", "64x64", "-o", onnx_path]) == 0
    image = str(tmp_path / "in.png")
    frame = np.random.RandomState(2).randint(0, 255, (70, 50, 3)).astype(np.uint8)
    cv2.imwrite(image, frame)
    out = str(tmp_path / "c.jsonl")
    assert main(["infer", "--engine", onnx_path, image, "--top-k", "3", "--save-json", out, "--no-progress"]) == 0
    classes = _lines(out)[0]["classes"]
    with open_runner(onnx_path) as runner:
        probs = runner.infer(preprocess([frame], runner.meta)[0])[0].reshape(-1)
    best = np.argsort(-probs, kind="mergesort")[:3]
    assert [c["class_id"] for c in classes] == best.tolist()
    assert np.allclose([c["score"] for c in classes], probs[best], atol=1e-5)  # not a second softmax
