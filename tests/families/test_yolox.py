"""YOLOX 0.3.0 (test tool, never imported by edgecsp): its own exporter, preprocessing and post-processing against
edgecsp's layouts ``yolox_raw`` (the exporter's default) and ``anchor_decoded`` (``--decode_in_inference``).

A yolox-nano at 320x320 with random weights made "hot" (batch norm statistics measured on the test images, the
head's last 1x1 convolutions rescaled so that tens of boxes survive NMS) is exported by YOLOX's own
``tools/export_onnx.py`` (its removed ``torch.onnx._export`` pointed at the TorchScript exporter). The references
are YOLOX's: the PyTorch model, ``yolox.utils.postprocess`` (best class per box, ``obj * class_conf``,
torchvision's NMS), ``data_augment.ValTransform`` and ``demo_utils.demo_postprocess``. torchvision's compiled NMS
does not load beside the CPU torch, so ``torchvision.ops.nms`` / ``batched_nms`` are a line-by-line port of its
CPU kernel and its Python wrapper (below), installed only for YOLOX's module.
"""
import contextlib
import functools
import importlib.util
import io
import json
import os
import sys
import types

import numpy as np
import pytest

from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import keep_passing
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxInfo, preprocess
from tests.gates import needs

pytestmark = [pytest.mark.yolox, pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime, pytest.mark.opencv]

SIZE = (320, 320)
# 480x640 and 400x500 resize to whole pixels (YOLOX's int() and edgecsp's rounding agree); 334x500 does not
IMAGES = [(480, 640), (400, 500), (334, 500)]
SAME_PREPROCESSING = (0, 1)
NAMES = ["class{}".format(i) for i in range(80)]
# YOLOX's tools/demo.py (conf 0.3, nms 0.3, class_agnostic=True) and its COCO evaluator (class-aware; 0.65)
SETTINGS = [dict(conf=0.3, iou=0.3, class_agnostic=True), dict(conf=0.3, iou=0.65, class_agnostic=False)]
BOX_TOL, SCORE_TOL = 0.5, 1e-4  # the parity criterion
# the head's last convolutions rescaled so that its outputs have these (mean, std) over the test images: objectness
# and class logits (class means spread by the second number), tx ty, tw th
HEAT = dict(obj=(-3.0, 1.0), cls=(-3.0, 0.5, 1.0), xy=(0.5, 0.4), wh=(1.0, 0.3))
SHIFT = 1024.0  # network-input boxes are compared unclipped: postprocess shifted by SHIFT, then shifted back
EXP_FILE = '''from yolox.exp.default.yolox_nano import Exp as Nano


class Exp(Nano):
    def __init__(self):
        super().__init__()
        self.test_size = {size}
'''


# -- torchvision's NMS, ported (torchvision/csrc/ops/cpu/nms_kernel.cpp and torchvision/ops/boxes.py) --------------
def _nms(boxes, scores, iou_threshold):
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    x1, y1, x2, y2 = (boxes[:, k].contiguous() for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = torch.sort(scores, stable=True, dim=0, descending=True)[1].tolist()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for at, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = torch.as_tensor(order[at + 1:], dtype=torch.int64)
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[ovr.double() > iou_threshold]] = True  # the kernel compares float to a double threshold
    return torch.as_tensor(keep, dtype=torch.int64)


def _batched_nms(boxes, scores, idxs, iou_threshold):
    import torch

    if boxes.numel() > 4000:  # torchvision's CPU rule: one NMS per class
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            current = torch.where(idxs == class_id)[0]
            keep_mask[current[_nms(boxes[current], scores[current], iou_threshold)]] = True
        kept = torch.where(keep_mask)[0]
        return kept[scores[kept].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))  # the coordinate trick
    return _nms(boxes + offsets[:, None], scores, iou_threshold)


TORCHVISION = types.ModuleType("torchvision")
TORCHVISION.ops = types.SimpleNamespace(nms=_nms, batched_nms=_batched_nms)


# -- the model and its exports ----------------------------------------------------------------------------------
def _images():
    from edgecsp.data.shapes import render_sample

    return [render_sample(np.random.default_rng(40 + i), size)[0] for i, size in enumerate(IMAGES)]


