"""Accuracy of a built artefact on COCO-annotated images, alone or against a baseline (``edgecsp eval``).

Frames go through the runtime's ``detect`` (the one preprocess/postprocess), so the numbers are those of the
deployed pipeline. Each evaluation reports the numpy COCO-style mAP (``detection_map``) and, as an independent
check, the COCO library's mAP on the same detections. Scores are fractions (0..1); drops are in points (x100).
"""
import os
import time
from typing import NamedTuple, Optional

from edgecsp._files import READS, READS_SPEC, WRITES, check_paths
from edgecsp.errors import InputError
from edgecsp.data.coco import CocoDataset
from edgecsp.evaluation.detection_map import AP_METHODS, evaluate_detections
from edgecsp.runtime.pipeline import DetectOptions, detect
from edgecsp.runtime.progress import Progress
from edgecsp.validate import fraction, iou_threshold, optional, positive_int

# what mAP is measured with: a low score threshold so the whole precision/recall curve counts (as in COCO)
EVAL_OPTIONS = DetectOptions(conf=0.001, iou=0.6, max_det=100)
# `edgecsp eval --ultralytics`: the settings of Ultralytics' `val` (DetectionValidator: conf 0.001, NMS IoU 0.7
# over every (box, class) pair, 300 detections per image; AP by its compute_ap), so both report the same mAP
ULTRALYTICS_OPTIONS = DetectOptions(conf=0.001, iou=0.7, max_det=300, multi_label=True)
ULTRALYTICS_AP = "ultralytics"


def predict(runner, dataset, options=EVAL_OPTIONS, indices=None, progress=None):
    """Detections of ``runner`` (an active runner, or anything with ``meta`` and ``infer``) on ``dataset``.

    Returns ``(predictions, seconds)``: ``predictions[j] = (boxes xyxy, scores, labels)`` for image
    ``indices[j]`` with labels in the dataset's label order (classes it lacks are dropped), and the seconds
    spent in ``runner.infer``.
    """
    import numpy as np

    label_map = np.asarray(dataset.label_map(runner.meta.names) + [-1], np.int64)
    indices = range(len(dataset)) if indices is None else indices
    predictions = []
    timed = _TimedRunner(runner)
    for index in indices:
        det = detect(timed, [dataset.image(index)], options)[0]
        labels = label_map[det.class_ids] if len(det.class_ids) else np.zeros(0, np.int64)
        keep = labels >= 0
        predictions.append((det.boxes[keep], det.scores[keep], labels[keep]))
        if progress is not None:
            progress.update()
    return predictions, timed.seconds


class _TimedRunner(object):
    """Counts the time spent in ``infer`` so evaluation reports inference speed apart from decoding."""

    def __init__(self, runner):
        self.runner = runner
        self.meta = runner.meta
        self.seconds = 0.0

    def infer(self, batch):
        start = time.perf_counter()
        outputs = self.runner.infer(batch)
        self.seconds += time.perf_counter() - start
        return outputs


def score(predictions, dataset, indices=None, coco=True, max_det=EVAL_OPTIONS.max_det, ap_method="coco"):
    """mAP of ``predictions`` (from ``predict``) on ``dataset``: the numpy numbers, plus ``coco`` from the library.

    Per-class values are keyed by class name. ``coco=False`` skips the library check. ``max_det`` caps the
    detections per image and class, ``ap_method`` integrates the curves (``evaluate_detections``); the library
    always integrates COCO's way.
    """
    indices = list(range(len(dataset)) if indices is None else indices)
    names = dataset.names
    result = evaluate_detections(predictions, [dataset.ground_truths[i] for i in indices], len(names),
                                 max_detections=max_det, ap_method=ap_method)
    out = {"images": len(indices), "map50": result["map50"], "map50_95": result["map50_95"],
           "per_class": dict((names[c], v) for c, v in result["per_class"].items()),
           "per_class_map50_95": dict((names[c], v) for c, v in result["per_class_map50_95"].items()),
           "num_gt": dict((names[c], v) for c, v in result["num_gt"].items()), "coco": None}
    if coco:
        from edgecsp.evaluation.coco_eval import coco_map, to_coco_results

        image_ids = [dataset.records[i]["id"] for i in indices]
        found = coco_map(dataset.annotations, to_coco_results(predictions, image_ids, dataset.category_ids),
                         image_ids, max_det)
        found["per_class"] = dict((names[c], v) for c, v in found["per_class"].items())
        out["coco"] = found
    return out


def evaluate_runner(runner, dataset, options=EVAL_OPTIONS, coco=True, progress=None, ap_method="coco"):
    """``score`` of an active runner on a ``CocoDataset``, with timing and the runner's identity."""
    from edgecsp.runtime.pipeline import resolved

    with Progress(total=len(dataset), desc="eval " + os.path.basename(runner.path), enabled=progress) as bar:
        predictions, seconds = predict(runner, dataset, options, progress=bar)
    result = score(predictions, dataset, coco=coco, max_det=options.max_det, ap_method=ap_method)
    nms = resolved(options, runner.meta)
    extra = runner.meta.extra
    result.update({"artefact": runner.path, "model": runner.meta.model, "precision": extra.get("precision"),
                   "backend": extra.get("backend"), "annotations": dataset.annotations,
                   "options": {"conf": options.conf, "iou": nms.iou, "max_det": options.max_det,
                               "multi_label": nms.multi_label, "ap": ap_method},
                   "infer_ms_per_image": 1000.0 * seconds / max(1, len(dataset))})
    return result


