"""YOLOv7 ``export.py --grid`` (one ``(1, 6300, 85)`` output of decoded boxes with objectness: layout
``anchor_decoded``) on ``../shared/fixtures/modern/yolov7-tiny_320`` (official YOLOv7 export of a yolov7-tiny with
hot random weights, and the repo's own detections; the folder's README says how they were made).

`edgecsp export --onnx` recognises the file with no layout option; on the fixture's input tensors edgecsp's
post-processing with YOLOv7's rule (``non_max_suppression(conf 0.25, IoU 0.45, multi_label=False)``: best class per
box) gives the repo's detections (boxes within 0.5 px, same classes, scores within 1e-4) in network-input pixels and,
from the jpgs through edgecsp's own preprocessing, in original pixels.
"""
import contextlib
import io
import json
import os

import numpy as np
import pytest

from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import keep_passing
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxInfo, preprocess
from tests.families.fixture_parity import differences, reference, reference_rows, run_onnx
from tests.gates import SHARED_FIXTURES, needs

pytestmark = [pytest.mark.fixtures, pytest.mark.onnx, pytest.mark.onnxruntime]

FIXTURE = os.path.join(SHARED_FIXTURES, "modern", "yolov7-tiny_320")
GRID = "yolov7-tiny_320_grid.onnx"
IMAGES = ("dog", "horses", "person")
COUNTS = {"dog": 41, "horses": 10, "person": 36}  # the README's
NMS = dict(conf=0.25, iou=0.45, max_det=300, multi_label=False)  # YOLOv7's detect.py / test.py
BOX_TOL, SCORE_TOL = 0.5, 1e-4  # the parity criterion
NAMES = ["class{}".format(i) for i in range(80)]
SIZE = (320, 320)


def _identity():
    return LetterboxInfo(1.0, 0, 0, 1.0, 1.0, SIZE, SIZE)


def _reference():
    return reference(FIXTURE)


def _rows(image, source, pixels, clip_to=SIZE):
    return reference_rows(FIXTURE, image, source, pixels, clip_to)


_differences, _run = differences, run_onnx


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """The --grid file through `edgecsp export --onnx FILE --names N` (no layout option): (path, meta, stdout)."""
    needs("fixtures", "onnx", "onnxruntime")
    from edgecsp.backends import read_artefact_meta
    from edgecsp.cli import main

    folder = tmp_path_factory.mktemp("yolov7_grid")
    names = folder / "coco80.txt"
    names.write_text("\n".join(NAMES) + "\n")
    out = str(folder / GRID.replace(".onnx", "-edgecsp.onnx"))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert main(["export", "--onnx", os.path.join(FIXTURE, GRID), "--names", str(names), "-o", out]) == 0
    return out, read_artefact_meta(out), log.getvalue()


@pytest.fixture(scope="module")
def outputs(described):
    """ONNX Runtime outputs of the described model on each image's fixture tensor."""
    import onnxruntime

    path, meta, _ = described
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict((image, session.run(list(meta.outputs), {meta.input_name: np.load(
        os.path.join(FIXTURE, image + ".input.npy"))})) for image in IMAGES)


def test_export_recognises_yolov7_grid(described):
    _, meta, log = described
    assert meta.layout == "anchor_decoded" and meta.params == {"rows": 6300} and meta.outputs == ["output"]
    assert "layout anchor_decoded (YOLOv5 / YOLOv7 --grid" in log
    assert (meta.channel_order, meta.scale, meta.pad_position, meta.pad_value, meta.letterbox) == \
        ("RGB", 1.0 / 255.0, "center", 114, True)
    assert meta.nms == {"multi_label": False, "iou": 0.45}  # YOLOv7's detect.py


@pytest.mark.parametrize("image", IMAGES)
def test_grid_rows_give_the_repos_detections(described, outputs, image):
    """Network-input pixels: edgecsp's best-class NMS of the decoded rows vs the repo's non_max_suppression of the
    PyTorch model and of the same ONNX's output; the fast candidate path gives the dense path's detections."""
    _, meta, _ = described
    det = postprocess(outputs[image], meta, [_identity()], **NMS)[0]
    dense = postprocess(outputs[image], meta, [_identity()], dense=True, **NMS)[0]
    np.testing.assert_array_equal(det.boxes, dense.boxes)
    np.testing.assert_array_equal(det.scores, dense.scores)
    assert len(det.scores) == COUNTS[image]
    box, score = _differences(det, _rows(image, "pytorch_repo_nms", "input"))
    assert box <= BOX_TOL and score <= SCORE_TOL, (box, score)
    box, score = _differences(det, _rows(image, GRID + "+repo_nms", "input"))
    assert box <= 1e-3 and score <= 1e-6, (box, score)  # the same ONNX output: float32 rounding only