def _heat(model, x):
    """Batch norm statistics measured on ``x`` (eval mode throughout), then the head's last convolutions rescaled
    per channel to the means and spreads of ``HEAT`` (boxes ~3 strides wide)."""
    import torch

    def measure(module, inputs):
        module.running_mean.copy_(inputs[0].mean((0, 2, 3)))
        module.running_var.copy_(inputs[0].var((0, 2, 3), unbiased=False))

    hooks = [m.register_forward_pre_hook(measure) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    head, generator = model.head, torch.Generator().manual_seed(1)
    targets = []
    for k in range(len(head.strides)):
        classes = head.cls_preds[k].out_channels
        targets += [(head.obj_preds[k],) + HEAT["obj"],
                    (head.cls_preds[k], HEAT["cls"][0] + HEAT["cls"][1] * torch.randn(classes, generator=generator),
                     HEAT["cls"][2]),
                    (head.reg_preds[k], torch.tensor(HEAT["xy"][:1] * 2 + HEAT["wh"][:1] * 2),
                     torch.tensor(HEAT["xy"][1:] * 2 + HEAT["wh"][1:] * 2))]
    seen = {}
    hooks = [conv.register_forward_hook(lambda m, i, o: seen.__setitem__(m, o)) for conv, _, _ in targets]
    with torch.no_grad():
        model(x)
        for hook in hooks:
            hook.remove()
        for conv, mean, std in targets:
            out = seen[conv].transpose(0, 1).reshape(conv.out_channels, -1)
            gain = torch.as_tensor(std) / (out.std(1) + 1e-6)
            conv.weight.mul_(gain.view(-1, 1, 1, 1))
            conv.bias.copy_(torch.as_tensor(mean) + (conv.bias - out.mean(1)) * gain)


@pytest.fixture(scope="module")
def yolox_run(tmp_path_factory):
    """The hot yolox-nano, its two exports by YOLOX's exporter, the test images and YOLOX's own results."""
    needs("yolox", "torch", "onnx", "onnxruntime", "opencv")
    import torch

    folder = tmp_path_factory.mktemp("yolox")
    with _yolox_imports() as yolox:
        exp_file = folder / "edgecsp_yolox_nano_320.py"
        exp_file.write_text(EXP_FILE.format(size=SIZE))
        torch.manual_seed(0)
        images = _images()
        transform = yolox.data_augment.ValTransform(legacy=False)
        x = torch.from_numpy(np.stack([transform(image, None, SIZE)[0] for image in images]))
        model = yolox.get_exp(str(exp_file), None).get_model().eval()
        _heat(model, x)
        checkpoint = str(folder / "hot.pth")
        torch.save({"model": model.state_dict()}, checkpoint)
        exports = {}
        for decoded in (False, True):
            path = str(folder / "yolox_nano_{}.onnx".format("decoded" if decoded else "raw"))
            argv = ["export_onnx.py", "-f", str(exp_file), "-c", checkpoint, "--output-name", path, "-o", "13",
                    "--no-onnxsim"] + (["--decode_in_inference"] if decoded else [])
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(sys, "argv", argv)
                patch.setattr(torch.onnx, "_export", functools.partial(torch.onnx.export, dynamo=False),
                              raising=False)
                yolox.export_onnx.main()  # logs instead of raising (@logger.catch): the file says it worked
            assert os.path.isfile(path), "YOLOX's exporter wrote no {}".format(path)
            exports["decoded" if decoded else "raw"] = path
        model.head.decode_in_inference = True
        with torch.no_grad():
            decoded_torch = model(x).numpy()
        yield types.SimpleNamespace(folder=folder, images=images, x=x.numpy(), exports=exports, yolox=yolox,
                                    torch_outputs=decoded_torch, model=model)
    sys.path[:] = [p for p in sys.path if p != str(folder)]  # yolox.exp.get_exp appended the exp file's folder
    sys.modules.pop(exp_file.stem, None)


@contextlib.contextmanager
def _yolox_imports():
    """YOLOX's modules, with its ``torchvision`` (only boxes.py imports it) the port above; its data package
    imports pycocotools, so ``data_augment.py`` is loaded as a file."""
    stub = "torchvision" not in sys.modules
    if stub:
        sys.modules["torchvision"] = TORCHVISION
    try:
        import yolox
        import yolox.utils.boxes as boxes
        from yolox.exp import get_exp
        from yolox.tools import export_onnx
        from yolox.utils import demo_utils
    finally:
        if stub:
            del sys.modules["torchvision"]
    spec = importlib.util.spec_from_file_location(
        "yolox_data_augment", os.path.join(os.path.dirname(yolox.__file__), "data", "data_augment.py"))
    data_augment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data_augment)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boxes, "torchvision", TORCHVISION)
        yield types.SimpleNamespace(get_exp=get_exp, export_onnx=export_onnx, postprocess=boxes.postprocess,
                                    demo_postprocess=demo_utils.demo_postprocess, data_augment=data_augment)


