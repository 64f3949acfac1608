"""Ultralytics YOLOv8n and YOLO26n through edgecsp: its default export (layout anchor_free), ``export(nms=True)``
and the end-to-end YOLO26 export (layout detections).

The exports are real: Ultralytics 8.4 builds the models from its yaml and exports them offline, with weights that
give 10-40 detections per image (``tests/families/ultralytics_models.py``). Every comparison is against
Ultralytics' own code on the same tensors: its ``non_max_suppression`` as its DetectionPredictor calls it (best
class, conf 0.25, IoU 0.7, max_det 300) and, in original pixels, its ``LetterBox`` and ``scale_boxes``.
"""
import ast
import json
import os
import tempfile

import numpy as np
import pytest

from edgecsp.backends import read_artefact_meta
from edgecsp.cli import main
from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import get_layout, keep_passing
from edgecsp.runtime.meta import ModelMeta
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxInfo, preprocess
from tests.families import ultralytics_models as models
from tests.gates import SHARED_FIXTURES, needs, optional

# Ultralytics reads these when it is first imported (the gate check imports it): nothing downloaded or installed,
# its settings file in the temp folder instead of the home directory
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "edgecsp-ultralytics-settings"))
# Importing Ultralytics also sets OMP_NUM_THREADS=1 (and log levels) for the whole process: torch is imported first
# so that it keeps its threads, and every test here puts the variables back (_environment_as_it_was)
optional("torch")
ENVIRONMENT = dict(os.environ)
SET_BY_ULTRALYTICS = ("OMP_NUM_THREADS", "NUMEXPR_MAX_THREADS", "TF_CPP_MIN_LOG_LEVEL", "TORCH_CPP_LOG_LEVEL",
                      "KINETO_LOG_LEVEL")

IMAGE_DIR = os.path.join(SHARED_FIXTURES, "modern", "yolov7-tiny_320")
IMAGES = ("dog", "horses", "person")
SIZE = models.IMGSZ
BOX_PX, SCORE_ABS, MIN_DETECTIONS = 0.5, 1e-4, 10  # the parity criterion
NAMES = ["thing {}".format(i) for i in range(80)]
END_TO_END = ("yolov8n-nms", "yolo26n-e2e")
# what `edgecsp export --onnx` must make of each export with no options: layout, family, parameters
EXPECTED = {
    "yolov8n": ("anchor_free", "Ultralytics YOLOv8n (detect)", {"transposed": False, "points": 2100}),
    "yolo26n": ("anchor_free", "Ultralytics YOLO26n (detect)", {"transposed": False, "points": 2100}),
    "yolov8n-nms": ("detections", "Ultralytics YOLOv8n export(nms=True) (detect)",
                    {"columns": ["x1", "y1", "x2", "y2", "score", "class"], "nms_applied": True, "rows": 300}),
    "yolo26n-e2e": ("detections", "Ultralytics YOLO26n end-to-end (detect)",
                    {"columns": ["x1", "y1", "x2", "y2", "score", "class"], "nms_applied": True, "rows": 300}),
}
ULTRALYTICS = (pytest.mark.ultralytics, pytest.mark.fixtures, pytest.mark.torch, pytest.mark.onnx,
               pytest.mark.onnxruntime, pytest.mark.opencv)


def ultralytics_test(test):
    for mark in ULTRALYTICS:
        test = mark(test)
    return test


def image(name):
    import cv2

    return cv2.imread(os.path.join(IMAGE_DIR, name + ".jpg"))


@pytest.fixture(autouse=True)
def _environment_as_it_was():
    yield
    for key in SET_BY_ULTRALYTICS:
        if key in ENVIRONMENT:
            os.environ[key] = ENVIRONMENT[key]
        else:
            os.environ.pop(key, None)


IDENTITY = LetterboxInfo(1.0, 0, 0, 1.0, 1.0, (SIZE, SIZE), (SIZE, SIZE))  # network-input pixels, clipped to them


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """The four Ultralytics exports, made once (about 25 s): {name: path, "report": what make_hot chose}."""
    needs(*[m.name for m in ULTRALYTICS])
    folder = str(tmp_path_factory.mktemp("ultralytics"))
    return models.make_exports(folder, [os.path.join(IMAGE_DIR, n + ".jpg") for n in IMAGES])


