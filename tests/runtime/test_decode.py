import math

import numpy as np
import pytest

from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime import decode as decode_mod
from edgecsp.runtime.decode import sigmoid
from edgecsp.runtime.layouts.yolo_raw import decode_head, decode_yolo
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import letterbox

NUM_CLASSES = 2
PER = 5 + NUM_CLASSES


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def _raw(anchors=1, h=2, w=2, n=1, fill=-20.0):
    return np.full((n, anchors * PER, h, w), fill, dtype=np.float32)


def _set(out, a, gy, gx, values):
    for c, v in enumerate(values):
        out[0, a * PER + c, gy, gx] = v


def _meta(heads, input_size=(16, 16), activated=False, **kw):
    return yolo_meta(names=["a", "b"], input_size=input_size, heads=heads, activated=activated, **kw)


@pytest.mark.parametrize("s", [1.0, 1.05, 2.0])
def test_classic_darknet_cell_matches_formula(s):
    head = HeadMeta(8, [(10.0, 20.0), (30.0, 40.0)], scale_x_y=s, new_coords=False)
    out = _raw(anchors=2)
    tx, ty, tw, th, obj, c0, c1 = 0.3, -0.2, 0.5, -0.1, 1.0, 2.0, -1.0
    _set(out, 1, 0, 1, [tx, ty, tw, th, obj, c0, c1])  # anchor 1, gy=0, gx=1
    boxes, scores = decode_head(out, head, NUM_CLASSES, activated=False)
    assert boxes.shape == (1, 2 * 2 * 2, 4) and scores.shape == (1, 8, 2)
    m = 1 * 4 + 0 * 2 + 1  # anchor-major, then row-major
    cx = (_sig(tx) * s - 0.5 * (s - 1) + 1) * 8
    cy = (_sig(ty) * s - 0.5 * (s - 1) + 0) * 8
    bw, bh = math.exp(tw) * 30.0, math.exp(th) * 40.0
    np.testing.assert_allclose(boxes[0, m], [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], rtol=1e-5)
    np.testing.assert_allclose(scores[0, m], [_sig(obj) * _sig(c0), _sig(obj) * _sig(c1)], rtol=1e-5)


def test_classic_hand_values_zero_logits():
    # sigma(0) = 0.5 puts the centre in the middle of the cell for any scale_x_y; exp(0) = 1 gives the anchor.
    head = HeadMeta(8, [(10.0, 20.0)], scale_x_y=2.0)
    out = _raw()
    _set(out, 0, 1, 0, [0, 0, 0, 0, 0, 0, 0])  # gy=1, gx=0
    boxes, scores = decode_head(out, head, NUM_CLASSES)
    np.testing.assert_allclose(boxes[0, 2], [4 - 5, 12 - 10, 4 + 5, 12 + 10], atol=1e-5)
    np.testing.assert_allclose(scores[0, 2], [0.25, 0.25], atol=1e-6)


@pytest.mark.parametrize("s", [1.05, 2.0])
def test_new_coords_raw_logits(s):
    head = HeadMeta(8, [(10.0, 20.0)], scale_x_y=s, new_coords=True)
    out = _raw()
    tx, ty, tw, th = 1.2, -0.7, 0.4, -2.0
    _set(out, 0, 1, 1, [tx, ty, tw, th, 3.0, 0.0, -3.0])
    boxes, scores = decode_head(out, head, NUM_CLASSES, activated=False)
    cx = (_sig(tx) * s - 0.5 * (s - 1) + 1) * 8
    cy = (_sig(ty) * s - 0.5 * (s - 1) + 1) * 8
    bw, bh = (2 * _sig(tw)) ** 2 * 10.0, (2 * _sig(th)) ** 2 * 20.0
    np.testing.assert_allclose(boxes[0, 3], [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], rtol=1e-5)
    np.testing.assert_allclose(scores[0, 3], [_sig(3.0) * 0.5, _sig(3.0) * _sig(-3.0)], rtol=1e-5)


def test_new_coords_activated_hand_values():
    # values already through the logistic: x = (0.75*2 - 0.5 + 1) * 8 = 16, w = (0.5*2)^2 * 10 = 10,
    # y = (0.25*2 - 0.5 + 0) * 8 = 0, h = (0.75*2)^2 * 20 = 45, scores = 0.5 * [0.8, 0.2]
    head = HeadMeta(8, [(10.0, 20.0)], scale_x_y=2.0, new_coords=True)
    out = _raw(fill=0.0)
    _set(out, 0, 0, 1, [0.75, 0.25, 0.5, 0.75, 0.5, 0.8, 0.2])
    boxes, scores = decode_head(out, head, NUM_CLASSES, activated=True)
    np.testing.assert_allclose(boxes[0, 1], [11.0, -22.5, 21.0, 22.5], atol=1e-5)
    np.testing.assert_allclose(scores[0, 1], [0.4, 0.1], atol=1e-6)


