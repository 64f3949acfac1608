"""YOLOv7 without ``--grid`` (5-D raw heads: layout yolo_raw, dims nahwc) and with ``--end2end`` for ONNX Runtime
((K, 7) rows: layout detections).

On ``../shared/fixtures/modern/yolov7-tiny_320`` (official YOLOv7 exports of yolov7-tiny with the repo's own
detections): `edgecsp export --onnx` recognises both files with no layout option (yolov7-tiny's anchors, told from
the graph's size), edgecsp's post-processing with YOLOv7's NMS rule (best class per box, conf 0.25, IoU 0.45)
gives the repo's ``non_max_suppression`` detections on the same input tensors (boxes within 0.5 px, same classes,
scores within 1e-4; network-input and original pixels), and the described models build for ONNX Runtime and run
with `edgecsp infer` on a jpg.
"""
import json
import os

import numpy as np
import pytest

from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import get_layout
from edgecsp.runtime.layouts.detections import YOLOV7_END2END
from edgecsp.runtime.layouts.yolo_raw import YOLOV7_ANCHORS, YOLOV7_TINY_ANCHORS
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxInfo
from tests.families.fixture_parity import describe, differences, reference, reference_rows, run_onnx
from tests.gates import SHARED_FIXTURES, needs, needs_import

FIXTURE = os.path.join(SHARED_FIXTURES, "modern", "yolov7-tiny_320")
NOGRID, END2END = "yolov7-tiny_320_nogrid.onnx", "yolov7-tiny_320_end2end_ort.onnx"
IMAGES = ("dog", "horses", "person")
COUNTS = {"dog": 41, "horses": 10, "person": 36}
# YOLOv7's detect.py / test.py: non_max_suppression(conf_thres=0.25, iou_thres=0.45, multi_label=False)
NMS = dict(conf=0.25, iou=0.45, max_det=300, multi_label=False)
BOX_TOL, SCORE_TOL = 0.5, 1e-4  # the parity criterion
NAMES = ["class{}".format(i) for i in range(80)]
# the anchors the fixture's README gives (cfg/deploy/yolov7-tiny.yaml), per stride 8, 16, 32
README_ANCHORS = [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]
HEADS = [("output", (1, 3, 40, 40, 85)), ("286", (1, 3, 20, 20, 85)), ("298", (1, 3, 10, 10, 85))]


def _identity():
    return LetterboxInfo(1.0, 0, 0, 1.0, 1.0, (320, 320), (320, 320))


# -- without the fixture ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parameters,anchors,family", [
    (6219724, YOLOV7_TINY_ANCHORS, "YOLOv7-tiny without --grid"),  # yolov7-tiny, 80 classes
    (36905341, YOLOV7_ANCHORS, "YOLOv7 without --grid"),  # yolov7
    (None, YOLOV7_ANCHORS, "YOLOv7 without --grid"),  # nothing said about the graph: yolov7's
])
def test_yolov7_anchors_follow_the_size_of_the_graph(parameters, anchors, family):
    producer = {"input_size": (320, 320)}
    if parameters:
        producer["graph_parameters"] = parameters
    got = get_layout("yolo_raw").recognise(list(reversed(HEADS)), producer)
    assert got.family.startswith(family) and "--anchors" in got.family
    assert [h["anchors"] for h in got.params["heads"]] == [[list(a) for a in level] for level in anchors]
    assert [h["stride"] for h in got.params["heads"]] == [8, 16, 32] and got.outputs == ["output", "286", "298"]


def test_yolov7_tiny_anchors_are_the_fixture_readmes():
    assert [[list(a) for a in level] for level in YOLOV7_TINY_ANCHORS] == README_ANCHORS


# -- the fixture -------------------------------------------------------------------------------------------------------
def _reference():
    return reference(FIXTURE)


def _rows(image, source, pixels, clip_to=None):
    return reference_rows(FIXTURE, image, source, pixels, clip_to)