@pytest.fixture(scope="session")
def described(exports, tmp_path_factory):
    """Each export described by `edgecsp export --onnx` with no option: {name: (path, ModelMeta)}."""
    folder = tmp_path_factory.mktemp("described")
    found = {}
    for name in EXPECTED:
        path = str(folder / (name + ".onnx"))
        assert main(["export", "--onnx", exports[name], "-o", path]) == 0
        found[name] = (path, read_artefact_meta(path))
    return found


@pytest.fixture(scope="session")
def outputs(exports):
    """ONNX Runtime outputs of each original export on Ultralytics' own input tensor: {name: {image: array}}."""
    import onnxruntime

    tensors = dict((n, models.ultralytics_letterbox(image(n))[0]) for n in IMAGES)
    found = {}
    for name in EXPECTED:
        session = onnxruntime.InferenceSession(exports[name], providers=["CPUExecutionProvider"])
        found[name] = dict((n, session.run(None, {"images": x})[0]) for n, x in tensors.items())
    return found


def reference(output, name):
    """Ultralytics' detections (K, 6) in network-input pixels, clipped to the input as its scale_boxes clips."""
    rows = models.ultralytics_nms(output, end2end=name in END_TO_END)[0]
    rows[:, :4] = rows[:, :4].clip(0, SIZE)
    return rows


def assert_same(det, ref, what):
    """edgecsp's Detections equal Ultralytics' rows: count (10+), classes, boxes within 0.5 px, scores 1e-4."""
    assert len(ref) >= MIN_DETECTIONS, "{}: only {} reference detections".format(what, len(ref))
    assert len(det.scores) == len(ref), "{}: {} detections, Ultralytics {}".format(what, len(det.scores), len(ref))
    assert np.array_equal(det.class_ids, ref[:, 5].astype(np.int64)), what
    box, score = np.abs(det.boxes - ref[:, :4]).max(), np.abs(det.scores - ref[:, 4]).max()
    assert box <= BOX_PX and score <= SCORE_ABS, "{}: box {} px, score {}".format(what, box, score)
    return box, score


@ultralytics_test
def test_the_weights_give_real_detections(exports):
    """What make_hot chose: 10-40 detections on every image for each head, no deciding score near the threshold."""
    report = exports["report"]
    heads = [k for k in report if k.endswith(("one2many", "one2one"))]
    assert sorted(heads) == ["yolo26n.yaml one2many", "yolo26n.yaml one2one", "yolov8n.yaml one2many"]
    for head in heads:
        assert all(models.TARGET[0] <= c <= models.TARGET[1] for c in report[head]["detections"]), report[head]
        assert report[head]["score_margin"] >= 2e-3, report[head]


# -- 1. import with no options ---------------------------------------------------------------------------------------
@ultralytics_test
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_export_recognises_ultralytics_without_options(exports, name, tmp_path, capsys):
    import onnx

    out = str(tmp_path / "described.onnx")
    assert main(["export", "--onnx", exports[name], "-o", out]) == 0
    layout, family, params = EXPECTED[name]
    assert "layout {} ({})".format(layout, family) in capsys.readouterr().out
    meta = read_artefact_meta(out)
    producer = dict((p.key, p.value) for p in onnx.load(exports[name]).metadata_props)
    written = ast.literal_eval(producer["names"])
    assert meta.names == [written[i] for i in range(len(written))] == NAMES  # Ultralytics' names, in order
    assert (meta.layout, meta.model, meta.params) == (layout, family, params)
    assert (meta.input_size, meta.letterbox, meta.pad_value, meta.pad_position, meta.channel_order) == \
        ((SIZE, SIZE), True, 114, "center", "RGB")
    assert meta.scale == pytest.approx(1 / 255.0) and not meta.normalized
    assert meta.nms == {"multi_label": False, "iou": 0.7}  # its predictor's rule, used where the user sets none


