"""The NMS search intervals and the blocked dense path: exact greedy results on inputs that exercise them."""
import numpy as np
import pytest

from edgecsp.runtime import nms as nms_mod
from edgecsp.runtime.nms import nms_indices


def _iou_matrix(boxes):
    b = boxes.astype(np.float64)
    iw = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    inter = iw * ih
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area[:, None] + area[None, :] - inter)


def _greedy(boxes, scores, thr, max_det=None):
    iou = _iou_matrix(boxes)
    order = np.argsort(-scores, kind="mergesort")
    removed = np.zeros(len(scores), bool)
    keep = []
    for i in order:
        if removed[i]:
            continue
        keep.append(int(i))
        removed |= iou[i] > thr
    return keep[:max_det]


def _clustered(rng, n, objects, jitter=0.15):
    centres, sizes = rng.uniform(0, 640, (objects, 2)), rng.uniform(10, 150, (objects, 2))
    k = rng.randint(0, objects, n)
    ctr = centres[k] + rng.normal(0, jitter, (n, 2)) * sizes[k]
    wh = sizes[k] * rng.uniform(0.7, 1.3, (n, 2))
    return np.concatenate([ctr - wh / 2, ctr + wh / 2], 1).astype(np.float32)


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.45, 0.7, 0.95])
def test_search_intervals_never_miss_a_suppressing_pair(thr):
    rng = np.random.RandomState(int(thr * 100))
    base = _clustered(rng, 300, 10, jitter=0.3)
    near = base[:60] + rng.uniform(-0.3, 0.3, (60, 4)).astype(np.float32)  # pairs with IoU ~0.99
    boxes = np.concatenate([base, near, rng.uniform(0, 50, (100, 4)).astype(np.float32)])  # + inverted boxes
    x1, x2 = nms_mod._search_interval(boxes[:, 0].astype(np.float64), boxes[:, 2].astype(np.float64), thr)
    y1, y2 = nms_mod._search_interval(boxes[:, 1].astype(np.float64), boxes[:, 3].astype(np.float64), thr)
    overlap = ((x1[:, None] < x2[None]) & (x1[None] < x2[:, None]) & (y1[:, None] < y2[None]) &
               (y1[None] < y2[:, None]))
    suppress = _iou_matrix(boxes) > thr
    np.fill_diagonal(suppress, False)
    assert suppress.sum() > 50 and not (suppress & ~overlap).any()
    if thr >= 0.45:
        assert overlap.sum() < 0.5 * (_iou_matrix(boxes) > 0).sum()  # and they do prune the pairs


@pytest.mark.parametrize("seed", [0, 1])
def test_blocked_dense_path_matches_greedy_across_blocks(seed):
    rng = np.random.RandomState(seed)
    boxes = _clustered(rng, 700, 12)  # more than BLOCK boxes, heavy overlap, suppressions across blocks
    scores = rng.uniform(0, 1, 700).astype(np.float32)
    scores[::7] = scores[0]  # ties keep input order
    expected = _greedy(boxes, scores, 0.45)
    assert len(expected) > nms_mod.BLOCK // 4
    for method in ("dense", "sparse", "auto"):
        assert nms_indices(boxes, scores, 0.45, None, method=method).tolist() == expected
    assert nms_indices(boxes, scores, 0.45, 10, method="dense").tolist() == expected[:10]
    classes = rng.randint(0, 3, 700)
    got = nms_indices(boxes, scores, 0.45, None, classes, method="dense")
    want = sorted((i for c in range(3) for i in np.flatnonzero(classes == c)[
        _greedy(boxes[classes == c], scores[classes == c], 0.45)]), key=lambda i: (-scores[i], i))
    assert got.tolist() == want


def test_auto_picks_the_path_by_estimated_pairs(monkeypatch):
    rng = np.random.RandomState(5)
    calls = []
    real = nms_mod._sparse_pays
    monkeypatch.setattr(nms_mod, "_sparse_pays", lambda *a: calls.append(real(*a)) or calls[-1])
    heavy = _clustered(rng, 3000, 8, jitter=0.05)  # ~375 copies per object: millions of pairs
    scores = rng.uniform(0, 1, 3000).astype(np.float32)
    assert nms_indices(heavy, scores, 0.45).tolist() == _greedy(heavy, scores, 0.45)
    xy = rng.uniform(0, 640, (3000, 2))
    spread = np.concatenate([xy, xy + rng.uniform(2, 60, (3000, 2))], 1).astype(np.float32)
    classes = rng.randint(0, 80, 3000)
    kept = nms_indices(spread, scores, 0.45, None, classes)
    assert calls == [False, True]  # heavy overlap: dense; many classes, little overlap: sparse
    assert kept.tolist() == nms_indices(spread, scores, 0.45, None, classes, method="dense").tolist()
    nms_indices(spread, scores, 0.45, 300, classes)
    assert calls[-1] is False  # a small max_det: the dense path stops early