def test_classic_activated_keeps_tw_th_raw():
    head = HeadMeta(8, [(10.0, 20.0)], scale_x_y=1.0)
    out = _raw(fill=0.0)
    _set(out, 0, 0, 0, [0.5, 0.5, math.log(2.0), 0.0, 1.0, 1.0, 0.0])
    boxes, scores = decode_head(out, head, NUM_CLASSES, activated=True)
    np.testing.assert_allclose(boxes[0, 0], [4 - 10, 4 - 10, 4 + 10, 4 + 10], atol=1e-5)  # w = 2 * 10
    np.testing.assert_allclose(scores[0, 0], [1.0, 0.0])


def test_decode_yolo_two_heads_fp16_and_dict_outputs():
    heads = [HeadMeta(8, [(10.0, 20.0)]), HeadMeta(16, [(30.0, 40.0), (50.0, 60.0)])]
    meta = _meta(heads, input_size=(16, 32), outputs=["p3", "p4"])
    a = _raw(anchors=1, h=2, w=4, fill=0.0)
    b = _raw(anchors=2, h=1, w=2, fill=0.0)
    boxes, scores = decode_yolo([a, b], meta)
    assert boxes.shape == (1, 8 + 4, 4) and scores.shape == (1, 12, 2)
    # first cell of the second head, anchor 0: centre (8, 8), anchor 30x40
    np.testing.assert_allclose(boxes[0, 8], [8 - 15, 8 - 20, 8 + 15, 8 + 20], atol=1e-5)
    half, _ = decode_yolo([a.astype(np.float16), b.astype(np.float16)], meta)
    np.testing.assert_allclose(half, boxes, atol=1e-3)
    named, _ = decode_yolo({"p4": b, "p3": a}, meta)
    np.testing.assert_array_equal(named, boxes)


def test_shape_errors_are_metadata_errors():
    heads = [HeadMeta(8, [(10.0, 20.0)]), HeadMeta(16, [(30.0, 40.0)])]
    meta = _meta(heads)
    good8, good16 = _raw(h=2, w=2), _raw(h=1, w=1)
    with pytest.raises(MetadataError, match=r"output 0 is shaped \(1, 8, 2, 2\) but .* head \(\?, 7, 2, 2\)"):
        decode_yolo([np.zeros((1, PER + 1, 2, 2), np.float32), good16], meta)
    with pytest.raises(MetadataError, match="metadata describes 2"):
        decode_yolo([good8], meta)
    with pytest.raises(MetadataError, match=r"output 0 is shaped \(1, 7, 1, 1\)"):
        decode_yolo([good16, good8], meta)
    with pytest.raises(MetadataError, match=r"output 0 is shaped \(7, 2, 2\)"):
        decode_yolo([np.zeros((PER, 2, 2), np.float32), good16], meta)


def test_grid_is_cached_per_shape():
    head = HeadMeta(8, [(10.0, 20.0)])
    decode_head(_raw(h=3, w=5), head, NUM_CLASSES)
    grid = decode_mod.cell_grid(3, 5)
    assert grid is decode_mod.cell_grid(3, 5)
    assert not grid.flags.writeable
    assert grid[0, 0, 0].tolist() == [0, 1, 2, 3, 4] * 3
    assert grid[0, 0, 1].tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_extreme_logits_do_not_overflow():
    with np.errstate(all="raise"):  # no overflow, no subnormal underflow
        np.testing.assert_allclose(sigmoid(np.array([-1e4, 0.0, 1e4])), [0.0, 0.5, 1.0], atol=1e-30)
        out = _raw(fill=1e4)
        boxes, scores = decode_head(out, HeadMeta(8, [(10.0, 20.0)]), NUM_CLASSES)
    assert np.isfinite(boxes).all() and np.isfinite(scores).all()


def test_postprocess_maps_back_to_original_frame():
    # 100x200 frame letterboxed to 64x64 (scale 0.32, pad_y 16); one head, stride 32, 2x2 grid.
    meta = yolo_meta(names=["a", "b"], input_size=(64, 64), activated=True,
                     heads=[HeadMeta(32, [(32.0, 16.0)], scale_x_y=2.0, new_coords=True)])
    _, info = letterbox(np.zeros((100, 200, 3), np.uint8), (64, 64))
    out = np.zeros((1, PER, 2, 2), np.float32)
    # cell (0, 0): centre ((0.75*2 - 0.5) * 32,) * 2 = (32, 32), box 32x16 -> [16, 24, 48, 40], class 1 (0.72)
    out[0, :, 0, 0] = [0.75, 0.75, 0.5, 0.5, 0.9, 0.1, 0.8]
    # cell (gy=1, gx=0): centre (16, 48), box [0, 40, 32, 56] -> y2 = 125 in the frame, clipped to 100
    out[0, :, 1, 0] = [0.5, 0.5, 0.5, 0.5, 0.9, 0.6, 0.1]
    out[0, :, 0, 1] = [0.5, 0.5, 0.5, 0.5, 0.2, 0.9, 0.9]  # 0.18 < conf: dropped
    dets = postprocess([out], meta, [info], conf=0.25)
    assert len(dets) == 1
    det = dets[0]
    assert det.class_ids.tolist() == [1, 0]
    np.testing.assert_allclose(det.scores, [0.72, 0.54], rtol=1e-5)
    np.testing.assert_allclose(det.boxes, [[50, 25, 150, 75], [0, 75, 100, 100]], rtol=1e-5)
    with pytest.raises(InputError):
        postprocess([out], meta, [info], conf=1.5)
