"""COCO-style mAP on hand-made cases whose answer is worked out by hand, and the ground-truth loaders."""
import json
import math

import numpy as np
import pytest

from edgecsp.errors import InputError
from edgecsp.evaluation import (average_precision, box_iou, coco_class_names, evaluate_detections,
                                load_coco_ground_truth, load_video_ground_truth)

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 40.0, 30.0]
FAR = [100.0, 100.0, 110.0, 110.0]


def gt(boxes, labels):
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def pred(boxes, scores, labels):
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(labels)


def test_perfect_predictions_score_one():
    gts = [gt([A, B], [0, 1]), gt([B], [1])]
    preds = [pred([A, B], [0.9, 0.8], [0, 1]), pred([B], [0.7], [1])]
    result = evaluate_detections(preds, gts, num_classes=2)
    assert result["map50"] == 1.0 and result["map50_95"] == 1.0
    assert result["per_class"] == {0: 1.0, 1: 1.0}
    assert result["num_gt"] == {0: 1, 1: 2}


def test_one_class_perfect_one_class_all_wrong_is_half():
    gts = [gt([A, B], [0, 1])]
    preds = [pred([A, FAR], [0.9, 0.95], [0, 1])]
    result = evaluate_detections(preds, gts, num_classes=2, iou_thresholds=(0.5,))
    assert result["map50"] == 0.5
    assert result["per_class"] == {0: 1.0, 1: 0.0}


def test_false_positive_ranked_above_the_true_positive():
    # one ground truth; ranked detections FP (0.9), TP (0.8): recall [0, 1], precision [0, 0.5].
    # The envelope is 0.5 at every recall point 0, 0.01, ..., 1, so AP = 0.5 exactly.
    result = evaluate_detections([pred([FAR, A], [0.9, 0.8], [0, 0])], [gt([A], [0])], num_classes=1)
    assert result["map50"] == pytest.approx(0.5, abs=1e-12)


def test_hand_computed_101_point_ap_across_images():
    # two ground truths (image 0: A, image 1: B); ranked: TP on A (0.9), duplicate on A (0.8, FP: A is taken),
    # TP on B (0.7). recall [0.5, 0.5, 1], precision [1, 1/2, 2/3], envelope [1, 2/3, 2/3].
    # Recall points 0..0.50 (51 of them) read 1, points 0.51..1 (50) read 2/3: AP = (51 + 100/3) / 101 = 253/303.
    gts = [gt([A], [0]), gt([B], [0])]
    preds = [pred([A, A], [0.9, 0.8], [0, 0]), pred([B], [0.7], [0])]
    result = evaluate_detections(preds, gts, num_classes=1)
    assert result["map50"] == pytest.approx(253.0 / 303.0, abs=1e-12)


def test_unreached_recall_counts_zero():
    # two ground truths, one found: recall reaches only 0.5 -> 51 of 101 points read precision 1
    result = evaluate_detections([pred([A], [0.9], [0])], [gt([A, B], [0, 0])], num_classes=1)
    assert result["map50"] == pytest.approx(51.0 / 101.0, abs=1e-12)


def test_average_precision_of_a_curve():
    assert average_precision([0.5, 1.0], [1.0, 0.5]) == pytest.approx(76.0 / 101.0, abs=1e-12)
    assert average_precision([], []) == 0.0


def test_coco_thresholds_count_a_loose_box_at_the_lower_thresholds_only():
    # IoU 0.62 matches at 0.50, 0.55 and 0.60 out of the ten COCO thresholds
    loose = [0.0, 0.0, 10.0, 6.2]
    assert box_iou([loose], [A])[0, 0] == pytest.approx(0.62)
    result = evaluate_detections([pred([loose], [0.9], [0])], [gt([A], [0])], num_classes=1)
    assert result["map50"] == 1.0
    assert result["map50_95"] == pytest.approx(0.3, abs=1e-12)
    only_high = evaluate_detections([pred([loose], [0.9], [0])], [gt([A], [0])], 1, iou_thresholds=(0.75,))
    assert only_high["map50_95"] == 0.0 and only_high["map50"] == 1.0


def test_greedy_matching_takes_the_best_iou_ground_truth():
    # the first detection overlaps both ground truths by IoU > 0.5 and must take the better one (g2), which
    # leaves g1 to the second detection; taking the first match above 0.5 would make the second a FP
    g1, g2 = [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]
    d1, d2 = [3.0, 0.0, 13.0, 10.0], [0.0, 0.0, 10.0, 10.0]
    result = evaluate_detections([pred([d1, d2], [0.9, 0.8], [0, 0])], [gt([g1, g2], [0, 0])], 1,
                                 iou_thresholds=(0.5,))
    assert result["map50"] == 1.0


def test_classes_without_ground_truth_are_left_out():
    gts = [gt([A], [0])]
    preds = [pred([A, B], [0.9, 0.99], [0, 2])]  # class 2 has no ground truth: its FP counts nowhere
    result = evaluate_detections(preds, gts, num_classes=3)
    assert result["map50"] == 1.0 and list(result["per_class"]) == [0]


def test_no_predictions_and_no_ground_truth():
    assert evaluate_detections([pred([], [], [])], [gt([A], [0])], 1)["map50"] == 0.0
    assert math.isnan(evaluate_detections([pred([A], [0.5], [0])], [gt([], [])], 1)["map50"])