def evaluate_artefact(path, annotations, images=None, options=EVAL_OPTIONS, limit=None, threads=None, coco=True,
                      progress=None, ap_method="coco"):
    """Evaluate the artefact at ``path`` on the COCO json ``annotations`` (images under ``images``).

    Returns the ``score`` dict plus ``artefact``, ``precision``, ``backend`` and ``infer_ms_per_image``.
    """
    from edgecsp.backends import open_runner

    dataset = CocoDataset(annotations, images, limit)
    with open_runner(path, **({"threads": threads} if threads else {})) as runner:
        return evaluate_runner(runner, dataset, options, coco, progress, ap_method)


class EvalConfig(NamedTuple):
    """What ``edgecsp eval`` does: evaluate ``engine`` (and ``baseline``) and write the report/chart."""

    engine: str  # an artefact, or torch:MODEL|CARD.json|CFG,WEIGHTS: the PyTorch model before export
    data: str  # COCO annotations json
    images: Optional[str] = None  # default: the json's folder
    baseline: Optional[str] = None
    report: Optional[str] = None  # JSON report path
    plot: Optional[str] = None  # PNG chart path
    conf: float = EVAL_OPTIONS.conf
    iou: float = EVAL_OPTIONS.iou
    max_det: int = EVAL_OPTIONS.max_det
    multi_label: Optional[bool] = None  # None: the model family's NMS rule (recorded at import)
    ap: str = "coco"  # "coco" (101-point step) or "ultralytics" (its val's interpolation): AP_METHODS
    limit: Optional[int] = None  # first N images only
    threads: Optional[int] = None
    coco: bool = True  # also run the COCO library
    progress: Optional[bool] = None  # None: when stderr is a terminal


# what eval reads and writes: no output may replace or sit inside an input (edgecsp._files.check_paths)
PATHS = (("engine", "--engine", READS_SPEC), ("baseline", "--baseline", READS_SPEC), ("data", "--data", READS),
         ("images", "--images", READS), ("report", "--report", WRITES), ("plot", "--plot", WRITES))


def _check_output(path, suffix, option):
    if path is None:
        return
    if os.path.splitext(str(path))[1].lower() != suffix:
        raise InputError("{} {} must end in {}".format(option, path, suffix))


def _check_options(config):
    fraction(config.conf, "--conf: the confidence threshold")
    iou_threshold(config.iou, "--iou: the NMS IoU threshold")
    positive_int(config.max_det, "--max-det")
    optional(positive_int, config.limit, "--limit")
    if config.ap not in AP_METHODS:
        raise InputError("--ap {}: use one of {}".format(config.ap, ", ".join(AP_METHODS)))
    return DetectOptions(config.conf, config.iou, config.max_det, multi_label=config.multi_label)


def evaluate(config):
    # type: (EvalConfig) -> dict
    """Run ``config``: the report dict (``edgecsp.evaluation.report.build_report``), written if asked.

    Every check that can fail (files, options, the chart's matplotlib, the COCO library) runs before the first
    image, and the report and chart are written only after both evaluations finished.
    """
    from edgecsp.evaluation.report import build_report, check_plotting, plot_report, write_report

    _check_output(config.report, ".json", "--report")
    _check_output(config.plot, ".png", "--plot")
    check_paths(config, PATHS)
    if config.plot:
        check_plotting()
    if config.coco:
        from edgecsp.evaluation.coco_eval import coco_library

        coco_library()
    options = _check_options(config)
    from edgecsp.evaluation.torch_runner import export_config, is_torch_spec

    for path in (config.engine, config.baseline):
        if is_torch_spec(path):
            export_config(path)  # a malformed torch: spec or a missing card fails before the first image
        elif path is not None and not os.path.isfile(path):
            raise InputError("artefact {} not found: pass an .xml or .onnx built by `edgecsp build`, or "
                             "torch:MODEL|CARD.json|CFG,WEIGHTS for the PyTorch model".format(path))
    dataset = CocoDataset(config.data, config.images, config.limit)
    result = _evaluate_one(config.engine, dataset, options, config, config.baseline)
    baseline = _evaluate_one(config.baseline, dataset, options, config, config.engine) if config.baseline else None
    report = build_report(result, baseline)
    if config.report:
        write_report(report, config.report)
    if config.plot:
        plot_report(report, config.plot)
    return report


def _evaluate_one(path, dataset, options, config, other=None):
    """Evaluate one artefact or ``torch:`` spec (a PyTorch model at the input size of the ``other`` artefact)."""
    from edgecsp.evaluation.torch_runner import open_model_runner

    with open_model_runner(path, threads=config.threads, beside=other) as runner:
        return evaluate_runner(runner, dataset, options, config.coco, config.progress, config.ap)
