import json

import numpy as np
import pytest

from edgecsp.runtime.nms import Detections, nms_indices, nms_per_class, to_records


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference(boxes, scores, iou_thres, max_det, class_ids=None):
    """Brute-force greedy NMS in plain Python (float64), one class at a time."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep = []
    suppressed = set()
    for pos, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            same = class_ids is None or class_ids[i] == class_ids[j]
            if same and j not in suppressed and _iou(boxes[i].astype(float), boxes[j].astype(float)) > iou_thres:
                suppressed.add(j)
    return keep[:max_det]


def _random_boxes(rng, n, span=640.0, max_wh=120.0, offset=0.0):
    xy = rng.uniform(0, span, (n, 2)) + offset
    wh = rng.uniform(2, max_wh, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def test_two_overlapping_same_class_keep_the_best():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    det = nms_per_class(boxes, np.array([[0.6], [0.9]], np.float32), 0.25, 0.45)
    assert isinstance(det, Detections)
    assert det.scores.tolist() == pytest.approx([0.9])
    np.testing.assert_array_equal(det.boxes, boxes[1:])
    assert det.class_ids.dtype == np.int64 and det.boxes.dtype == np.float32


def test_same_box_different_classes_both_kept_unless_agnostic():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8]], np.float32)
    det = nms_per_class(boxes, scores, 0.25, 0.45)
    assert det.class_ids.tolist() == [0, 1]
    agnostic = nms_per_class(boxes, scores, 0.25, 0.45, class_agnostic=True)
    assert agnostic.class_ids.tolist() == [0]


def test_multi_label_one_box_two_classes():
    det = nms_per_class(np.array([[0, 0, 10, 10]], np.float32), np.array([[0.5, 0.7, 0.1]], np.float32), 0.3, 0.45)
    assert det.class_ids.tolist() == [1, 0]
    assert det.scores.tolist() == pytest.approx([0.7, 0.5])


def test_score_threshold_is_strict():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
    scores = np.array([0.25, 0.2500001, 0.1], np.float32)
    det = nms_per_class(boxes, scores, 0.25, 0.45)
    assert len(det.scores) == 1
    np.testing.assert_array_equal(det.boxes[0], boxes[1])


def test_max_det_keeps_the_best():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], np.float32)
    scores = np.linspace(0.3, 0.9, 10).astype(np.float32)
    det = nms_per_class(boxes, scores, 0.25, 0.45, max_det=3)
    np.testing.assert_allclose(det.scores, scores[::-1][:3])
    assert len(nms_per_class(boxes, scores, 0.25, 0.45, max_det=100).scores) == 10


def test_empty_inputs():
    for det in (nms_per_class(np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32)),
                nms_per_class(np.ones((5, 4), np.float32), np.zeros((5, 3), np.float32))):
        assert det.boxes.shape == (0, 4) and det.scores.shape == (0,) and det.class_ids.shape == (0,)
    assert nms_indices(np.zeros((0, 4)), np.zeros((0,))).shape == (0,)


def test_max_candidates_caps_before_nms():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(6)], np.float32)
    scores = np.array([0.5, 0.9, 0.6, 0.8, 0.7, 0.4], np.float32)
    det = nms_per_class(boxes, scores, 0.1, 0.45, max_candidates=2)
    assert det.scores.tolist() == pytest.approx([0.9, 0.8])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes,max_wh,iou", [(1, 60.0, 0.45), (3, 150.0, 0.5), (5, 40.0, 0.3)])
def test_matches_brute_force_reference(seed, classes, max_wh, iou):
    rng = np.random.RandomState(seed)
    n = 250
    boxes = _random_boxes(rng, n, span=300.0, max_wh=max_wh, offset=-50.0)  # negative coordinates too
    scores = rng.uniform(0, 1, n).astype(np.float32)
    class_ids = rng.randint(0, classes, n)
    expected = _reference(boxes, scores, iou, 100, class_ids)
    for method in ("sparse", "dense", "auto"):  # both ways of computing it must agree with the reference
        got = nms_indices(boxes, scores, iou, 100, class_ids, method=method)
        assert got.tolist() == expected
    expected_agnostic = _reference(boxes, scores, iou, n)
    assert nms_indices(boxes, scores, iou, None, method="sparse").tolist() == expected_agnostic
    assert nms_indices(boxes, scores, iou, None, method="dense").tolist() == expected_agnostic


def test_clustered_boxes_match_reference():
    # a detector's real output: many shifted copies around a few objects, which exercises chains of
    # suppression (a box removed by a removed box must come back)
    rng = np.random.RandomState(7)
    centres = rng.uniform(50, 250, (4, 2))
    rows = []
    for cx, cy in centres:
        for _ in range(60):
            jx, jy, w, h = rng.normal(0, 6), rng.normal(0, 6), rng.uniform(30, 60), rng.uniform(30, 60)
            rows.append([cx + jx - w / 2, cy + jy - h / 2, cx + jx + w / 2, cy + jy + h / 2])
    boxes = np.array(rows, np.float32)
    scores = rng.uniform(0, 1, len(rows)).astype(np.float32)
    expected = _reference(boxes, scores, 0.6, 300)
    assert 4 <= len(expected) < len(rows)
    for method in ("sparse", "dense", "auto"):
        assert nms_indices(boxes, scores, 0.6, 300, method=method).tolist() == expected


def test_nms_per_class_matches_reference_on_candidates():
    rng = np.random.RandomState(3)
    boxes = _random_boxes(rng, 300, max_wh=200.0)
    scores = rng.uniform(0, 0.6, (300, 4)).astype(np.float32)
    det = nms_per_class(boxes, scores, 0.3, 0.45, max_det=50)
    rows, cls = np.nonzero(scores > np.float32(0.3))
    keep = _reference(boxes[rows], scores[rows, cls], 0.45, 50, cls)
    np.testing.assert_array_equal(det.boxes, boxes[rows][keep])
    np.testing.assert_array_equal(det.class_ids, cls[keep])
    assert np.all(np.diff(det.scores) <= 0)


def test_non_finite_boxes_do_not_crash():
    boxes = np.array([[0, 0, 10, 10], [np.nan, 0, 10, 10], [0, 0, np.inf, 10]], np.float32)
    det = nms_per_class(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.25, 0.45)
    assert det.scores[0] == pytest.approx(0.9) and len(det.scores) >= 1


def test_to_records_is_json_ready():
    det = Detections(np.array([[1.234567, 2, 3, 4]], np.float32), np.array([0.987654321], np.float32),
                     np.array([1], np.int64))
    records = to_records(det, ["cat", "dog"])
    assert records == [{"class_id": 1, "name": "dog", "score": 0.98765, "box": [1.23, 2.0, 3.0, 4.0]}]
    json.dumps(records)
    assert to_records(det, None)[0]["name"] == "1"
    assert to_records(det, ["cat", "dog"], box_decimals=None)[0]["box"][0] == pytest.approx(1.234567, rel=1e-6)


def test_sparse_path_really_runs_and_resolves_chains():
    # A row of boxes each overlapping its neighbours only: keep 0, drop 1, keep 2 (its suppressor 1 is gone)...
    from edgecsp.runtime import nms as nms_mod
    boxes = np.array([[i * 4, 0, i * 4 + 10, 10] for i in range(9)], np.float32)
    scores = np.linspace(0.9, 0.5, 9).astype(np.float32)
    data = np.empty((5, 9))
    data[0:4] = boxes.T
    data[4] = 100.0
    kept = nms_mod._greedy_sparse(data, 0.3, 9, force=True)
    assert kept is not None and kept.tolist() == [0, 2, 4, 6, 8]
    assert kept.tolist() == _reference(boxes, scores, 0.3, 9)
