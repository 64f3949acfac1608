"""RTMDet (mmdet raw heads: layout dist_points; mmdeploy end2end: layout dets_labels).

The decodes on hand-made maps, candidates == dense, the metadata's rules and the refusals; then the fixture
``../shared/fixtures/modern/rtmdet-tiny_320`` (mmdet 3.3.0 + mmdeploy 1.3.1 exports, with mmdet's own detections):
`edgecsp export --onnx` recognises both files with no layout option, edgecsp's post-processing on the same input
tensors gives mmdet's detections (boxes within 0.5 px, same classes, scores within 1e-4; network-input and
original pixels), and the described models build for ONNX Runtime and run with `edgecsp infer` on a jpg.
"""
import json
import os

import numpy as np
import pytest

from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import get_layout, keep_passing, recognise
from edgecsp.runtime.layouts.dist_points import RTMDET_PREPROCESS
from edgecsp.runtime.meta import ModelMeta, check_interface
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxInfo
from tests.families.fixture_parity import describe, differences, reference, reference_rows, run_onnx
from tests.gates import SHARED_FIXTURES, needs_import

FIXTURE = os.path.join(SHARED_FIXTURES, "modern", "rtmdet-tiny_320")
RAW, MMDEPLOY = "rtmdet-tiny_320_raw.onnx", "rtmdet-tiny_320_mmdeploy_ort.onnx"
IMAGES = ("dog", "horses", "person")
NMS = dict(conf=0.25, iou=0.65, max_det=300)  # the fixture's test_cfg: score_thr, nms iou_threshold, max_per_img
BOX_TOL, SCORE_TOL = 0.5, 1e-4  # the parity criterion
NAMES = ["class{}".format(i) for i in range(80)]
LEVELS = [{"stride": 8, "cls": 0, "box": 3}, {"stride": 16, "cls": 1, "box": 4}, {"stride": 32, "cls": 2, "box": 5}]


def _meta(layout, params, names=NAMES, size=(320, 320), outputs=(), **fields):
    return ModelMeta.from_dict(dict(format=2, names=list(names), input_size=list(size), layout=layout, params=params,
                                    outputs=list(outputs), **fields))


def _identity(size=(320, 320)):
    return LetterboxInfo(1.0, 0, 0, 1.0, 1.0, tuple(size), tuple(size))


def _random_maps(rng, batch, classes, size, strides, shift=-6.0):
    cls, box = [], []
    for stride in strides:
        h, w = size[0] // stride, size[1] // stride
        cls.append((rng.randn(batch, classes, h, w) * 3 + shift).astype(np.float32))
        box.append((rng.rand(batch, 4, h, w) * 6 * stride).astype(np.float32))
    return cls + box


# -- dist_points on hand-made maps ---------------------------------------------------------------------------------
def test_dist_points_decodes_as_mmdet_distance2bbox():
    """Point of cell (x, y) = ((x + offset) * s, (y + offset) * s); box = point -/+ (l, t, r, b); σ scores."""
    cls = np.full((1, 2, 2, 3), -20.0, np.float32)
    cls[0, 1, 1, 2] = 0.0  # cell (x=2, y=1), class 1: σ(0) = 0.5
    box = np.zeros((1, 4, 2, 3), np.float32)
    box[0, :, 1, 2] = [5.0, 6.0, 7.0, 8.0]
    params = {"levels": [{"stride": 8, "cls": 0, "box": 1}], "clip": False}
    rows = get_layout("dist_points").decode([cls, box], _meta("dist_points", params, ["a", "b"], (16, 24)))[0]
    assert rows.boxes.shape == (6, 4) and rows.scores.shape == (6, 2) and rows.classes is None
    np.testing.assert_array_equal(rows.boxes[5], [16 - 5, 8 - 6, 16 + 7, 8 + 8])  # row-major: cell 5 = (2, 1)
    assert rows.scores[5, 1] == np.float32(0.5) and rows.scores[5, 0] < 1e-8
    np.testing.assert_array_equal(rows.boxes[0], [0, 0, 0, 0])
    # FCOS's point offset (cell centres) and distances in strides; then mmdet's clamp to the (padded) input
    params.update(offset=0.5, distances="strides")
    rows = get_layout("dist_points").decode([cls, box], _meta("dist_points", params, ["a", "b"], (16, 24)))[0]
    np.testing.assert_array_equal(rows.boxes[5], [20 - 40, 12 - 48, 20 + 56, 12 + 64])
    params.update(clip=True)
    rows = get_layout("dist_points").decode([cls, box], _meta("dist_points", params, ["a", "b"], (16, 24)))[0]
    np.testing.assert_array_equal(rows.boxes[5], [0, 0, 24, 16])