@pytest.mark.opencv
@pytest.mark.parametrize("image", IMAGES)
def test_original_pixels_from_the_jpg(described, image):
    """edgecsp's preprocess reproduces the repo's letterbox tensor (the same pixels; x * (1/255) rounds 1 ulp from
    the repo's x / 255), and the boxes map back within the tolerance (the repo's scale_coords uses the unrounded
    padding, 54.02 px for horses, edgecsp the 54 px it padded)."""
    import cv2
    import onnxruntime

    path, meta, _ = described
    frame = cv2.imread(os.path.join(FIXTURE, image + ".jpg"))
    batch, infos = preprocess(frame, meta)
    fixture = np.load(os.path.join(FIXTURE, image + ".input.npy"))
    np.testing.assert_array_equal(np.rint(batch * 255), np.rint(fixture * 255))
    assert np.abs(batch - fixture).max() <= 1e-7
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    det = postprocess(session.run(None, {meta.input_name: batch}), meta, infos, **NMS)[0]
    box, score = _differences(det, _rows(image, "pytorch_repo_nms", "orig", frame.shape[:2]))
    assert box <= BOX_TOL and score <= SCORE_TOL, (box, score)


def test_candidates_equal_the_dense_decode(described, outputs):
    """Only rows whose objectness passes conf are decoded, and they are exactly the dense rows that pass."""
    _, meta, _ = described
    for image in IMAGES:
        for conf in (0.0, 0.01, 0.25, 0.6):
            (dense,) = meta.spec.decode(outputs[image], meta)
            (fast,) = meta.spec.candidates(outputs[image], meta, conf)
            dense = keep_passing(dense, conf)
            np.testing.assert_array_equal(fast.boxes, dense.boxes)
            np.testing.assert_array_equal(fast.scores, dense.scores)
            assert conf == 0.0 or len(fast.scores) < 6300


def test_wrong_class_count_is_refused(described, outputs, tmp_path, capsys):
    """81 names for the 80-class model: export refuses in one line (exit 3, nothing written); metadata with 81
    classes refuses the outputs at run time."""
    from edgecsp.cli import main

    (tmp_path / "names.txt").write_text("\n".join(NAMES + ["extra"]))
    out = tmp_path / "x.onnx"
    assert main(["export", "--onnx", os.path.join(FIXTURE, GRID), "--names", str(tmp_path / "names.txt"),
                 "-o", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert "'output' is shaped (1, 6300, 85) but its anchor_decoded metadata (81 classes" in err
    assert len(err.splitlines()) == 1 and not out.exists()
    meta = described[1]._replace(names=NAMES + ["extra"])
    with pytest.raises(MetadataError, match=r"shaped \(1, 6300, 85\) but the anchor_decoded metadata \(81 classes"):
        postprocess(outputs["dog"], meta, [_identity()], **NMS)


@pytest.mark.openvino
@pytest.mark.opencv
def test_build_and_infer(described, tmp_path):
    """`edgecsp build --target cpu` (OpenVINO FP32) and `edgecsp infer` on dog.jpg with no NMS option: the family's
    rule recorded at import (best class, IoU 0.45) gives the repo's 41 detections in original pixels; with
    --multi-label every class above conf per box (darknet's rule) gives more."""
    from edgecsp.cli import main

    ir, jpg = str(tmp_path / "grid.xml"), os.path.join(FIXTURE, "dog.jpg")
    assert main(["build", described[0], "--target", "cpu", "-o", ir]) == 0
    found = {}
    for rule in ([], ["--multi-label"]):
        jsonl = str(tmp_path / "d{}.jsonl".format(len(rule)))
        assert main(["infer", "--engine", ir, jpg, "--save-json", jsonl, "--no-progress"] + rule) == 0
        ((record,),) = [[json.loads(line) for line in open(jsonl)]]
        found[tuple(rule)] = record["detections"]
    rows = _rows("dog", "pytorch_repo_nms", "orig", (576, 768))
    det = found[()]
    assert [d["class_id"] for d in det] == rows[:, 5].astype(int).tolist()
    assert np.abs(np.array([d["box"] for d in det]) - rows[:, :4]).max() <= BOX_TOL
    assert np.abs(np.array([d["score"] for d in det]) - rows[:, 4]).max() <= SCORE_TOL
    assert len(found[("--multi-label",)]) > len(det)
