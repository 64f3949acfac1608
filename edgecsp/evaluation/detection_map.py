"""Detection mAP in numpy, COCO-style (the ground-truth loaders live in ``edgecsp.data.coco``).

How it counts (as pycocotools' bbox evaluation, minus crowd regions and area ranges):

* Per image and class, detections are taken by descending score (at most ``max_detections`` of them) and each
  is matched greedily to the unmatched ground-truth box of that class with the highest IoU, if that IoU is
  >= the threshold; otherwise it is a false positive. IoU uses continuous coordinates (area = w * h).
* Per class, detections of all images are ranked by score (stable sort), giving a precision/recall curve.
  AP is the mean of the precision envelope (the running maximum from the right) sampled at the 101 recalls
  0, 0.01, ..., 1; a recall never reached contributes 0.
* mAP is the mean AP over the classes that have ground truth; classes without ground truth are left out (their
  false positives are not counted anywhere), as in COCO. With no ground truth at all, mAP is NaN.
* ``ap_method="ultralytics"`` integrates the curve as Ultralytics' ``val`` does (``utils.metrics.compute_ap``):
  the envelope with the sentinels (recall 0, precision 1) and (last recall, 0), (1, 0), linearly interpolated at
  the 101 recalls and integrated with the trapezoid rule. On a curve that stays high until its last recall this
  gives a little more than COCO's step sampling (0.1 to 0.5 points on the shapes models); everything else
  (matching by descending score, the thresholds, the classes counted) is the same in both.

Boxes are ``x1, y1, x2, y2`` in pixels; labels are zero-based class indices.
"""
import numpy as np

from edgecsp.errors import InputError

COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50:0.05:0.95
_RECALL_POINTS = np.arange(101) / 100.0  # exact k/100, unlike linspace's 0.5600000000000001
_ULTRALYTICS_X = np.linspace(0.0, 1.0, 101)  # Ultralytics' own points (its utils.metrics._AP_X)
AP_METHODS = ("coco", "ultralytics")


def average_precision(recall, precision, method="coco"):
    """101-point interpolated AP of a precision/recall curve ordered by descending score.

    ``method="coco"``: the envelope sampled at recalls 0, 0.01, ..., 1 (pycocotools); ``"ultralytics"``: the
    envelope with Ultralytics' sentinels, linearly interpolated there and integrated by the trapezoid rule.
    """
    recall = np.asarray(recall, np.float64).ravel()
    precision = np.asarray(precision, np.float64).ravel()
    if method == "ultralytics":
        last = recall[-1] if recall.size else 1.0
        mrec = np.concatenate(([0.0], recall, [last, 1.0]))
        mpre = np.maximum.accumulate(np.concatenate(([1.0], precision, [0.0, 0.0]))[::-1])[::-1]
        curve = np.interp(_ULTRALYTICS_X, mrec, mpre)
        return float((np.diff(_ULTRALYTICS_X) * (curve[1:] + curve[:-1]) / 2.0).sum())  # numpy's trapezoid
    if method != "coco":
        raise InputError("unknown AP method {!r}: use one of {}".format(method, ", ".join(AP_METHODS)))
    if recall.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(idx < recall.size, envelope[np.minimum(idx, recall.size - 1)], 0.0)
    return float(sampled.mean())


def box_iou(a, b):
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match(ious, thresholds):
    """Greedy matching of score-ordered detections (rows) to ground truth (columns): tp flags (T, D)."""
    num_det, num_gt = ious.shape
    tp = np.zeros((len(thresholds), num_det), bool)
    if num_gt == 0:
        return tp
    taken = np.zeros((len(thresholds), num_gt), bool)
    thr = np.asarray(thresholds, np.float64)
    rows = np.arange(len(thresholds))
    for d in range(num_det):
        cand = np.where(taken, -1.0, ious[d][None, :])
        best = cand.argmax(axis=1)  # first of equals, as pycocotools
        hit = cand[rows, best] >= thr
        taken[rows[hit], best[hit]] = True
        tp[:, d] = hit
    return tp


def _as_arrays(entry, n, what, num_classes, with_scores):
    if hasattr(entry, "boxes") and hasattr(entry, "labels"):  # a detections record, e.g. from the runtime
        items = (entry.boxes, entry.scores, entry.labels) if with_scores else (entry.boxes, entry.labels)
    else:
        try:
            items = tuple(entry)
        except TypeError:
            items = ()
    if len(items) != n:
        raise InputError("{} must be a ({}) tuple, got {!r}".format(
            what, "boxes, scores, labels" if with_scores else "boxes, labels", type(entry).__name__))
    boxes = np.asarray(items[0], np.float64).reshape(-1, 4) if np.size(items[0]) else np.zeros((0, 4))
    labels = np.asarray(items[-1]).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(labels == np.round(labels)):
            raise InputError("{} has non-integer labels: pass zero-based class indices".format(what))
    labels = labels.astype(np.int64)
    scores = np.asarray(items[1], np.float64).reshape(-1) if with_scores else None
    if len(labels) != len(boxes) or (with_scores and len(scores) != len(boxes)):
        raise InputError("{} has {} boxes but {} labels{}: they must have the same length".format(
            what, len(boxes), len(labels), " and {} scores".format(len(scores)) if with_scores else ""))
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError("{} has label {} outside 0..{}: labels are zero-based class indices".format(
            what, int(labels.min() if labels.min() < 0 else labels.max()), num_classes - 1))
    return boxes, scores, labels


