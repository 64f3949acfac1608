"""``edgecsp eval``: the scoring of the deployed pipeline, the report and chart, and bad-input errors."""
import json
import os
import re

import numpy as np
import pytest

from tests.gates import optional

from edgecsp._lazy import available
from edgecsp.cli import main
from edgecsp.errors import InputError
from edgecsp.evaluation.artefact import EvalConfig, evaluate, score
from edgecsp.data.coco import CocoDataset

from tests.evaluation.test_coco_eval import ANNOTATIONS, KNOWN, PREDICTIONS  # noqa: E402

pytestmark = [pytest.mark.opencv]

cv2 = optional("cv2")
HAS_COCO = available("faster_coco_eval") or available("pycocotools")


def hand_dataset(tmp_path, annotations=ANNOTATIONS, size=(100, 100)):
    for image in annotations["images"]:
        cv2.imwrite(str(tmp_path / image["file_name"]), np.zeros(size + (3,), np.uint8))
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(annotations))
    return str(path)


def test_score_reports_the_known_map_by_both_paths(tmp_path):
    result = score(PREDICTIONS, CocoDataset(hand_dataset(tmp_path)), coco=HAS_COCO)
    assert result["map50"] == pytest.approx(KNOWN["map50"]) and result["map50_95"] == pytest.approx(KNOWN["map50_95"])
    assert result["per_class"] == pytest.approx({"circle": KNOWN["per_class"][0], "square": 1.0})
    assert result["num_gt"] == {"circle": 2, "square": 1}
    if HAS_COCO:
        assert result["coco"]["map50"] == pytest.approx(result["map50"])
        assert result["coco"]["map50_95"] == pytest.approx(result["map50_95"])
        assert result["coco"]["per_class"] == pytest.approx(result["per_class"])


def test_dataset_checks(tmp_path):
    path = hand_dataset(tmp_path)
    os.remove(str(tmp_path / "b.jpg"))
    with pytest.raises(InputError, match=r"annotations do not match the images: 1 of the 2 images .* \(first: b.jpg\)"):
        CocoDataset(path)
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((50, 100, 3), np.uint8))
    dataset = CocoDataset(path)
    with pytest.raises(InputError, match="b.jpg is 100x50 but .* says 100x100"):
        dataset.image(1)
    no_boxes = dict(ANNOTATIONS, annotations=[])
    (tmp_path / "empty.json").write_text(json.dumps(no_boxes))
    with pytest.raises(InputError, match="has no ground-truth boxes .* mAP cannot be computed"):
        CocoDataset(str(tmp_path / "empty.json"))
    assert dataset.label_map(["square", "circle", "extra"]) == [1, 0, -1]
    assert dataset.label_map(["x", "y"]) == [0, 1]  # unnamed classes of the same count match by index
    with pytest.raises(InputError, match="the model's 3 classes .* do not match the 2 categories"):
        dataset.label_map(["x", "y", "z"])


@pytest.fixture(scope="module")
def fp32_onnx(tiny_detector_onnx):
    return tiny_detector_onnx  # the exported ONNX runs with ONNX Runtime as it is


@pytest.mark.onnxruntime
def test_cli_eval_with_baseline_writes_report_and_chart(fp32_onnx, shapes_val, tmp_path, capsys):
    report, plot = str(tmp_path / "r" / "eval.json"), str(tmp_path / "r" / "eval.png")
    argv = ["eval", "--engine", fp32_onnx, "--baseline", fp32_onnx, "--data", shapes_val, "--report", report,
            "--no-progress"] + (["--plot", plot] if available("matplotlib") else [])
    argv += [] if HAS_COCO else ["--no-coco"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "mAP@0.5" in out and "drop" in out
    data = json.load(open(report))
    assert data["format"] == "edgecsp-eval" and data["artefact"]["images"] == 10
    assert data["drop"]["map50"] == 0.0 and set(data["artefact"]["per_class"]) <= {
        "circle", "square", "triangle", "star", "cross"}
    if HAS_COCO:
        assert data["artefact"]["coco"]["map50"] == pytest.approx(data["artefact"]["map50"], abs=1e-6)
    if available("matplotlib"):
        with open(plot, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.onnxruntime
def test_cli_eval_bad_input_is_one_line_and_writes_nothing(fp32_onnx, tmp_path, capsys):
    mismatched = dict(ANNOTATIONS, categories=[{"id": i, "name": "c{}".format(i)} for i in range(1, 81)])
    data = hand_dataset(tmp_path, mismatched)
    report = str(tmp_path / "eval.json")
    for argv, code, message in [
        (["--data", data], 3, "the model's 5 classes .* do not match the 80 categories"),
        (["--data", str(tmp_path / "none.json")], 3, "annotations .*none.json not found"),
        (["--data", data, "--images", str(tmp_path / "elsewhere")], 3, "image folder .*elsewhere does not exist"),
        (["--data", data, "--plot", str(tmp_path / "chart.jpg")], 3, "--plot .*chart.jpg must end in .png"),
        (["--data", data, "--conf", "2"], 3, "--conf: the confidence threshold must be between 0 and 1"),
    ]:
        assert main(["eval", "--engine", fp32_onnx, "--report", report, "--no-progress", "--no-coco"] + argv) == code
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in lines[0], lines
        assert re.search(message, lines[0]), (message, lines[0])
        assert not os.path.exists(report)


def test_evaluate_checks_outputs_before_running(tmp_path):
    with pytest.raises(InputError, match="--report .*r.txt must end in .json"):
        evaluate(EvalConfig(engine="x.onnx", data="a.json", report=str(tmp_path / "r.txt")))


@pytest.mark.onnxruntime
def test_cli_eval_ultralytics_preset_sets_its_val_settings_and_options_override(fp32_onnx, shapes_val, tmp_path,
                                                                                capsys):
    def run(*extra):
        report = str(tmp_path / "u{}.json".format(len(extra)))
        assert main(["eval", "--engine", fp32_onnx, "--data", shapes_val, "--report", report, "--no-progress",
                     "--no-coco"] + list(extra)) == 0
        with open(report) as handle:
            return json.load(handle)["artefact"], capsys.readouterr().out

    default, text = run()
    assert default["options"] == {"conf": 0.001, "iou": 0.6, "max_det": 100, "multi_label": True, "ap": "coco"}
    assert "AP: COCO's 101-point step" in text
    preset, text = run("--ultralytics")
    assert preset["options"] == {"conf": 0.001, "iou": 0.7, "max_det": 300, "multi_label": True, "ap": "ultralytics"}
    assert "conf 0.001, NMS IoU 0.7 multi-label, 300 detections per image; AP: Ultralytics' val" in text
    assert preset["map50"] != default["map50"]  # another integration of the same kind of curve
    override, _ = run("--ultralytics", "--iou", "0.5", "--single-label", "--ap", "coco")
    assert override["options"] == {"conf": 0.001, "iou": 0.5, "max_det": 300, "multi_label": False, "ap": "coco"}
    assert main(["eval", "--engine", fp32_onnx, "--data", shapes_val, "--ap", "voc", "--no-progress"]) == 3
    assert "--ap voc: use one of coco, ultralytics" in capsys.readouterr().err
