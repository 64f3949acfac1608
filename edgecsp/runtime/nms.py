"""Score thresholding and greedy non-maximum suppression for one image, in numpy.

Multi-label like darknet: every (box, class) pair whose ``obj * cls`` score is above the threshold is a candidate,
so one box can yield several classes. Class-aware NMS uses the coordinate-offset trick (each class is moved to
its own disjoint region of the plane, then one NMS pass runs over all candidates).

The result is always the textbook greedy one (best box kept, everything it overlaps above ``iou_thres``
dropped, repeat), computed one of two ways: a sparse path that lists only spatially overlapping pairs (a
sweep over x inside horizontal strips) and resolves the greedy order in a few vectorised rounds, which wins
when boxes overlap little or spread over many classes; and a dense loop that compares the best remaining box
with all others per step and stops after ``max_det`` keeps, which wins for many mutually overlapping boxes.

IoU uses continuous coordinates (no darknet ``+1``), like cv2.dnn.NMSBoxes and torchvision. Python 3.6
compatible.
"""
from typing import NamedTuple

import numpy as np

DEFAULT_MAX_CANDIDATES = 30000
# Above this many candidate pairs the sparse path needs too much memory for a 4 GB Jetson (~100 bytes per pair);
# heavy overlap is also where the dense loop is fast (each step removes many boxes).
PAIR_BUDGET = 1000000
MAX_ROUNDS = 64  # resolution rounds of the sparse path before it hands over to the dense loop