@pytest.mark.parametrize("activated", [False, True])
@pytest.mark.parametrize("conf", [0.001, 0.1, 0.25, 0.6, 0.95])
def test_dist_points_candidates_are_the_dense_rows(conf, activated):
    rng = np.random.RandomState(int(conf * 1000) + activated)
    outputs = _random_maps(rng, 2, 5, (96, 128), (8, 16, 32))
    if activated:
        outputs[:3] = [1.0 / (1.0 + np.exp(-o)) for o in outputs[:3]]
    meta = _meta("dist_points", {"levels": LEVELS, "activated": activated}, NAMES[:5], (96, 128))
    layout = meta.spec
    dense = [keep_passing(d, conf) for d in layout.decode(outputs, meta)]
    fast = layout.candidates(outputs, meta, conf)
    for a, b in zip(fast, dense):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
    total = sum(len(d.scores) for d in dense)
    assert 0 < total < 2 * sum(o.shape[2] * o.shape[3] for o in outputs[:3]) or conf >= 0.6
    infos = [_identity((96, 128))] * 2
    for x, y in zip(postprocess(outputs, meta, infos, conf=conf, iou=0.65),
                    postprocess(outputs, meta, infos, conf=conf, iou=0.65, dense=True)):
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.class_ids, y.class_ids)


def test_dist_points_metadata_round_trips_and_checks_the_model():
    meta = _meta("dist_points", {"levels": LEVELS}, outputs=["c8", "c16", "c32", "b8", "b16", "b32"],
                 **RTMDET_PREPROCESS)
    again = ModelMeta.from_json(meta.to_json())
    assert again == meta and again.params["offset"] == 0.0 and again.params["clip"] is True
    shapes = [(1, 80, 40, 40), (1, 80, 20, 20), (1, 80, 10, 10), (1, 4, 40, 40), (1, 4, 20, 20), (1, 4, 10, 10)]
    outputs = list(zip(meta.outputs, shapes))
    assert check_interface(meta, "images", (1, 3, 320, 320), outputs, "m.onnx") == meta.outputs
    wrong = list(zip(meta.outputs, [(1, 79) + s[2:] if s[1] == 80 else s for s in shapes]))
    with pytest.raises(MetadataError, match=r"'c8' is shaped \(1, 79, 40, 40\) .* needs the stride-8 \(N, classes, "
                                            r"H, W\) class map shaped \(\?, 80, 40, 40\)") as err:
        check_interface(meta, "images", (1, 3, 320, 320), wrong, "m.onnx")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("levels,message", [
    ([{"stride": 8, "cls": 0, "box": 0}], "not each output once"),
    ([{"stride": 8, "cls": 0, "box": 1}, {"stride": 16, "cls": 2, "box": 5}], "not each output once"),
    ([{"stride": 640, "cls": 0, "box": 1}], "larger than the input"),
])
def test_dist_points_refuses_contradicting_levels(levels, message):
    with pytest.raises(MetadataError, match=message):
        _meta("dist_points", {"levels": levels})


@pytest.mark.parametrize("shapes", [
    [(1, 80, 40, 40), (1, 4, 40, 40)],  # one level: too little to tell
    [(1, 80, 40, 40), (1, 80, 20, 20), (1, 4, 40, 40)],  # odd count
    [(1, 80, 40, 40), (1, 80, 20, 20), (1, 4, 40, 40), (1, 4, 40, 40)],  # no distance map for 20x20
    [(1, 4, 40, 40), (1, 4, 20, 20), (1, 4, 40, 40), (1, 4, 20, 20)],  # 4 classes: ambiguous
    [(1, 80, 40, 40), (1, 80, 10, 10), (1, 4, 40, 40), (1, 4, 10, 10)],  # strides 8, 32: not halving
    [(1, 80, 40, 40), (1, 81, 20, 20), (1, 4, 40, 40), (1, 4, 20, 20)],  # class counts differ
    [(1, 32, 40, 40), (1, 32, 20, 20), (1, 80, 40, 40), (1, 80, 20, 20)],  # no 4-channel maps (a GFL head)
    [(1, 80, 40, 40, 1), (1, 80, 20, 20, 1), (1, 4, 40, 40, 1), (1, 4, 20, 20, 1)],
])
def test_dist_points_recognises_only_its_own_outputs(shapes):
    outputs = [("o{}".format(i), s) for i, s in enumerate(shapes)]
    assert get_layout("dist_points").recognise(outputs, {"input_size": (320, 320)}) is None