@ultralytics_test
def test_exports_are_what_the_layouts_say(exports):
    """Ultralytics 8.4's own word in each file: YOLO26 exports one-to-many (anchor_free) unless nms=False."""
    import onnx

    for name, (layout, _, params) in EXPECTED.items():
        model = onnx.load(exports[name])
        props = dict((p.key, p.value) for p in model.metadata_props)
        dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
        assert props["author"] == "Ultralytics" and props["task"] == "detect"
        assert props["end2end"] == ("True" if name == "yolo26n-e2e" else "False")
        assert ast.literal_eval(props["args"])["nms"] is {"yolov8n-nms": True, "yolo26n-e2e": False}.get(name)
        assert dims == ([1, 84, 2100] if layout == "anchor_free" else [1, 300, 6])
        ops = set(n.op_type for n in model.graph.node)
        assert ("NonMaxSuppression" in ops) == (name == "yolov8n-nms") and ("TopK" in ops) == (name == "yolo26n-e2e")


# -- 2. parity with Ultralytics' post-processing ---------------------------------------------------------------------
@ultralytics_test
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detections_equal_ultralytics_in_input_pixels(described, outputs, name):
    meta = described[name][1]
    for n in IMAGES:
        out = outputs[name][n]
        fast = postprocess([out], meta, [IDENTITY], conf=models.CONF, iou=models.IOU, max_det=models.MAX_DET,
                           multi_label=False)[0]
        dense = postprocess([out], meta, [IDENTITY], conf=models.CONF, iou=models.IOU, max_det=models.MAX_DET,
                            multi_label=False, dense=True)[0]
        assert_same(fast, reference(out, name), "{} {}".format(name, n))
        for got, want in zip(fast, dense):
            assert np.array_equal(got, want)


@ultralytics_test
def test_nms_export_equals_ultralytics_nms_of_the_raw_export(described, outputs):
    """The same weights: NMS in the graph (only thresholded by edgecsp) = Ultralytics' NMS on the raw output."""
    meta = described["yolov8n-nms"][1]
    for n in IMAGES:
        det = postprocess([outputs["yolov8n-nms"][n]], meta, [IDENTITY], conf=models.CONF, iou=models.IOU)[0]
        assert_same(det, reference(outputs["yolov8n"][n], "yolov8n"), n)


@ultralytics_test
@pytest.mark.parametrize("name", ["yolov8n", "yolo26n-e2e"])
def test_detections_equal_ultralytics_in_original_pixels(described, exports, name):
    """From the image: edgecsp's letterbox is Ultralytics' LetterBox bit for bit, its float tensor within one
    float32 step (edgecsp multiplies by 1/255, Ultralytics divides by 255: that step, amplified by these random
    weights, moves scores by up to 1e-4, so both post-processings get Ultralytics' tensor here); edgecsp maps boxes
    back with the one letterbox scale, Ultralytics' scale_boxes with each axis's rounded size: under 0.1 px here."""
    import onnxruntime
    import torch
    from ultralytics.utils import ops

    from edgecsp.runtime.preprocess import letterbox

    meta = described[name][1]
    session = onnxruntime.InferenceSession(exports[name], providers=["CPUExecutionProvider"])
    for n in IMAGES:
        frame = image(n)
        theirs, boxed = models.ultralytics_letterbox(frame)
        batch, infos = preprocess(frame, meta)
        assert np.array_equal(letterbox(frame, (SIZE, SIZE), meta.pad_value)[0], boxed)
        assert np.abs(batch - theirs).max() <= 6e-8
        out = session.run(None, {"images": theirs})[0]
        det = postprocess([out], meta, infos, conf=models.CONF, iou=models.IOU, multi_label=False)[0]
        ref = models.ultralytics_nms(out, end2end=name in END_TO_END)[0]
        ref[:, :4] = ops.scale_boxes((SIZE, SIZE), torch.from_numpy(ref[:, :4]), frame.shape).numpy()
        assert_same(det, ref, "{} {}".format(name, n))


