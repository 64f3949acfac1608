"""The one post-processing path: a model's outputs -> detections in original-frame pixels.

Inference, evaluation and the parity checks all call :func:`postprocess`, so a threshold or coordinate
convention can only change in one place. Python 3.6 compatible; numpy only.
"""
from edgecsp.errors import UnsupportedError
from edgecsp.runtime.nms import (DEFAULT_MAX_CANDIDATES, Detections, best_class, nms_labelled, nms_per_class,
                                 top_detections)
from edgecsp.runtime.preprocess import scale_boxes_back
from edgecsp.validate import fraction, positive_int


def postprocess(outputs, meta, infos, orig_shapes=None, conf=0.25, iou=0.45, max_det=300, class_agnostic=False,
                max_candidates=DEFAULT_MAX_CANDIDATES, dense=False, multi_label=True):
    """Decode, threshold, NMS and map back to the original frames.

    ``outputs``: the model's outputs in ``meta.outputs`` order (or a dict by name) for a batch of N frames;
    ``infos``: the N :class:`~edgecsp.runtime.preprocess.LetterboxInfo` from ``preprocess``; ``orig_shapes``: N
    (height, width) to clip to (default: each info's ``orig_shape``). Returns a list of N
    :class:`~edgecsp.runtime.nms.Detections` in original-frame pixels, best score first.

    The model's output layout decodes (``edgecsp.runtime.layouts``): by default only the rows that can pass
    ``conf`` (its candidate decode); ``dense=True`` decodes every row first, the reference the tests hold the fast
    path to. Per-class scores go through multi-label NMS (every (box, class) pair above ``conf``, as darknet and
    mmdet do) or, with ``multi_label=False``, each box's best class (Ultralytics, YOLOX, YOLOv7); rows of a model
    that applied NMS itself are only thresholded and capped at ``max_det``.
    """
    if meta.task != "detect":
        raise UnsupportedError("postprocess handles detectors; this model's task is {!r}".format(meta.task))
    _check_thresholds(conf, iou, max_det)
    infos = list(infos)
    if orig_shapes is None:
        orig_shapes = [info.orig_shape for info in infos]
    orig_shapes = list(orig_shapes)
    layout = meta.spec
    if dense:  # the reference: every row decoded, then thresholded
        decoded = layout.decode(outputs, meta, len(infos))
    else:  # only the rows that can pass conf (same detections, a fraction of the work)
        decoded = layout.candidates(outputs, meta, conf, len(infos))
    if not (len(infos) == len(orig_shapes) == len(decoded)):
        raise ValueError("postprocess got a batch of {} outputs, {} letterbox infos and {} shapes".format(
            len(decoded), len(infos), len(orig_shapes)))
    suppressed = layout.nms_applied(meta)
    results = []
    for i, rows in enumerate(decoded):
        if rows.classes is None and multi_label:
            det = nms_per_class(rows.boxes, rows.scores, conf, iou, max_det, class_agnostic, max_candidates)
        else:
            scores, classes = (rows.scores, rows.classes) if rows.classes is not None else best_class(rows.scores)
            det = (top_detections(rows.boxes, scores, classes, conf, max_det) if suppressed else
                   nms_labelled(rows.boxes, scores, classes, conf, iou, max_det, class_agnostic, max_candidates))
        results.append(Detections(scale_boxes_back(det.boxes, infos[i], orig_shapes[i]), det.scores, det.class_ids))
    return results


def _check_thresholds(conf, iou, max_det):
    # These come straight from CLI options, so they are user input: a clear error, never an assert.
    fraction(conf, "the confidence threshold", hint="pass e.g. --conf 0.25")
    fraction(iou, "the IoU threshold", hint="pass e.g. --iou 0.45")
    positive_int(max_det, "max detections", hint="pass e.g. --max-det 300")