def evaluate_detections(predictions, ground_truths, num_classes, iou_thresholds=None, max_detections=100,
                        ap_method="coco"):
    """COCO-style mAP of per-image ``predictions`` against ``ground_truths``.

    ``predictions[i] = (boxes (N, 4) xyxy, scores (N,), labels (N,))`` (or any object with ``boxes``, ``scores``
    and ``labels`` attributes), ``ground_truths[i] = (boxes, labels)`` for the same image ``i``. ``iou_thresholds=None`` means COCO's 0.50:0.05:0.95. ``max_detections`` caps the
    detections per image and class (None: no cap). ``ap_method``: how a precision/recall curve becomes AP
    (``average_precision``: "coco" or "ultralytics").

    Returns ``{"map50", "map50_95", "per_class", "per_class_map50_95", "num_gt", "iou_thresholds"}``:
    ``map50_95`` is the mean over ``iou_thresholds`` (the COCO mAP with the default thresholds), ``map50``
    is computed at 0.5 whatever the thresholds, ``per_class`` maps class index -> AP@0.5 and ``num_gt`` class
    index -> ground-truth count, both only for classes with ground truth.
    """
    if ap_method not in AP_METHODS:
        raise InputError("unknown AP method {!r}: use one of {}".format(ap_method, ", ".join(AP_METHODS)))
    thresholds = COCO_IOU_THRESHOLDS if iou_thresholds is None else tuple(float(t) for t in iou_thresholds)
    if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
        raise InputError("iou_thresholds must be values in (0, 1], got {!r}".format(iou_thresholds))
    num_classes = int(num_classes)
    if num_classes < 1:
        raise InputError("num_classes must be >= 1, got {}".format(num_classes))
    predictions, ground_truths = list(predictions), list(ground_truths)
    if len(predictions) != len(ground_truths):
        raise InputError("{} predictions for {} ground-truth images: pass one (possibly empty) entry per "
                         "image, in the same order".format(len(predictions), len(ground_truths)))
    all_t = tuple(sorted(set(thresholds) | {0.5}))
    at50 = all_t.index(0.5)
    cols = [all_t.index(t) for t in thresholds]

    scores_by_class = [[] for _ in range(num_classes)]
    tp_by_class = [[] for _ in range(num_classes)]
    num_gt = np.zeros(num_classes, np.int64)
    for i, (pred, gt) in enumerate(zip(predictions, ground_truths)):
        p_boxes, p_scores, p_labels = _as_arrays(pred, 3, "predictions[{}]".format(i), num_classes, True)
        g_boxes, _, g_labels = _as_arrays(gt, 2, "ground_truths[{}]".format(i), num_classes, False)
        num_gt += np.bincount(g_labels, minlength=num_classes)
        for c in np.unique(p_labels):
            sel = np.flatnonzero(p_labels == c)
            sel = sel[np.argsort(-p_scores[sel], kind="mergesort")][:max_detections]
            ious = box_iou(p_boxes[sel], g_boxes[g_labels == c])
            scores_by_class[c].append(p_scores[sel])
            tp_by_class[c].append(_match(ious, all_t))

    ap = np.full((num_classes, len(all_t)), np.nan)
    for c in np.flatnonzero(num_gt > 0):
        if not scores_by_class[c]:
            ap[c] = 0.0
            continue
        scores = np.concatenate(scores_by_class[c])
        order = np.argsort(-scores, kind="mergesort")
        tp = np.concatenate(tp_by_class[c], axis=1)[:, order]
        tp_cum = np.cumsum(tp, axis=1)
        fp_cum = np.cumsum(~tp, axis=1)
        recall = tp_cum / float(num_gt[c])
        precision = tp_cum / (tp_cum + fp_cum).astype(np.float64)
        ap[c] = [average_precision(recall[t], precision[t], ap_method) for t in range(len(all_t))]

    present = np.flatnonzero(num_gt > 0)
    ap50 = ap[present, at50]
    ap_range = ap[present][:, cols].mean(axis=1) if present.size else np.zeros(0)
    return {
        "map50": float(ap50.mean()) if present.size else float("nan"),
        "map50_95": float(ap_range.mean()) if present.size else float("nan"),
        "per_class": {int(c): float(v) for c, v in zip(present, ap50)},
        "per_class_map50_95": {int(c): float(v) for c, v in zip(present, ap_range)},
        "num_gt": {int(c): int(num_gt[c]) for c in present},
        "iou_thresholds": list(thresholds),
    }