def test_dist_points_recognises_any_output_order():
    shapes = [(1, 4, 20, 20), (1, 80, 40, 40), (1, 4, 40, 40), (1, 80, 20, 20)]
    outputs = [("o{}".format(i), s) for i, s in enumerate(shapes)]
    layout, got = recognise(outputs, {"input_size": (320, 320)})
    assert layout.name == "dist_points" and got.outputs == ["o0", "o1", "o2", "o3"]
    assert got.params["levels"] == [{"stride": 8, "cls": 1, "box": 2}, {"stride": 16, "cls": 3, "box": 0}]
    assert got.preprocess["channel_order"] == "BGR" and "RTMDet" in got.family


def test_dist_points_from_options_takes_a_4_class_model_in_mmdet_order():
    shapes = [(1, 4, 40, 40), (1, 4, 20, 20), (1, 4, 40, 40), (1, 4, 20, 20)]
    params = get_layout("dist_points").from_options({"activated": True}, [("o%d" % i, s) for i, s in
                                                                          enumerate(shapes)], (320, 320))
    assert params["levels"] == [{"stride": 8, "cls": 0, "box": 2}, {"stride": 16, "cls": 1, "box": 3}]
    assert _meta("dist_points", params, NAMES[:4]).params["activated"] is True


# -- dets_labels on hand-made rows ---------------------------------------------------------------------------------
def test_dets_labels_thresholds_without_nms_and_drops_padding():
    dets = np.array([[[10, 10, 50, 50, 0.9], [11, 11, 51, 51, 0.8], [-5, 0, 20, 30, 0.3], [0, 0, 0, 0, 0]],
                     [[1, 2, 3, 4, 0.7], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]], np.float32)
    labels = np.array([[2, 2, 1, 0], [0, 0, 0, 0]], np.int64)
    meta = _meta("dets_labels", {}, ["a", "b", "c"], (64, 64), outputs=["dets", "labels"])
    rows = meta.spec.decode({"labels": labels, "dets": dets}, meta)
    assert [len(r.scores) for r in rows] == [3, 1] and rows[0].classes.tolist() == [2, 2, 1]
    found = postprocess([dets, labels], meta, [_identity((64, 64))] * 2, conf=0.25, iou=0.45, max_det=2)
    # the model's NMS stands: two overlapping boxes of one class both stay; the cap keeps the best two
    assert found[0].scores.tolist() == pytest.approx([0.9, 0.8]) and found[0].class_ids.tolist() == [2, 2]
    assert found[1].boxes.tolist() == [[1, 2, 3, 4]]
    labels[0, 1] = 3
    with pytest.raises(MetadataError, match="output class 3 but its metadata has 3 classes"):
        meta.spec.decode([dets, labels], meta)
    with pytest.raises(MetadataError, match="do not belong together"):
        meta.spec.decode([dets, labels[:, :3]], meta)


def test_dets_labels_recognition():
    layout, got = recognise([("labels", (1, None)), ("dets", (1, None, 5))], {"input_size": (320, 320)})
    assert layout.name == "dets_labels" and got.outputs == ["dets", "labels"] and got.params == {"rows": None}
    assert got.preprocess == RTMDET_PREPROCESS and "mmdeploy" in got.family
    assert get_layout("dets_labels").recognise([("dets", (1, 100, 5)), ("labels", (1, 99))], {}) is None
    assert get_layout("dets_labels").recognise([("dets", (1, 100, 6)), ("labels", (1, 100))], {}) is None
    assert get_layout("dets_labels").recognise([("dets", (1, 100, 5))], {}) is None


# -- the fixture: real mmdet / mmdeploy exports -----------------------------------------------------------------------
def _reference():
    return reference(FIXTURE)


def _rows(image, source, pixels, clip_to):
    return reference_rows(FIXTURE, image, source, pixels, clip_to)


_differences, _run = differences, run_onnx


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """Both fixture models through `edgecsp export --onnx FILE` with no layout option: {file: (path, stdout)}."""
    from tests.gates import needs

    needs("fixtures")
    needs_import("onnx")
    needs_import("onnxruntime")
    return describe(FIXTURE, (RAW, MMDEPLOY), NAMES, tmp_path_factory.mktemp("rtmdet"))