@pytest.fixture(scope="module")
def described(yolox_run):
    """Both exports through `edgecsp export --onnx` with no layout option: {"raw": (path, meta, log), ...}."""
    from edgecsp.backends import read_artefact_meta
    from edgecsp.cli import main

    names = yolox_run.folder / "coco80.names"
    names.write_text("\n".join(NAMES) + "\n")
    found = {}
    for kind, path in yolox_run.exports.items():
        out = path.replace(".onnx", "-edgecsp.onnx")
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            assert main(["export", "--onnx", path, "--names", str(names), "-o", out]) == 0
        found[kind] = (out, read_artefact_meta(out), log.getvalue())
    return found


def _run(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(x.shape[0])]


@pytest.fixture(scope="module")
def outputs(yolox_run, described):
    """ONNX Runtime outputs of both described models, per image."""
    return dict((kind, _run(path, yolox_run.x)) for kind, (path, _, _) in described.items())


# -- helpers ----------------------------------------------------------------------------------------------------
def _reference(yolox_run, decoded_rows, conf, iou, class_agnostic):
    """YOLOX's ``postprocess`` of (1, M, 85) decoded rows: (boxes xyxy, scores obj * class_conf, classes)."""
    import torch

    (det,) = yolox_run.yolox.postprocess(torch.from_numpy(np.array(decoded_rows)), len(NAMES), conf, iou,
                                         class_agnostic)
    if det is None:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    det = det.numpy()
    return det[:, :4], det[:, 4] * det[:, 5], det[:, 6].astype(np.int64)


def _edgecsp_input_pixels(output, meta, settings):
    """edgecsp's detections in network-input pixels, clipped only SHIFT pixels around the input (an identity
    letterbox moved by SHIFT: postprocess clips to the frame); compare with ``_window(reference)``."""
    info = LetterboxInfo(1.0, -int(SHIFT), -int(SHIFT), 1.0, 1.0, (SIZE[0] + 2 * int(SHIFT),) * 2, SIZE)
    (det,) = postprocess([output], meta, [info], multi_label=False, max_det=1000, **settings)
    return det.boxes - np.float32(SHIFT), det.scores, det.class_ids


def _window(reference):
    """``reference`` with its boxes clipped as ``_edgecsp_input_pixels`` clips (hot random weights make a few
    boxes thousands of pixels wide)."""
    boxes = np.clip(reference[0], -SHIFT, SIZE[0] + SHIFT)
    return (boxes,) + tuple(reference[1:])


def _match(reference, got):
    """Pair each reference detection with the same-class detection of ``got`` whose box is closest; the largest
    box and score differences (inf when the counts or classes differ)."""
    (rb, rs, rc), (gb, gs, gc) = reference, got
    if len(rs) != len(gs) or sorted(rc.tolist()) != sorted(gc.tolist()):
        return float("inf"), float("inf")
    free = np.ones(len(gs), bool)
    box_diff = score_diff = 0.0
    for i in np.argsort(-rs, kind="stable"):
        candidates = np.nonzero(free & (gc == rc[i]))[0]
        best = candidates[np.argmin(np.abs(gb[candidates] - rb[i]).max(axis=1))]
        free[best] = False
        box_diff = max(box_diff, float(np.abs(gb[best] - rb[i]).max()))
        score_diff = max(score_diff, float(abs(gs[best] - rs[i])))
    return box_diff, score_diff


# -- tests --------------------------------------------------------------------------------------------------------
def test_export_recognises_both_yolox_exports(described):
    """No layout option: the raw head is yolox_raw, the decoded one (the graph computes Exp) anchor_decoded, both
    with YOLOX's preprocessing."""
    for kind, layout, params in (("raw", "yolox_raw", {"strides": [8, 16, 32]}),
                                 ("decoded", "anchor_decoded", {"rows": 2100})):
        _, meta, log = described[kind]
        assert (meta.layout, meta.spec.params_dict(meta.params)) == (layout, params)
        assert (meta.channel_order, meta.scale, meta.pad_position, meta.pad_value) == ("BGR", 1.0, "top_left", 114)
        assert (meta.mean, meta.std, meta.letterbox, meta.names) == ((0.0,) * 3, (1.0,) * 3, True, NAMES)
        assert meta.nms == {"multi_label": False, "iou": 0.45}  # postprocess(): best class per box
        assert "layout {} (YOLOX".format(layout) in log