class Detections(NamedTuple):
    """Detections of one image, sorted by score (highest first).

    ``boxes`` (K, 4) float32 xyxy, ``scores`` (K,) float32, ``class_ids`` (K,) int64. The count is
    ``len(det.scores)``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


def empty_detections():
    """A Detections with zero rows and the usual dtypes."""
    return Detections(np.zeros((0, 4), dtype=np.float32), np.zeros((0,), dtype=np.float32),
                      np.zeros((0,), dtype=np.int64))


def nms_indices(boxes, scores, iou_thres=0.45, max_det=None, class_ids=None, method="auto"):
    """Greedy NMS; returns the indices of the kept boxes, highest score first.

    ``boxes`` (K, 4) xyxy, ``scores`` (K,). With ``class_ids`` boxes of different classes never suppress each
    other. Equal scores keep their input order (stable sort), so results are reproducible. ``method``
    ("auto", "sparse", "dense") only chooses how the same greedy result is computed (tests and benchmarks).
    """
    if method not in ("auto", "sparse", "dense"):
        raise ValueError("method must be auto, sparse or dense, not {!r}".format(method))
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    count = len(scores)
    limit = count if max_det is None else max(0, int(max_det))
    if count == 0 or limit == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="mergesort")
    # float64 so the class offsets below cost no precision. Rows: x1, y1, x2, y2, area.
    data = np.empty((5, count), dtype=np.float64)
    data[0:4] = boxes[order].T
    if class_ids is not None:
        # Translate to the origin first, then give each class its own band: bands of width span + 1 cannot
        # overlap even with negative coordinates (torchvision's max + 1 offset can, for boxes left of 0).
        lo = data[0:4].min()
        span = data[0:4].max() - lo + 1.0
        data[0:4] += np.asarray(class_ids, dtype=np.float64).reshape(-1)[order] * span - lo
    data[4] = np.maximum(data[2] - data[0], 0.0) * np.maximum(data[3] - data[1], 0.0)
    kept = None
    # NaN/inf would break the strip arithmetic; the dense loop handles them (they never suppress anything).
    if method != "dense" and np.isfinite(data).all():
        kept = _greedy_sparse(data, float(iou_thres), limit, force=method == "sparse")
    if kept is None:
        kept = _greedy_dense(data, float(iou_thres), limit)
    return order[kept[:limit]].astype(np.int64)


def _suppresses(a, b, thr):
    """Boolean: IoU(a, b) > thr for columns of two (5, P) arrays; ``inter > thr * union`` needs no division."""
    iw = np.minimum(a[2], b[2])
    iw -= np.maximum(a[0], b[0])
    np.maximum(iw, 0.0, out=iw)
    ih = np.minimum(a[3], b[3])
    ih -= np.maximum(a[1], b[1])
    np.maximum(ih, 0.0, out=ih)
    inter = iw
    inter *= ih
    union = a[4] + b[4]
    union -= inter
    union *= thr
    return inter > union


def _greedy_dense(data, thr, limit):
    """Textbook greedy NMS on score-sorted columns: keep the best, drop what it suppresses, repeat.

    Cost is one vectorised step per kept box over all remaining boxes; used when the sparse path's pair list
    would be too large (many mutually overlapping boxes, where each step also removes many).
    """
    alive = np.vstack([data, np.arange(data.shape[1], dtype=np.float64)[None]])
    keep = []
    while alive.shape[1] and len(keep) < limit:
        keep.append(int(alive[5, 0]))
        rest = alive[:, 1:]
        alive = rest[:, ~_suppresses(alive[:, 0:1], rest, thr)]
    return np.asarray(keep, dtype=np.int64)


def _search_interval(lo, hi, thr):
    """Per box, an interval about its centre that must overlap another box's for their IoU to exceed ``thr``.

    The 2-D IoU is at most the 1-D IoU of either axis (``iw*ih / (a1 + a2 - iw*ih) <= iw / (w1 + w2 - iw)``
    because ``ih`` is at most either height), and a 1-D IoU above ``t`` needs ``|dx1| + |dx2| < (1 - t) /
    (1 + t) * (w1 + w2)``, hence ``|dcx| < k*w1 + k*w2`` with ``k = (1 - t) / (2 (1 + t))``. Searching these
    intervals (0.38 of the side at t = 0.45; the whole box at t = 0) instead of the boxes themselves lists
    about 7x fewer candidate pairs; the margin keeps rounding from ever losing a pair, the exact test follows.
    """
    k = (1.0 - min(max(thr, 0.0), 1.0)) / (2.0 * (1.0 + max(thr, 0.0)))
    centre = (lo + hi) * 0.5
    half = np.abs(hi - lo) * (k * (1.0 + 1e-6))
    half += 1e-9 * (np.abs(centre) + 1.0)
    return centre - half, centre + half


def _greedy_sparse(data, thr, limit, force=False):
    """The same greedy result from the sparse list of suppressing pairs; None when the dense loop is cheaper.

    Only boxes that overlap can suppress each other, so candidate pairs come from a sort-and-sweep on x1 run
    inside horizontal strips about one box high (class offsets already separate the classes). A box is copied
    into every strip it touches and a pair is counted only in the strip holding the top of its intersection,
    so each pair appears once. The greedy order is then resolved in rounds: a box with a kept suppressor is
    removed, a box whose suppressors are all removed is kept. Each round decides at least the best undecided
    box; real outputs need a few rounds, and chains longer than ``MAX_ROUNDS`` fall back to the dense loop.
    """
    count = data.shape[1]
    x1, x2 = _search_interval(data[0], data[2], thr)
    y1, y2 = _search_interval(data[1], data[3], thr)
    heights = y2 - y1
    strip_h = float(np.median(heights))
    if not strip_h > 0.0:
        strip_h = max(float(heights.max()), 1.0)
    y_lo = float(y1.min())
    first_strip = np.floor((y1 - y_lo) / strip_h).astype(np.int64)
    copies = np.floor((np.maximum(y2, y1) - y_lo) / strip_h).astype(np.int64) - first_strip + 1
    replicas = int(copies.sum())
    if replicas > PAIR_BUDGET and not force:
        return None
    box = np.repeat(np.arange(count), copies)
    strip = np.repeat(first_strip, copies) + (np.arange(replicas) - np.repeat(np.cumsum(copies) - copies, copies))
    # One sortable key: strips sit in disjoint x bands, x2 - x_lo < band keeps every interval inside its band.
    x_lo = float(x1.min())
    band = float(np.maximum(x2, x1).max()) - x_lo + 1.0
    start_key = strip * band + (x1[box] - x_lo)
    by_key = np.argsort(start_key, kind="mergesort")
    sorted_start = start_key[by_key]
    end_key = (strip * band + (np.maximum(x2, x1)[box] - x_lo))[by_key]
    box, strip = box[by_key], strip[by_key]
    # Partners of the replica at sorted position p: positions p+1 .. hi-1 (they start before it ends).
    hi = np.searchsorted(sorted_start, end_key, side="left")
    counts = np.maximum(hi - np.arange(1, replicas + 1), 0)
    total = int(counts.sum())
    # The dense loop costs at most (kept boxes) x count element steps; a pair here costs about four of them
    # (gathers), so a small max_det over heavily x-overlapping boxes of one class is cheaper densely.
    if not force and (total > PAIR_BUDGET or 4 * total > min(limit, count) * count):
        return None
    state = np.zeros(count, dtype=np.int8)  # 0 undecided, 1 kept, -1 removed
    src = dst = np.zeros((0,), dtype=np.int64)
    if total:
        first = np.repeat(np.arange(replicas), counts)
        second = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + first + 1
        a, b = box[first], box[second]
        home = np.floor((np.maximum(y1[a], y1[b]) - y_lo) / strip_h).astype(np.int64)
        once = (home == strip[first]) & (a != b)
        a, b = a[once], b[once]
        hit = _suppresses(data[:, a], data[:, b], thr)
        src, dst = np.minimum(a[hit], b[hit]), np.maximum(a[hit], b[hit])  # lower index = higher score wins
    for _ in range(MAX_ROUNDS):
        undecided = state == 0
        if not undecided.any():
            return np.nonzero(state == 1)[0]
        src_state = state[src]
        killed = np.zeros(count, dtype=bool)
        killed[dst[src_state == 1]] = True
        blocked = np.zeros(count, dtype=bool)
        blocked[dst[src_state == 0]] = True
        state[undecided & killed] = -1
        state[undecided & ~killed & ~blocked] = 1
        live = (state[src] != -1) & (state[dst] == 0)
        src, dst = src[live], dst[live]
    return None


def nms_per_class(boxes, scores_per_class, conf_thres=0.25, iou_thres=0.45, max_det=300, class_agnostic=False,
                  max_candidates=DEFAULT_MAX_CANDIDATES):
    """Threshold, NMS and cap the detections of one image.

    ``boxes`` (M, 4) xyxy; ``scores_per_class`` (M, C) = obj * cls (a 1-D (M,) array means one class). Every
    (box, class) pair with a score above ``conf_thres`` is a candidate; at most ``max_candidates`` of the best go
    to NMS (bounds the cost on degenerate outputs). Class-aware unless ``class_agnostic``. Returns
    :class:`Detections` with at most ``max_det`` rows, highest score first.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores_per_class, dtype=np.float32)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
        raise ValueError("scores shape {} does not match {} boxes".format(scores.shape, boxes.shape[0]))
    rows, cls = np.nonzero(scores > np.float32(conf_thres))
    if rows.size == 0 or max_det <= 0:
        return empty_detections()
    conf = scores[rows, cls]
    if max_candidates and conf.size > max_candidates:
        top = np.argpartition(-conf, int(max_candidates) - 1)[:int(max_candidates)]
        top.sort()  # keep the input order among equal scores, like the uncapped path
        rows, cls, conf = rows[top], cls[top], conf[top]
    cand = boxes[rows]
    keep = nms_indices(cand, conf, iou_thres, max_det, None if class_agnostic else cls)
    return Detections(cand[keep], conf[keep], cls[keep].astype(np.int64))


def to_records(det, names=None, box_decimals=2, score_decimals=5):
    """Detections as a list of JSON-ready dicts ``{"class_id", "name", "score", "box": [x1, y1, x2, y2]}``.

    Values are rounded (pass ``None`` to keep full float32 precision) to keep JSONL files small; a class id
    without a name gets ``str(class_id)``.
    """
    names = list(names) if names is not None else []
    records = []
    for box, score, cid in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist()):
        cid = int(cid)
        if box_decimals is not None:
            box = [round(v, box_decimals) for v in box]
        if score_decimals is not None:
            score = round(score, score_decimals)
        records.append({"class_id": cid, "name": names[cid] if 0 <= cid < len(names) else str(cid),
                        "score": score, "box": box})
    return records