@pytest.mark.fixtures
@pytest.mark.parametrize("name,layout,family", [(RAW, "dist_points", "mmdet RTMDet (raw heads"),
                                                (MMDEPLOY, "dets_labels", "mmdeploy end2end dets/labels")])
def test_export_recognises_the_files_with_no_layout_option(described, name, layout, family):
    from edgecsp.backends import read_artefact_meta

    path, log = described[name]
    meta = read_artefact_meta(path)
    assert meta.layout == layout and meta.model.startswith(family) and "layout {}".format(layout) in log
    assert (meta.channel_order, meta.scale, meta.pad_position, meta.pad_value) == ("BGR", 1.0, "top_left", 114)
    assert meta.mean == (103.53, 116.28, 123.675) and meta.std == (57.375, 57.12, 58.395)
    if layout == "dist_points":
        assert meta.outputs == ["cls_s8", "cls_s16", "cls_s32", "box_s8", "box_s16", "box_s32"]
        assert meta.params["levels"] == LEVELS and meta.params["clip"] and not meta.params["activated"]
    else:
        assert meta.outputs == ["dets", "labels"] and meta.params == {"rows": None}


@pytest.mark.fixtures
@pytest.mark.onnx
@pytest.mark.parametrize("names,message", [
    (NAMES[:79], "'cls_s8' is shaped (1, 80, 40, 40) but its dist_points metadata (79 classes"),
])
def test_export_refusals_are_one_line(tmp_path, capsys, names, message):
    """Names that do not fit the class maps are refused (without --names the maps say 80 classes: see below)."""
    from edgecsp.cli import main

    argv = ["export", "--onnx", os.path.join(FIXTURE, RAW), "-o", str(tmp_path / "x.onnx")]
    if names:
        (tmp_path / "names.txt").write_text("\n".join(names))
        argv += ["--names", str(tmp_path / "names.txt")]
    assert main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.fixtures
@pytest.mark.opencv
@pytest.mark.parametrize("image", IMAGES)
def test_preprocess_reproduces_the_mmdet_input_tensor(described, image):
    cv2 = needs_import("cv2")
    from edgecsp.backends import read_artefact_meta
    from edgecsp.runtime.preprocess import preprocess

    meta = read_artefact_meta(described[RAW][0])
    x, infos = preprocess(cv2.imread(os.path.join(FIXTURE, image + ".jpg")), meta)
    want = np.load(os.path.join(FIXTURE, image + ".input.npy"))
    assert x.shape == want.shape and float(np.abs(x - want).max()) <= 1e-5
    info = _reference()["images"][image + ".jpg"]["preprocess"]
    assert (infos[0].pad_x, infos[0].pad_y) == (info["pad"]["left"], info["pad"]["top"]) == (0, 0)


@pytest.mark.fixtures
@pytest.mark.parametrize("image", IMAGES)
def test_raw_heads_give_mmdets_detections(described, image):
    """Network-input pixels: edgecsp's dist_points decode + multi-label NMS vs mmdet's inference_detector and vs
    mmdet's predict_by_feat on the same ONNX outputs."""
    meta, outputs = _run(described[RAW][0], np.load(os.path.join(FIXTURE, image + ".input.npy")))
    det = postprocess(outputs, meta, [_identity()], **NMS)[0]
    dense = postprocess(outputs, meta, [_identity()], dense=True, **NMS)[0]
    np.testing.assert_array_equal(det.boxes, dense.boxes)
    np.testing.assert_array_equal(det.scores, dense.scores)
    assert len(det.scores) == {"dog": 35, "horses": 12, "person": 35}[image]
    for source in ("mmdet_inference_detector", "rtmdet-tiny_320_raw.onnx+mmdet_predict_by_feat"):
        box, score = _differences(det, _rows(image, source, "input", (320, 320)))
        assert box <= BOX_TOL and score <= SCORE_TOL, (source, box, score)


@pytest.mark.fixtures
@pytest.mark.opencv
@pytest.mark.parametrize("image", IMAGES)
def test_raw_heads_in_original_pixels(described, image):
    """From the jpg through edgecsp's own preprocess: mmdet maps back with a per-axis scale factor (horses: 0.41397
    x 0.41406), edgecsp with the single letterbox scale; the difference stays far under the tolerance."""
    cv2 = needs_import("cv2")
    from edgecsp.runtime.preprocess import preprocess

    frame = cv2.imread(os.path.join(FIXTURE, image + ".jpg"))
    meta, _ = _run(described[RAW][0], np.load(os.path.join(FIXTURE, image + ".input.npy")))
    x, infos = preprocess(frame, meta)
    _, outputs = _run(described[RAW][0], x)
    det = postprocess(outputs, meta, infos, **NMS)[0]
    box, score = _differences(det, _rows(image, "mmdet_inference_detector", "orig", frame.shape[:2]))
    assert box <= BOX_TOL and score <= SCORE_TOL