def test_preprocessing_is_yoloxs_where_the_resize_agrees(yolox_run, described):
    """Same tensor as YOLOX's ValTransform where w * r and h * r are whole; where h * r = 213.76, YOLOX's int()
    resizes to 213 rows and edgecsp's rounding to 214: the boxes map back with the same ratio either way."""
    meta = described["raw"][1]
    for i, image in enumerate(yolox_run.images):
        x, (info,) = preprocess(image, meta)
        assert info.scale == min(SIZE[0] / image.shape[0], SIZE[1] / image.shape[1]) and info.pad_x == info.pad_y == 0
        if i in SAME_PREPROCESSING:
            np.testing.assert_array_equal(x[0], yolox_run.x[i])
        else:
            differs = np.nonzero((x[0] != yolox_run.x[i]).any(axis=(0, 2)))[0]
            assert differs.max() == 213 and (yolox_run.x[i][:, 213] == 114).all()  # YOLOX's first padding row


def test_yolox_raw_decode_is_yoloxs(yolox_run, described, outputs):
    """Every row of the raw export decoded by edgecsp equals YOLOX's demo_postprocess of it and the decoded
    export's rows (float32 rounding of exp)."""
    meta = described["raw"][1]
    for raw, decoded in zip(outputs["raw"], outputs["decoded"]):
        (rows,) = meta.spec.decode([raw], meta)
        theirs = yolox_run.yolox.demo_postprocess(raw.copy(), SIZE)[0]
        corners = np.concatenate([theirs[:, :2] - theirs[:, 2:4] / 2, theirs[:, :2] + theirs[:, 2:4] / 2], axis=1)
        assert np.abs(rows.boxes - corners).max() < 1e-3
        np.testing.assert_array_equal(rows.scores, raw[0, :, 4:5] * raw[0, :, 5:])
        exported = decoded[0]
        assert np.abs(rows.boxes - np.concatenate([exported[:, :2] - exported[:, 2:4] / 2,
                                                   exported[:, :2] + exported[:, 2:4] / 2], axis=1)).max() < 1e-3


def _export_error(yolox_run, outputs):
    """The largest |score| difference, over every row and class, between the PyTorch model and the decoded
    export run by ONNX Runtime: the export's own float32 error (random weights made hot amplify it)."""
    worst = 0.0
    for i, output in enumerate(outputs["decoded"]):
        mine, theirs = output[0], yolox_run.torch_outputs[i]
        worst = max(worst, float(np.abs(mine[:, 4:5] * mine[:, 5:] - theirs[:, 4:5] * theirs[:, 5:]).max()))
    return worst


def _to_original(reference, image):
    """YOLOX's demo mapping, ``boxes /= ratio``, clipped to the image as edgecsp clips (YOLOX leaves them out)."""
    boxes = reference[0] / min(SIZE[0] / image.shape[0], SIZE[1] / image.shape[1])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, image.shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, image.shape[0])
    return boxes, reference[1], reference[2]


@pytest.mark.parametrize("settings", SETTINGS, ids=["demo-agnostic", "eval-classaware"])
def test_detections_equal_yoloxs_postprocess(yolox_run, described, outputs, settings):
    """edgecsp's detections from either export equal YOLOX's postprocess of the same ONNX Runtime output (for
    the raw export after YOLOX's demo_postprocess): same count (10+ an image) and classes, boxes and scores to
    float32 rounding; in original pixels too where the preprocessing agrees. Against the PyTorch model: boxes
    within 0.5 px, same classes, scores within the export's own error (measured, at least 1e-4)."""
    conf, iou, agnostic = settings["conf"], settings["iou"], settings["class_agnostic"]
    score_tol = max(SCORE_TOL, _export_error(yolox_run, outputs) + 1e-6)
    assert score_tol < 5e-3
    for i, image in enumerate(yolox_run.images):
        pytorch_ref = _reference(yolox_run, yolox_run.torch_outputs[i:i + 1], conf, iou, agnostic)
        for kind in ("raw", "decoded"):
            output, meta = outputs[kind][i], described[kind][1]
            rows = yolox_run.yolox.demo_postprocess(output.copy(), SIZE) if kind == "raw" else output
            reference = _reference(yolox_run, rows, conf, iou, agnostic)
            got = _edgecsp_input_pixels(output, meta, settings)
            assert len(reference[1]) >= 10
            box, score = _match(_window(reference), got)
            assert box <= 1e-3 and score <= 1e-6, (i, kind, box, score, len(reference[1]), len(got[1]))
            box, score = _match(_window(pytorch_ref), got)
            assert box <= BOX_TOL and score <= score_tol, (i, kind, box, score, len(pytorch_ref[1]), len(got[1]))
            if i in SAME_PREPROCESSING:  # original pixels, edgecsp's own preprocessing and map back
                batch, infos = preprocess(image, meta)
                np.testing.assert_array_equal(batch, yolox_run.x[i:i + 1])
                (det,) = postprocess([output], meta, infos, multi_label=False, max_det=1000, **settings)
                got = (det.boxes, det.scores, det.class_ids)
                box, score = _match(_to_original(reference, image), got)
                assert box <= 2e-3 and score <= 1e-6, (i, kind, box, score)
                box, score = _match(_to_original(pytorch_ref, image), got)
                assert box <= BOX_TOL and score <= score_tol, (i, kind, box, score)