# -- 3. build, infer, candidates ----------------------------------------------------------------------------------
@ultralytics_test
@pytest.mark.openvino
@pytest.mark.parametrize("name", ["yolov8n", "yolov8n-nms", "yolo26n-e2e"])
def test_build_cpu_then_infer_images(described, exports, name, tmp_path, capsys):
    """`edgecsp build --target cpu` (OpenVINO IR, uint8 input) then `edgecsp infer` on the images with the family's
    NMS rule from the metadata: Ultralytics' detections (ONNX Runtime, original pixels), to OpenVINO's rounding
    (scores: the /255 in the graph and OpenVINO's arithmetic; the weights keep every deciding score 3.5e-3 or more
    from the threshold, see ultralytics_models)."""
    import shutil

    import onnxruntime
    import torch
    from ultralytics.utils import ops

    xml = str(tmp_path / "model.xml")
    assert main(["build", described[name][0], "--target", "cpu", "-o", xml]) == 0
    folder = tmp_path / "images"
    folder.mkdir()
    for n in IMAGES:
        shutil.copy(os.path.join(IMAGE_DIR, n + ".jpg"), str(folder))
    jsonl = str(tmp_path / "detections.jsonl")
    assert main(["infer", "--engine", xml, str(folder), "--save-json", jsonl, "--no-progress"]) == 0
    frames = dict((r["source"], r["detections"]) for r in map(json.loads, open(jsonl)))
    session = onnxruntime.InferenceSession(exports[name], providers=["CPUExecutionProvider"])
    for n in IMAGES:
        frame = image(n)
        ref = models.ultralytics_nms(session.run(None, {"images": models.ultralytics_letterbox(frame)[0]})[0],
                                     end2end=name in END_TO_END)[0]
        ref[:, :4] = ops.scale_boxes((SIZE, SIZE), torch.from_numpy(ref[:, :4]), frame.shape).numpy()
        got = frames[n + ".jpg"]
        assert len(got) == len(ref) >= MIN_DETECTIONS
        assert [d["class_id"] for d in got] == ref[:, 5].astype(int).tolist()
        assert np.abs(np.array([d["box"] for d in got]) - ref[:, :4]).max() <= BOX_PX  # measured: 0.09 px
        assert np.abs(np.array([d["score"] for d in got]) - ref[:, 4]).max() < 1e-3  # measured: 3e-4


@ultralytics_test
@pytest.mark.openvino
@pytest.mark.av
def test_infer_video(described, tmp_path):
    """An OpenVINO IR of the described YOLOv8n runs on a video (the three images, 5 frames each) and saves the
    annotated copy."""
    import cv2

    xml = str(tmp_path / "model.xml")
    assert main(["build", described["yolov8n"][0], "--target", "cpu", "-o", xml]) == 0
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (768, 576))
    for n in IMAGES:
        for _ in range(5):
            writer.write(cv2.resize(image(n), (768, 576)))
    writer.release()
    jsonl = str(tmp_path / "d.jsonl")
    assert main(["infer", "--engine", xml, video, "--save-json", jsonl, "--save", str(tmp_path / "out.mp4"),
                 "--no-progress"]) == 0
    counts = [len(json.loads(line)["detections"]) for line in open(jsonl)]
    assert len(counts) == 15 and min(counts[:5]) >= 5, counts  # the dog frames are the image at its own size
    assert os.path.getsize(str(tmp_path / "out.mp4")) > 10000


@ultralytics_test
@pytest.mark.parametrize("name", ["yolov8n", "yolo26n"])
def test_candidates_equal_dense_on_real_outputs(described, outputs, name):
    meta = described[name][1]
    for n in IMAGES:
        assert_candidates_are_dense([outputs[name][n]], meta)


def assert_candidates_are_dense(outputs, meta):
    layout = meta.spec
    for conf in (0.0, 0.25, 0.5, 1.0):
        dense = [keep_passing(d, conf) for d in layout.decode(outputs, meta)]
        fast = layout.candidates(outputs, meta, conf)
        assert len(dense) == len(fast)
        for want, got in zip(dense, fast):
            assert got.classes is None and got.boxes.dtype == got.scores.dtype == np.float32
            assert got.boxes.shape == (len(got.scores), 4) and got.scores.shape[1] == meta.num_classes
            assert np.array_equal(want.boxes, got.boxes) and np.array_equal(want.scores, got.scores, equal_nan=True)


