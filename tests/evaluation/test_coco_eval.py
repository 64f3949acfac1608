"""A hand-made case with a known mAP: the numpy mAP and the COCO library agree with it and with each other."""
import json

import numpy as np
import pytest

from edgecsp._lazy import available
from edgecsp.errors import MissingDependency
from edgecsp.evaluation.detection_map import evaluate_detections

# Two images, two classes. Class 0 ("circle"): 2 ground-truth boxes; a perfect detection (0.9) and a false one
# (0.8) that overlaps the second box by IoU 100/1200; the second box is never found. Recall reaches 0.5 with
# precision 1, so AP = 51/101 (recall points 0, 0.01 .. 0.50) at every IoU threshold.
# Class 1 ("square"): one box, one detection of IoU 1280/1600 = 0.8: a hit at thresholds 0.50 .. 0.80 (7 of 10).
CIRCLE_AP = 51.0 / 101.0
KNOWN = {"map50": (CIRCLE_AP + 1.0) / 2, "map50_95": (CIRCLE_AP + 0.7) / 2, "per_class": {0: CIRCLE_AP, 1: 1.0}}
ANNOTATIONS = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
               {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
    "categories": [{"id": 3, "name": "circle"}, {"id": 7, "name": "square"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20]},
                    {"id": 2, "image_id": 2, "category_id": 3, "bbox": [50, 50, 20, 20]},
                    {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 40, 40]}],
}
PREDICTIONS = [(np.array([[10, 10, 30, 30], [60, 60, 90, 90]], np.float32), np.array([0.9, 0.8]), np.array([0, 0])),
               (np.array([[0, 0, 40, 32]], np.float32), np.array([0.7]), np.array([1]))]
GROUND_TRUTH = [(np.array([[10, 10, 30, 30]]), np.array([0])), (np.array([[50, 50, 70, 70], [0, 0, 40, 40]]),
                                                                np.array([0, 1]))]
LIBRARIES = [name for name in ("faster_coco_eval", "pycocotools") if available(name)]


@pytest.fixture
def annotations(tmp_path):
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(ANNOTATIONS))
    return str(path)


def test_numpy_map_of_the_hand_made_case():
    result = evaluate_detections(PREDICTIONS, GROUND_TRUTH, 2)
    assert result["map50"] == pytest.approx(KNOWN["map50"], abs=1e-12)
    assert result["map50_95"] == pytest.approx(KNOWN["map50_95"], abs=1e-12)
    assert result["per_class"] == pytest.approx(KNOWN["per_class"])


@pytest.mark.coco
@pytest.mark.parametrize("library", LIBRARIES or ["faster_coco_eval"])
def test_coco_library_agrees(annotations, library, monkeypatch):
    import edgecsp.evaluation.coco_eval as coco_eval

    monkeypatch.setattr(coco_eval, "available", lambda name: name == library)  # force this library
    found = coco_eval.coco_map(annotations, coco_eval.to_coco_results(PREDICTIONS, [1, 2], [3, 7]))
    assert found["library"].startswith(library)
    assert found["map50"] == pytest.approx(KNOWN["map50"], abs=1e-9)
    assert found["map50_95"] == pytest.approx(KNOWN["map50_95"], abs=1e-9)
    assert found["per_class"] == pytest.approx(KNOWN["per_class"])
    # no detections at all: every class with ground truth scores 0 (the libraries cannot load an empty list)
    assert coco_eval.coco_map(annotations, [])["map50"] == 0.0
    # one image only: the square's image alone
    only_b = coco_eval.coco_map(annotations, coco_eval.to_coco_results(PREDICTIONS[1:], [2], [3, 7]), image_ids=[2])
    assert only_b["per_class"] == pytest.approx({0: 0.0, 1: 1.0})


def test_missing_library_names_the_extra(annotations, monkeypatch):
    import edgecsp.evaluation.coco_eval as coco_eval

    monkeypatch.setattr(coco_eval, "available", lambda name: False)
    with pytest.raises(MissingDependency, match=r"edgecsp\[eval\]"):
        coco_eval.coco_map(annotations, [])