def test_candidates_equal_the_dense_decode(described, outputs):
    """The fast path decodes only rows whose objectness passes conf, and they are the dense rows that pass."""
    for kind in ("raw", "decoded"):
        meta = described[kind][1]
        for output in outputs[kind]:
            for conf in (0.0, 0.05, 0.3, 0.9):
                (dense,) = meta.spec.decode([output], meta)
                (fast,) = meta.spec.candidates([output], meta, conf)
                dense = keep_passing(dense, conf)
                np.testing.assert_array_equal(fast.boxes, dense.boxes)
                np.testing.assert_array_equal(fast.scores, dense.scores)
                assert fast.classes is None and (conf == 0.0 or len(fast.boxes) < output.shape[1])


@pytest.mark.openvino
def test_build_and_infer_the_raw_export(yolox_run, described, tmp_path, capsys):
    """`edgecsp build --target cpu` (OpenVINO) and `edgecsp infer` on a png (YOLOX's demo settings: conf 0.3, IoU
    0.3, class-agnostic): the JSON detections are YOLOX's demo post-processing of the same artefact's output in
    original pixels (JSON rounding: 0.005 px, 5e-6), and the PyTorch model's within the parity tolerances."""
    import cv2
    from edgecsp.backends import open_runner
    from edgecsp.cli import main

    path = described["raw"][0]
    ir, jsonl, image_path = str(tmp_path / "yolox.xml"), str(tmp_path / "d.jsonl"), str(tmp_path / "img.png")
    image = yolox_run.images[0]
    cv2.imwrite(image_path, image)
    assert main(["build", path, "--target", "cpu", "-o", ir]) == 0
    assert main(["infer", "--engine", ir, image_path, "--conf", "0.3", "--iou", "0.3", "--agnostic-nms",
                 "--max-det", "1000", "--save-json", jsonl, "--no-progress"]) == 0
    (record,) = [json.loads(line) for line in open(jsonl)]
    got = (np.array([d["box"] for d in record["detections"]], np.float32).reshape(-1, 4),
           np.array([d["score"] for d in record["detections"]], np.float32),
           np.array([d["class_id"] for d in record["detections"]], np.int64))
    with open_runner(ir) as runner:
        batch, _ = preprocess(image, runner.meta)
        (output,) = runner.infer(batch)
    rows = yolox_run.yolox.demo_postprocess(np.array(output, np.float32), SIZE)
    reference = _reference(yolox_run, rows, 0.3, 0.3, True)
    assert len(reference[1]) >= 10
    box, score = _match(_to_original(reference, image), got)
    assert box <= 0.01 and score <= 1e-5, (box, score, len(reference[1]), len(got[1]))
    pytorch_ref = _reference(yolox_run, yolox_run.torch_outputs[0:1], 0.3, 0.3, True)
    box, score = _match(_to_original(pytorch_ref, image), got)
    assert box <= BOX_TOL and score <= 5e-3, (box, score)


@pytest.mark.parametrize("kind", ["raw", "decoded"])
def test_wrong_class_count_is_refused(yolox_run, described, outputs, tmp_path, capsys, kind):
    """79 names for an 80-class model: export refuses in one line (exit 3, nothing written), and a runtime given
    such metadata refuses the outputs."""
    from edgecsp.cli import main

    names, out = tmp_path / "79.names", tmp_path / "x.onnx"
    names.write_text("\n".join(NAMES[:79]) + "\n")
    assert main(["export", "--onnx", yolox_run.exports[kind], "--names", str(names), "-o", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(1, 2100, 85)" in err and "79 classes" in err and not out.exists()
    meta = described[kind][1]._replace(names=NAMES[:79])
    with pytest.raises(MetadataError, match="shaped .1, 2100, 85. but the {} metadata .79 classes".format(
            meta.layout)):
        meta.spec.candidates([outputs[kind][0]], meta, 0.3)