def anchor_free_meta(classes=3, transposed=False, points=50, size=(64, 64)):
    return ModelMeta(names=["c{}".format(i) for i in range(classes)], input_size=size, layout="anchor_free",
                     params={"transposed": transposed, "points": points}).validate()


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_candidates_equal_dense_on_random_outputs(transposed, dtype):
    rng = np.random.default_rng(3)
    meta = anchor_free_meta(transposed=transposed)
    out = np.concatenate([rng.uniform(0, 64, (2, 4, 50)), rng.uniform(0, 1, (2, 3, 50)) ** 3], axis=1)
    out[0, 5, 7] = np.nan  # a NaN score neither passes nor hides another class that passes
    out[1, 4:, 9] = 0.25  # exactly the threshold: not above it
    out = out.astype(dtype)
    assert_candidates_are_dense([out.transpose(0, 2, 1) if transposed else out], meta)


def test_decode_turns_centres_into_corners():
    meta = anchor_free_meta(classes=2, points=2)
    out = np.array([[[10, 30], [20, 40], [4, 5], [6, 3], [0.9, 0.1], [0.2, 0.3]]], np.float32)
    (d,) = meta.spec.decode([out], meta)
    assert d.boxes.tolist() == [[8, 17, 12, 23], [27.5, 38.5, 32.5, 41.5]]
    assert np.array_equal(d.scores, np.float32([[0.9, 0.2], [0.1, 0.3]])) and d.classes is None
    (t,) = anchor_free_meta(classes=2, points=2, transposed=True).spec.decode(
        [out.transpose(0, 2, 1)], anchor_free_meta(classes=2, points=2, transposed=True))
    assert np.array_equal(t.boxes, d.boxes) and np.array_equal(t.scores, d.scores)


# -- 4. refusals ---------------------------------------------------------------------------------------------------
def one_line(text):
    return len(text.strip().splitlines()) == 1