@pytest.mark.fixtures
@pytest.mark.parametrize("image", IMAGES)
def test_mmdeploy_rows_are_thresholded_as_mmdeploy_does(described, image):
    """mmdeploy's own NMS ran in the graph (on unclamped boxes: 15 boxes on horses where mmdet finds 12); edgecsp
    keeps its rows above 0.25, drops the padding row, and clips to the frame."""
    meta, outputs = _run(described[MMDEPLOY][0], np.load(os.path.join(FIXTURE, image + ".input.npy")))
    assert outputs[0].shape[1] == {"dog": 36, "horses": 16, "person": 36}[image]  # + mmdeploy's padding row
    det = postprocess(outputs, meta, [_identity()], **NMS)[0]
    box, score = _differences(det, _rows(image, MMDEPLOY, "input", (320, 320)))
    assert box <= BOX_TOL and score <= SCORE_TOL
    assert len(det.scores) == {"dog": 35, "horses": 15, "person": 35}[image]
    h0, w0 = _reference()["images"][image + ".jpg"]["preprocess"]["orig_hw"]
    scale = min(320.0 / h0, 320.0 / w0)  # edgecsp's letterbox, padded at the bottom/right (pad 0, 0)
    orig = postprocess(outputs, meta, [LetterboxInfo(scale, 0, 0, scale, scale, (h0, w0), (320, 320))], **NMS)[0]
    box, score = _differences(orig, _rows(image, MMDEPLOY, "orig", (h0, w0)))
    assert box <= BOX_TOL and score <= SCORE_TOL


@pytest.mark.fixtures
@pytest.mark.onnxruntime
@pytest.mark.opencv
@pytest.mark.parametrize("name,source", [(RAW, "mmdet_inference_detector"), (MMDEPLOY, MMDEPLOY)])
def test_build_cpu_ort_and_infer_a_jpg(described, tmp_path, capsys, name, source):
    """`edgecsp build --target cpu-ort` (uint8 input: the mean/std run in the graph) then `edgecsp infer` on
    horses.jpg: its JSON detections are the reference's in original pixels."""
    from edgecsp.cli import main

    artefact = str(tmp_path / "m.onnx")
    assert main(["build", described[name][0], "--target", "cpu-ort", "-o", artefact]) == 0
    out = str(tmp_path / "d.jsonl")
    assert main(["infer", "--engine", artefact, os.path.join(FIXTURE, "horses.jpg"), "--save-json", out,
                 "--conf", "0.25", "--iou", "0.65", "--no-progress"]) == 0
    with open(out) as f:
        (record,) = [json.loads(line) for line in f]
    rows = _rows("horses", source, "orig", (512, 773))
    found = record["detections"]
    assert len(found) == len(rows) == {RAW: 12, MMDEPLOY: 15}[name]
    assert [d["class_id"] for d in found] == rows[:, 5].astype(int).tolist()
    assert np.abs(np.array([d["box"] for d in found]) - rows[:, :4]).max() <= BOX_TOL
    assert np.abs(np.array([d["score"] for d in found]) - rows[:, 4]).max() <= SCORE_TOL


@pytest.mark.fixtures
@pytest.mark.onnx
def test_without_names_the_class_maps_say_how_many_classes(tmp_path, capsys):
    from edgecsp.backends import read_artefact_meta
    from edgecsp.cli import main

    for model, code in ((RAW, 0), (MMDEPLOY, 3)):  # mmdeploy's rows do not say how many classes there are
        out = tmp_path / (model + ".x.onnx")
        assert main(["export", "--onnx", os.path.join(FIXTURE, model), "-o", str(out)]) == code
        captured = capsys.readouterr()
        if code == 0:
            meta = read_artefact_meta(str(out))
            assert meta.names == ["class{}".format(i) for i in range(80)]
            assert "no class names in the file: 80 classes named class0..class79" in captured.out
        else:
            assert "does not say its class names: pass --names FILE" in captured.err and not out.exists()
