"""An imported model goes through every command (issue 17, item 4), on two layouts whose families' tools cannot
run in CI: YOLOv7-tiny `--grid` (anchor_decoded: the decode in the graph, which INT8 keeps in float) and RTMDet-tiny
raw heads (dist_points: mean/std preprocessing, which the uint8 builds put in the graph).

export --onnx (no options) -> build cpu fp32 / fp16 / int8, cpu-ort, tx2 and orin bundles -> infer -> eval against
the family's own detections taken as ground truth -> compare -> bench -> package --triton; package --deepstream
is refused in one line. Real commands through ``edgecsp.cli.main``.
"""
import json
import os
import shutil

import pytest

from tests.gates import SHARED_FIXTURES, needs_import

pytestmark = [pytest.mark.fixtures, pytest.mark.onnx, pytest.mark.onnxruntime, pytest.mark.openvino,
              pytest.mark.opencv, pytest.mark.nncf]

IMAGES = ("dog", "horses", "person")
MODELS = {  # fixture folder, ONNX, the reference detections (original pixels) of each image, the detections key
    "yolov7-grid": ("yolov7-tiny_320", "yolov7-tiny_320_grid.onnx", "pytorch_repo_nms"),
    "rtmdet-raw": ("rtmdet-tiny_320", "rtmdet-tiny_320_raw.onnx", "mmdet_inference_detector"),
}


def _reference_rows(folder, image, key):
    with open(os.path.join(SHARED_FIXTURES, "modern", folder, "reference.json")) as handle:
        reference = json.load(handle)
    detections = reference["images"][image + ".jpg"]["detections"][key]
    return detections["orig"] if isinstance(detections, dict) else detections


def _coco(folder, key, out_dir):
    """The family's own detections of the three images as COCO ground truth (80 classes)."""
    cv2 = needs_import("cv2")
    images, annotations = [], []
    for number, image in enumerate(IMAGES, 1):
        path = os.path.join(SHARED_FIXTURES, "modern", folder, image + ".jpg")
        shutil.copy(path, out_dir)
        height, width = cv2.imread(path).shape[:2]
        images.append({"id": number, "file_name": image + ".jpg", "width": width, "height": height})
        for x1, y1, x2, y2, _, label in _reference_rows(folder, image, key):
            x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(width, x2), min(height, y2)
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": int(label) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i + 1, "name": "class{}".format(i)} for i in range(80)]
    path = os.path.join(out_dir, "annotations.json")
    with open(path, "w") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
    return path


def _one_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_command_runs_on_an_imported_model(name, tmp_path, capsys):
    from edgecsp.backends import read_artefact_meta
    from edgecsp.cli import main

    folder, onnx_name, key = MODELS[name]
    data = tmp_path / "data"
    data.mkdir()
    annotations = _coco(folder, key, str(data))
    model = str(tmp_path / "m.onnx")
    assert main(["export", "--onnx", os.path.join(SHARED_FIXTURES, "modern", folder, onnx_name), "-o", model]) == 0
    meta = read_artefact_meta(model)
    assert meta.num_classes == 80 and meta.names[79] == "class79"  # the class count the outputs say
    engines = tmp_path / "engines"
    built = {}
    for target, precision, suffix in (("cpu", "fp32", ".xml"), ("cpu", "fp16", ".xml"), ("cpu", "int8", ".xml"),
                                      ("cpu-ort", "fp32", ".onnx")):
        out = str(engines / "m-{}-{}{}".format(target, precision, suffix))
        argv = ["build", model, "--target", target, "--precision", precision, "-o", out]
        if precision == "int8":
            argv += ["--calib", str(data), "--count", "3"]
        assert main(argv) == 0, capsys.readouterr().err
        built[(target, precision)] = out
    kept = read_artefact_meta(built[("cpu", "int8")]).extra["calibration"]
    assert kept  # the INT8 IR records its calibration; the decode tail's float ops are listed in its provenance
    with open(os.path.splitext(built[("cpu", "int8")])[0] + ".calibration.json") as handle:
        record = json.load(handle)
    assert any("Conv" in n for n in record["algorithm"]["kept_float"])
    for target in ("tx2", "orin"):
        assert main(["build", model, "--target", target, "-o", str(engines / ("m-" + target))]) == 0
    capsys.readouterr()

    counts = {}
    for artefact in built.values():
        out = str(tmp_path / (os.path.basename(artefact) + ".jsonl"))
        assert main(["infer", "--engine", artefact, str(data), "--save-json", out, "--no-progress"]) == 0
        with open(out) as handle:
            counts[artefact] = [len(json.loads(line)["detections"]) for line in handle]
    want = [len(_reference_rows(folder, image, key)) for image in IMAGES]
    # the folder's images in name order (dog, horses, person); fp32 finds the family's own detections
    assert counts[built[("cpu", "fp32")]] == want and counts[built[("cpu-ort", "fp32")]] == want, counts
    capsys.readouterr()

    report = str(tmp_path / "eval.json")
    assert main(["eval", "--engine", built[("cpu", "fp32")], "--data", annotations, "--baseline",
                 built[("cpu", "int8")], "--report", report, "--no-progress", "--conf", "0.25"]) == 0
    with open(report) as handle:
        scores = json.load(handle)
    assert scores["artefact"]["map50"] >= 0.95, scores["artefact"]["map50"]  # FP32 reproduces the family's boxes
    capsys.readouterr()

    assert main(["compare", "-e", built[("cpu", "fp32")], "-b", built[("cpu-ort", "fp32")], "--source", str(data),
                 "--count", "3", "--atol", "1e-2", "--rtol", "1e-2"]) == 0
    assert main(["bench", "--engine", built[("cpu", "fp32")], "--seconds", "0.3", "--warmup", "1"]) == 0
    assert main(["package", "--triton", str(tmp_path / "repo"), "-e", built[("cpu", "fp32")], "--model", "m"]) == 0
    assert os.path.isfile(str(tmp_path / "repo" / "m" / "config.pbtxt"))
    capsys.readouterr()
    assert main(["package", "--deepstream", str(tmp_path / "ds"), "-e", model]) == 5
    assert "DeepStream" in _one_line(capsys) and not os.path.exists(str(tmp_path / "ds"))