@ultralytics_test
def test_wrong_class_count_is_refused_in_one_line(exports, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES[:79]) + "\n")
    out = tmp_path / "x.onnx"
    assert main(["export", "--onnx", exports["yolov8n"], "--names", str(names), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert one_line(err) and "(1, 84, 2100)" in err and "(?, 83, 2100)" in err and not out.exists()


@ultralytics_test
def test_runtime_refuses_outputs_that_do_not_fit_in_one_line(described, outputs):
    out = outputs["yolov8n"]["dog"]
    meta = described["yolov8n"][1]
    for wrong_meta, array in ((meta._replace(names=NAMES[:79]), out),  # 79 classes for 84 channels
                              (meta, out.transpose(0, 2, 1)),  # the transposed form for a channels-first model
                              (meta, out[:, :, :2000])):  # fewer points than the model has
        with pytest.raises(MetadataError) as caught:
            postprocess([array], wrong_meta, [IDENTITY])
        assert one_line(str(caught.value)) and "re-export" in str(caught.value)


def test_contradicting_parameters_are_refused():
    document = anchor_free_meta().to_dict()
    document["params"] = {"transposed": False, "points": 64 * 64 + 1}
    with pytest.raises(MetadataError, match="points 4097 exceed the input's 64x64 pixels"):
        ModelMeta.from_dict(document)
    document["params"] = {"transposed": "yes"}
    with pytest.raises(MetadataError, match="transposed"):
        ModelMeta.from_dict(document)


def edited(source, path, props=None, transpose=False):
    """A copy of ``source`` with its metadata_props replaced by ``props`` (None: none) and, with ``transpose``,
    its output transposed to (N, M, 4 + C)."""
    import onnx

    model = onnx.load(source)
    del model.metadata_props[:]
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    if transpose:
        output = model.graph.output[0]
        model.graph.node.append(onnx.helper.make_node("Transpose", [output.name], ["transposed"], perm=[0, 2, 1]))
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
        del model.graph.output[:]
        model.graph.output.append(onnx.helper.make_tensor_value_info(
            "transposed", onnx.TensorProto.FLOAT, [dims[0], dims[2], dims[1]]))
    onnx.save(model, path)
    return path


@ultralytics_test
def test_without_metadata_the_shape_decides(exports, tmp_path, capsys):
    """No producer metadata: (1, 84, 2100) at 320x320 is anchor_free (2100 = 40^2 + 20^2 + 10^2) but the names
    default to class0..; the transposed form is ambiguous with YOLOX's (N, M, 5 + C) and needs --layout."""
    bare = edited(exports["yolov8n"], str(tmp_path / "bare.onnx"))
    assert main(["export", "--onnx", bare, "-o", str(tmp_path / "a.onnx")]) == 0
    assert "layout anchor_free (anchor-free (N, 4 + classes, points) detector" in capsys.readouterr().out
    plain = read_artefact_meta(str(tmp_path / "a.onnx"))
    assert plain.params == {"transposed": False, "points": 2100} and plain.num_classes == 80
    assert (plain.channel_order, plain.pad_value, plain.nms) == ("RGB", 114, {"multi_label": False, "iou": 0.7})
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")

    flipped = edited(exports["yolov8n"], str(tmp_path / "flipped.onnx"), transpose=True)
    assert main(["export", "--onnx", flipped, "--names", str(names), "-o", str(tmp_path / "b.onnx")]) == 3
    assert one_line(capsys.readouterr().err)  # not anchor_free's to claim (YOLOX's raw layout may try it)
    assert main(["export", "--onnx", flipped, "--names", str(names), "--layout", "anchor_free", "--param",
                 "transposed=true", "-o", str(tmp_path / "b.onnx")]) == 0
    transposed = read_artefact_meta(str(tmp_path / "b.onnx"))
    assert transposed.params == {"transposed": True, "points": 2100}
    import onnxruntime

    x = models.ultralytics_letterbox(image("dog"))[0]
    out_a = onnxruntime.InferenceSession(str(tmp_path / "a.onnx")).run(None, {"images": x})
    out_b = onnxruntime.InferenceSession(str(tmp_path / "b.onnx")).run(None, {"images": x})
    det_a = postprocess(out_a, plain, [IDENTITY], iou=models.IOU, multi_label=False)[0]
    det_b = postprocess(out_b, transposed, [IDENTITY], iou=models.IOU, multi_label=False)[0]
    assert len(det_a.scores) >= MIN_DETECTIONS and all(np.array_equal(a, b) for a, b in zip(det_a, det_b))


@ultralytics_test
@pytest.mark.parametrize("option", [["--param", "transposed=7"], ["--param", "reg_max=16"]])
def test_bad_layout_options_are_refused_in_one_line(exports, tmp_path, capsys, option):
    out = tmp_path / "x.onnx"
    assert main(["export", "--onnx", exports["yolov8n"], "--layout", "anchor_free"] + option + ["-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert one_line(err) and "anchor_free" in err and not out.exists()


@ultralytics_test
def test_ultralytics_models_of_other_tasks_are_not_taken_for_detectors(exports, tmp_path, capsys):
    import onnx

    props = dict((p.key, p.value) for p in onnx.load(exports["yolov8n"]).metadata_props)
    pose = edited(exports["yolov8n"], str(tmp_path / "pose.onnx"), dict(props, task="pose"))
    assert main(["export", "--onnx", pose, "-o", str(tmp_path / "x.onnx")]) == 3
    err = capsys.readouterr().err
    assert one_line(err) and "cannot tell the output layout" in err


@pytest.mark.onnx
def test_anchor_free_takes_one_three_dimensional_output(tmp_path, capsys):
    """--layout anchor_free on YOLOv7's raw heads (three 5-D outputs): one line naming what it takes."""
    needs("fixtures")
    nogrid = os.path.join(IMAGE_DIR, "yolov7-tiny_320_nogrid.onnx")
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    assert main(["export", "--onnx", nogrid, "--names", str(names), "--layout", "anchor_free", "-o",
                 str(tmp_path / "x.onnx")]) == 3
    err = capsys.readouterr().err
    assert one_line(err) and "takes one (N, 4 + classes, points) output" in err


COCO_LIKE = repr(dict((i, "thing {}".format(i)) for i in range(80)))
ULTRA = {"author": "Ultralytics", "description": "Ultralytics YOLO11n model ", "task": "detect", "head": "Detect",
         "names": COCO_LIKE, "end2end": "False", "args": "{'nms': None, 'opset': 13}", "input_size": (320, 320)}
E2E = dict(ULTRA, head="Detect", end2end="True", args="{'nms': False}")
NMS = dict(ULTRA, args="{'batch': 1, 'nms': True, 'opset': 13}")
BARE = {"input_size": (320, 320)}


@pytest.mark.parametrize("shape,producer,layout,params", [
    ((1, 84, 2100), ULTRA, "anchor_free", {"transposed": False, "points": 2100}),
    ((1, 84, 8400), ULTRA, "anchor_free", {"transposed": False, "points": 8400}),  # imgsz and input need not agree
    ((1, 2100, 84), ULTRA, "anchor_free", {"transposed": True, "points": 2100}),
    ((1, 84, 2100), dict(ULTRA, names="{0: 'a'}"), "anchor_free", {"transposed": False, "points": 2100}),
    ((None, 84, None), ULTRA, "anchor_free", {"transposed": False, "points": None}),  # dynamic export
    ((1, 84, 2100), dict(ULTRA, head="v10Detect"), "anchor_free", {"transposed": False, "points": 2100}),
    ((1, 300, 6), E2E, "detections", {"columns": ["x1", "y1", "x2", "y2", "score", "class"], "nms_applied": True,
                                      "rows": 300}),
    ((1, 300, 6), NMS, "detections", {"columns": ["x1", "y1", "x2", "y2", "score", "class"], "nms_applied": True,
                                      "rows": 300}),
    ((1, 84, 2100), BARE, "anchor_free", {"transposed": False, "points": 2100}),  # 40^2 + 20^2 + 10^2
    ((1, 84, 2125), BARE, "anchor_free", {"transposed": False, "points": 2125}),  # P6: + 5^2
    ((1, 84, 8500), BARE, "anchor_free", {"transposed": False, "points": 8500}),  # P2: 80^2 + ... + 10^2
])
def test_recognise_reads_shapes_and_ultralytics_metadata(shape, producer, layout, params):
    from edgecsp.runtime.layouts import recognise

    found, got = recognise([("output0", shape)], producer)
    assert (found.name, got.params, got.outputs) == (layout, params, ["output0"])
    assert got.preprocess["channel_order"] == "RGB" and got.preprocess["pad_value"] == 114
    assert got.nms == {"multi_label": False, "iou": 0.7}
    if "author" in producer:
        assert got.family.startswith("Ultralytics YOLO11n")


@pytest.mark.parametrize("shape,producer", [
    ((1, 116, 2100), dict(ULTRA, task="segment")),  # the mask coefficients after the classes
    ((1, 56, 2100), dict(ULTRA, task="pose", head="Pose")),
    ((1, 300, 84), dict(ULTRA, head="RTDETRDecoder")),  # RT-DETR: normalised boxes
    ((1, 84, 2100), E2E),  # the metadata says end-to-end: not these raw points
    ((1, 84, 2000), BARE),  # no standard stride set gives 2000 points at 320x320
    ((1, 2100, 84), BARE),  # transposed without a producer's word: YOLOX's (N, M, 5 + C) looks the same
    ((1, 3, 2100), BARE),  # no class channel
])
def test_recognise_leaves_what_is_not_anchor_free(shape, producer):
    from edgecsp.runtime.layouts import recognise

    found = recognise([("output0", shape)], producer)
    assert found is None or found[0].name not in ("anchor_free", "detections"), found


def test_layout_is_registered_with_its_writers():
    layout = get_layout("anchor_free")
    assert "Ultralytics" in layout.writers and not layout.nms_applied(anchor_free_meta())
    assert "nms=True" in layout.deepstream_problem(anchor_free_meta())
