"""The candidate-only post-processing gives exactly the detections of the dense reference (decode every cell,
then threshold): on synthetic heads of every decode form, on the darknet fixtures and on the demo model."""
import numpy as np
import pytest

from edgecsp.runtime.decode import sigmoid
from edgecsp.runtime.layouts.yolo_raw import decode_candidates, decode_yolo, objectness_floor
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxInfo

CONFS = (0.001, 0.05, 0.25, 0.5, 0.9)


def _same(fast, dense):
    assert len(fast) == len(dense)
    for a, b in zip(fast, dense):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.boxes, b.boxes)


def _infos(n, size):
    return [LetterboxInfo(1.0, 0, 0, 1.0, 1.0, (size, size), (size, size))] * n


def _outputs(meta, batch, seed, obj_shift=-4.0):
    rng = np.random.RandomState(seed)
    outputs = []
    for head in meta.params.heads:
        grid = meta.input_size[0] // head.stride
        per_anchor = 5 + meta.num_classes
        out = rng.randn(batch, len(head.anchors), per_anchor, grid, grid).astype(np.float32) * 3
        out[:, :, 4] += obj_shift  # mostly background, as a detector's objectness is
        if meta.params.activated:
            out = sigmoid(out)
            if not head.new_coords:
                out[:, :, 2:4] = rng.randn(batch, len(head.anchors), 2, grid, grid) * 0.5
        outputs.append(out.reshape(batch, -1, grid, grid))
    return outputs


METAS = {
    "classic": dict(activated=False, heads=[HeadMeta(16, [(10.0, 14.0), (23.0, 27.0), (37.0, 58.0)], 1.05),
                                            HeadMeta(32, [(81.0, 82.0), (135.0, 169.0), (344.0, 319.0)], 1.05)]),
    "new_coords": dict(activated=True, heads=[HeadMeta(8, [(12.0, 16.0), (19.0, 36.0)], 2.0, True),
                                              HeadMeta(16, [(36.0, 75.0), (76.0, 55.0)], 2.0, True)]),
    "activated_classic": dict(activated=True, heads=[HeadMeta(32, [(30.0, 30.0)], 1.0)]),
}


@pytest.mark.parametrize("form", sorted(METAS))
@pytest.mark.parametrize("conf", CONFS)
def test_synthetic_heads_give_the_dense_detections(form, conf):
    meta = yolo_meta(names=["c{}".format(i) for i in range(7)], input_size=(128, 128), **METAS[form])
    outputs = _outputs(meta, 3, seed=int(conf * 1000))
    fast = postprocess(outputs, meta, _infos(3, 128), conf=conf, iou=0.5)
    dense = postprocess(outputs, meta, _infos(3, 128), conf=conf, iou=0.5, dense=True)
    _same(fast, dense)
    assert sum(len(d.scores) for d in dense) > 0 or conf >= 0.5


def test_the_candidates_are_the_dense_rows_that_can_pass():
    meta = yolo_meta(names=["a", "b"], input_size=(64, 64), **METAS["classic"])
    outputs = _outputs(meta, 2, seed=3)
    boxes, scores = decode_yolo(outputs, meta)
    for i, (cand_boxes, cand_scores) in enumerate(decode_candidates(outputs, meta, 0.3)):
        possible = scores[i].max(axis=1) > 0.3
        assert possible.sum() <= len(cand_scores) < scores.shape[1] // 4  # a fraction of the grid is decoded
        rows = np.flatnonzero(np.isin(boxes[i][:, 0], cand_boxes[:, 0]))  # same values, same order
        np.testing.assert_array_equal(boxes[i][rows], cand_boxes)
        np.testing.assert_array_equal(scores[i][rows], cand_scores)
    assert objectness_floor(0.0, False) == -np.inf and objectness_floor(0.5, False) < 0.0
    assert objectness_floor(0.25, True) < 0.25


@pytest.mark.torch
@pytest.mark.fixtures
@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov4-csp", "yolov3-tiny-prn"])
def test_darknet_fixtures_give_the_dense_detections(name, tmp_path):
    import torch

    from edgecsp.darknet import load_darknet, parse_cfg, plan_network
    from edgecsp.export.metadata import meta_from_model
    from tests.darknet import darknet_helpers as helpers

    cfg = helpers.sized_cfg(helpers.fixture_cfg(name), 128, str(tmp_path))
    x = helpers.image_input(128)
    plan = plan_network(parse_cfg(cfg))
    weights = str(tmp_path / "w.weights")
    helpers.calibrated_weights(plan, weights, x)
    model = load_darknet(cfg, weights)
    meta = meta_from_model(model, name)
    with torch.no_grad():
        outputs = [o.numpy() for o in model(torch.from_numpy(x))]
    shifted = [o.copy() for o in outputs]  # and a sparser version: the objectness pushed down
    per_anchor = 5 + meta.num_classes
    for o in shifted:
        view = o.reshape(o.shape[0], -1, per_anchor, o.shape[2], o.shape[3])
        view[:, :, 4] = view[:, :, 4] - 4.0 if not meta.params.activated else view[:, :, 4] ** 4
    for outs in (outputs, shifted):
        for conf in CONFS:
            _same(postprocess(outs, meta, _infos(1, 128), conf=conf),
                  postprocess(outs, meta, _infos(1, 128), conf=conf, dense=True))


@pytest.mark.onnxruntime
@pytest.mark.opencv
def test_the_demo_model_gives_the_dense_detections(demo_onnx, demo_video):
    import cv2

    from edgecsp.backends import open_runner
    from edgecsp.runtime.preprocess import preprocess

    capture = cv2.VideoCapture(demo_video[0])
    frames = [capture.read()[1] for _ in range(6)]
    capture.release()
    with open_runner(demo_onnx) as runner:
        found = 0
        for frame in frames:
            batch, infos = preprocess([frame], runner.meta)
            outputs = runner.infer(batch)
            for conf in (0.001, 0.25):
                fast = postprocess(outputs, runner.meta, infos, conf=conf, iou=0.6)
                _same(fast, postprocess(outputs, runner.meta, infos, conf=conf, iou=0.6, dense=True))
                found += len(fast[0].scores)
    assert found > 6  # the trained model detects the shapes