_differences, _run = differences, run_onnx


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """Both fixture models through `edgecsp export --onnx FILE` with no layout option: {file: (path, stdout)}."""
    needs("fixtures")
    needs_import("onnx")
    needs_import("onnxruntime")
    return describe(FIXTURE, (NOGRID, END2END), NAMES, tmp_path_factory.mktemp("yolov7"))


@pytest.mark.fixtures
def test_export_recognises_yolov7_without_grid(described):
    from edgecsp.backends import read_artefact_meta

    path, log = described[NOGRID]
    meta = read_artefact_meta(path)
    assert meta.layout == "yolo_raw" and "layout yolo_raw (YOLOv7-tiny without --grid" in log
    assert meta.params.dims == "nahwc" and not meta.params.activated and meta.outputs == ["output", "286", "298"]
    assert [[list(a) for a in h.anchors] for h in meta.params.heads] == README_ANCHORS
    assert [(h.stride, h.scale_x_y, h.new_coords) for h in meta.params.heads] == [(s, 2.0, True) for s in (8, 16, 32)]
    assert (meta.channel_order, meta.scale, meta.pad_position, meta.letterbox) == ("RGB", 1.0 / 255.0, "center", True)


@pytest.mark.fixtures
def test_export_recognises_yolov7_end2end(described):
    from edgecsp.backends import read_artefact_meta

    path, log = described[END2END]
    meta = read_artefact_meta(path)
    assert meta.layout == "detections" and "layout detections (YOLOv7 --end2end (ONNX Runtime))" in log
    assert meta.params == {"columns": YOLOV7_END2END, "nms_applied": True, "rows": None}
    assert meta.outputs == ["output"] and meta.channel_order == "RGB"