def test_max_detections_caps_per_image_and_class():
    # three FPs above the TP: with a cap of 2 the TP is dropped and AP falls to 0
    preds = [pred([FAR, FAR, FAR, A], [0.9, 0.9, 0.9, 0.5], [0, 0, 0, 0])]
    assert evaluate_detections(preds, [gt([A], [0])], 1, max_detections=2)["map50"] == 0.0
    assert evaluate_detections(preds, [gt([A], [0])], 1)["map50"] == pytest.approx(0.25, abs=1e-12)


def test_records_with_attributes_are_accepted():
    class Detections(object):
        def __init__(self, boxes, scores, labels):
            self.boxes, self.scores, self.labels = boxes, scores, labels

    result = evaluate_detections([Detections(*pred([A], [0.9], [0]))], [gt([A], [0])], 1)
    assert result["map50"] == 1.0


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="predictions for"):
        evaluate_detections([], [gt([A], [0])], 1)
    with pytest.raises(InputError, match="outside"):
        evaluate_detections([pred([A], [0.9], [3])], [gt([A], [0])], 2)
    with pytest.raises(InputError, match="same length"):
        evaluate_detections([pred([A, B], [0.9], [0, 0])], [gt([A], [0])], 1)


def test_load_coco_ground_truth_maps_category_ids(tmp_path):
    coco = {
        "images": [{"id": 10, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 11, "file_name": "b.jpg", "width": 32, "height": 32}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [5, 5, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [0, 0, 32, 32], "area": 1024, "iscrowd": 1}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    images, gts = load_coco_ground_truth(str(path))
    assert [im["file_name"] for im in images] == ["a.jpg", "b.jpg"]
    assert gts[0][0].tolist() == [[1, 2, 4, 6], [5, 5, 15, 15]]
    assert gts[0][1].tolist() == [1, 0]  # ids 3 -> 0, 7 -> 1 (ascending id order)
    assert gts[1][0].shape == (0, 4)  # the crowd region is skipped
    assert coco_class_names(str(path)) == ["cat", "dog"]


def test_load_coco_ground_truth_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_coco_ground_truth(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(InputError, match="not COCO"):
        load_coco_ground_truth(str(bad))


def test_load_video_ground_truth(tmp_path):
    header = {"format": "edgecsp-video-gt", "version": 1, "names": ["a", "b"], "frames": 2, "width": 64,
              "height": 48, "fps": 25}
    frames = [{"frame": 0, "boxes": [[1, 2, 30, 40]], "labels": [1], "ids": [0]},
              {"frame": 1, "boxes": [], "labels": [], "ids": []}]
    path = tmp_path / "clip.gt.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [header] + frames) + "\n")
    got_header, gts = load_video_ground_truth(str(path))
    assert got_header["names"] == ["a", "b"]
    assert gts[0][0].tolist() == [[1, 2, 30, 40]] and gts[0][1].tolist() == [1]
    assert gts[1][0].shape == (0, 4)
    assert load_video_ground_truth(str(tmp_path / "clip.mp4"))[0] == got_header  # looked up next to the video
    path.write_text("\n".join(json.dumps(x) for x in [header] + frames[:1]) + "\n")
    with pytest.raises(InputError, match="truncated"):
        load_video_ground_truth(str(path))


# --------------------------------------------------------------------- Ultralytics' AP (`edgecsp eval --ultralytics`)


def test_ultralytics_ap_tops_out_below_one_and_differs_from_coco_by_the_integration():
    # a perfect curve: COCO samples precision 1 at every recall; Ultralytics' sentinel (recall 1, precision 0)
    # pulls the last trapezoid down to half: 0.995, the ceiling of its mAP@0.5
    assert average_precision([0.5, 1.0], [1.0, 1.0]) == 1.0
    assert average_precision([0.5, 1.0], [1.0, 1.0], "ultralytics") == pytest.approx(0.995)
    # half the objects found, all correct: the envelope steps 1 -> 0 at recall 0.5; COCO counts the points
    # 0..0.5 (51 of 101), Ultralytics' interpolation is already 0 at 0.5, so its trapezoid is 0.49 + 0.005
    assert average_precision([0.5], [1.0]) == pytest.approx(51 / 101)
    assert average_precision([0.5], [1.0], "ultralytics") == pytest.approx(0.495)
    with pytest.raises(InputError, match="unknown AP method 'voc'"):
        average_precision([0.5], [1.0], "voc")
    with pytest.raises(InputError, match="coco, ultralytics"):
        evaluate_detections([], [], 1, ap_method="voc")


@pytest.mark.ultralytics
@pytest.mark.torch
def test_ultralytics_ap_is_ultralytics_compute_ap():
    import os
    import tempfile

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "edgecsp-ultralytics-settings"))
    threads = os.environ.get("OMP_NUM_THREADS")
    from ultralytics.utils.metrics import compute_ap  # sets OMP_NUM_THREADS=1 for the process: put it back

    if threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = threads
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        tp = rng.random(n) < rng.random()
        num_gt = int(tp.sum() + rng.integers(0, 5)) or 1
        recall = np.cumsum(tp) / num_gt
        precision = np.cumsum(tp) / np.arange(1, n + 1)
        assert average_precision(recall, precision, "ultralytics") == pytest.approx(
            compute_ap(recall, precision)[0], abs=1e-12)
