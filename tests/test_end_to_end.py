"""Demo weights -> ONNX -> OpenVINO -> `edgecsp infer` on a generated video, scored against its ground truth."""
import json

import numpy as np
import pytest

from edgecsp.cli import main

pytestmark = pytest.mark.openvino


def _score(jsonl_path, gt_path, num_classes):
    from edgecsp.data.coco import load_video_ground_truth
    from edgecsp.evaluation.detection_map import evaluate_detections

    _, truths = load_video_ground_truth(gt_path)
    preds = []
    for line in open(jsonl_path):
        rec = json.loads(line)
        dets = rec["detections"]
        preds.append((np.array([d["box"] for d in dets], np.float32).reshape(-1, 4),
                      np.array([d["score"] for d in dets], np.float32),
                      np.array([d["class_id"] for d in dets], np.int64)))
    assert len(preds) == len(truths)
    return evaluate_detections(preds, truths, num_classes)


def test_demo_model_on_generated_video(demo_ir, demo_video, tmp_path, capsys):
    video, gt = demo_video
    out = str(tmp_path / "det.jsonl")
    assert main(["infer", "--engine", demo_ir, video, "--save-json", out, "--conf", "0.001", "--iou", "0.6",
                 "--no-progress"]) == 0
    metrics = _score(out, gt, 5)
    print("video mAP@0.5 {:.4f}  mAP@0.5:0.95 {:.4f}".format(metrics["map50"], metrics["map50_95"]))
    assert metrics["map50"] >= 0.8


def test_demo_model_card_matches_onnx_metadata_and_its_accuracy(demo_onnx, demo_ir, demo_card, tmp_path):
    """The card's classes, input size and strides are the export's; its mAP is measured again here, on images
    rendered now from the card's validation seed, through the OpenVINO IR and the runtime's pipeline."""
    from edgecsp.backends import read_artefact_meta
    from edgecsp.data.shapes import generate_dataset
    from edgecsp.evaluation import evaluate_artefact

    card = json.load(open(demo_card))
    meta = read_artefact_meta(demo_onnx)
    assert meta.names == card["classes"]
    assert list(meta.input_size) == card["input_size"]
    assert [h.stride for h in meta.params.heads] == [h["stride"] for h in card["heads"]]
    annotations = generate_dataset(str(tmp_path / "val"), 60, seed=1000)
    measured = evaluate_artefact(demo_ir, annotations, coco=False)
    print("demo IR on 60 fresh images: mAP@0.5 {:.4f} (card: {:.4f})".format(measured["map50"],
                                                                            card["metrics"]["map50"]))
    assert measured["images"] == 60 and measured["map50"] >= 0.9
    assert abs(measured["map50"] - card["metrics"]["map50"]) < 0.05  # the card describes these weights