@pytest.mark.fixtures
@pytest.mark.onnx
def test_export_refuses_a_wrong_class_count_in_one_line(tmp_path, capsys):
    from edgecsp.cli import main

    (tmp_path / "names.txt").write_text("\n".join(NAMES + ["extra"]))
    out = tmp_path / "x.onnx"
    assert main(["export", "--onnx", os.path.join(FIXTURE, NOGRID), "--names", str(tmp_path / "names.txt"),
                 "-o", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert "'output' is shaped (1, 3, 40, 40, 85) but its yolo_raw metadata (81 classes" in err
    assert len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.fixtures
def test_end2end_rows_of_a_class_the_names_lack_are_refused(described):
    """(K, 7) rows say nothing about the class count: the refusal comes when a row names a class past the names."""
    meta, outputs = _run(described[END2END][0], np.load(os.path.join(FIXTURE, "dog.input.npy")))
    meta = meta._replace(names=NAMES[:40])
    with pytest.raises(MetadataError, match=r"output class \d+ but its metadata has 40 classes") as err:
        postprocess(outputs, meta, [_identity()], **NMS)
    assert "\n" not in str(err.value)


@pytest.mark.fixtures
@pytest.mark.parametrize("image", IMAGES)
def test_nogrid_heads_give_the_repos_detections(described, image):
    """Network-input pixels: edgecsp's 5-D yolo_raw decode + best-class NMS vs the repo's non_max_suppression on
    the PyTorch model and on the documented decode of the same ONNX outputs."""
    meta, outputs = _run(described[NOGRID][0], np.load(os.path.join(FIXTURE, image + ".input.npy")))
    det = postprocess(outputs, meta, [_identity()], **NMS)[0]
    dense = postprocess(outputs, meta, [_identity()], dense=True, **NMS)[0]
    np.testing.assert_array_equal(det.boxes, dense.boxes)
    np.testing.assert_array_equal(det.scores, dense.scores)
    assert len(det.scores) == COUNTS[image]
    for source in ("pytorch_repo_nms", "yolov7-tiny_320_nogrid.onnx+numpy_decode+repo_nms"):
        box, score = _differences(det, _rows(image, source, "input", (320, 320)))
        assert box <= BOX_TOL and score <= SCORE_TOL, (source, box, score)


@pytest.mark.fixtures
@pytest.mark.parametrize("image", IMAGES)
def test_end2end_rows_are_the_repos_detections(described, image):
    meta, outputs = _run(described[END2END][0], np.load(os.path.join(FIXTURE, image + ".input.npy")))
    assert outputs[0].shape == (COUNTS[image], 7)
    det = postprocess(outputs, meta, [_identity()], **NMS)[0]
    for source in ("pytorch_repo_nms", END2END):
        box, score = _differences(det, _rows(image, source, "input", (320, 320)))
        assert box <= BOX_TOL and score <= SCORE_TOL, (source, box, score)


@pytest.mark.fixtures
@pytest.mark.opencv
@pytest.mark.parametrize("name", [NOGRID, END2END])
@pytest.mark.parametrize("image", IMAGES)
def test_original_pixels_from_the_jpg(described, name, image):
    """edgecsp's preprocess reproduces the repo's letterbox tensor; boxes map back within the tolerance (the repo's
    scale_coords uses the unrounded padding, 54.02 px for horses, edgecsp the 54 px it padded)."""
    cv2 = needs_import("cv2")
    from edgecsp.runtime.preprocess import preprocess

    frame = cv2.imread(os.path.join(FIXTURE, image + ".jpg"))
    meta, _ = _run(described[name][0], np.load(os.path.join(FIXTURE, image + ".input.npy")))
    x, infos = preprocess(frame, meta)
    assert float(np.abs(x - np.load(os.path.join(FIXTURE, image + ".input.npy"))).max()) <= 1e-6
    _, outputs = _run(described[name][0], x)
    det = postprocess(outputs, meta, infos, **NMS)[0]
    box, score = _differences(det, _rows(image, "pytorch_repo_nms", "orig"))
    assert box <= BOX_TOL and score <= SCORE_TOL


@pytest.mark.fixtures
@pytest.mark.onnxruntime
@pytest.mark.opencv
@pytest.mark.parametrize("name", [NOGRID, END2END])
def test_build_cpu_ort_and_infer_a_jpg(described, tmp_path, capsys, name):
    """`edgecsp build --target cpu-ort` then `edgecsp infer` on dog.jpg. The end2end model's rows are the repo's
    detections; `infer` runs the multi-label NMS (darknet's and mmdet's rule, not YOLOv7's best class per box),
    so for the raw heads its JSON is checked against edgecsp's own multi-label post-processing of the frame."""
    cv2 = needs_import("cv2")
    from edgecsp.cli import main
    from edgecsp.runtime.preprocess import preprocess

    artefact = str(tmp_path / "m.onnx")
    assert main(["build", described[name][0], "--target", "cpu-ort", "-o", artefact]) == 0
    out = str(tmp_path / "d.jsonl")
    image = os.path.join(FIXTURE, "dog.jpg")
    assert main(["infer", "--engine", artefact, image, "--save-json", out, "--conf", "0.25", "--iou", "0.45",
                 "--no-progress"]) == 0
    with open(out) as f:
        (record,) = [json.loads(line) for line in f]
    found = record["detections"]
    # no NMS option: the raw heads get YOLOv7's own rule (best class per box), recorded at import
    rows = _rows("dog", "pytorch_repo_nms", "orig")
    if name == NOGRID:
        meta, _ = _run(described[name][0], np.load(os.path.join(FIXTURE, "dog.input.npy")))
        assert meta.nms == {"multi_label": False, "iou": 0.45}
        x, infos = preprocess(cv2.imread(image), meta)
        multi = postprocess(_run(described[name][0], x)[1], meta, infos, conf=0.25, iou=0.45, multi_label=True)[0]
        assert len(multi.scores) > COUNTS["dog"]  # several classes per box pass 0.25 with these weights
    assert len(found) == len(rows)
    assert [d["class_id"] for d in found] == rows[:, 5].astype(int).tolist()
    assert np.abs(np.array([d["box"] for d in found]) - rows[:, :4]).max() <= BOX_TOL
    assert np.abs(np.array([d["score"] for d in found]) - rows[:, 4]).max() <= SCORE_TOL
