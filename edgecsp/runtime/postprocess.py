"""The one post-processing path: raw head outputs -> detections in original-frame pixels.

Inference, evaluation and the parity checks all call :func:`postprocess`, so a threshold or coordinate
convention can only change in one place. Python 3.6 compatible; numpy only.
"""
from edgecsp.errors import UnsupportedError
from edgecsp.runtime.decode import decode_candidates, decode_yolo
from edgecsp.runtime.nms import DEFAULT_MAX_CANDIDATES, Detections, nms_per_class
from edgecsp.runtime.preprocess import scale_boxes_back
from edgecsp.validate import fraction, positive_int


def postprocess(outputs, meta, infos, orig_shapes=None, conf=0.25, iou=0.45, max_det=300, class_agnostic=False,
                max_candidates=DEFAULT_MAX_CANDIDATES, dense=False):
    """Decode, threshold, NMS and map back to the original frames.

    ``outputs``: the model's outputs in ``meta.heads`` order (or a dict by ``meta.outputs`` name) for a batch
    of N frames; ``infos``: the N :class:`~edgecsp.runtime.preprocess.LetterboxInfo` from ``preprocess``;
    ``orig_shapes``: N (height, width) to clip to (default: each info's ``orig_shape``).
    Returns a list of N :class:`~edgecsp.runtime.nms.Detections` in original-frame pixels, best score first.
    Only cells whose objectness logit reaches the inverse sigmoid of ``conf`` are decoded (``decode_candidates``);
    ``dense=True`` decodes the whole grid first, the reference the tests hold the fast path to.
    """
    if meta.task != "detect":
        raise UnsupportedError("postprocess handles detectors; this model's task is {!r}".format(meta.task))
    _check_thresholds(conf, iou, max_det)
    infos = list(infos)
    if orig_shapes is None:
        orig_shapes = [info.orig_shape for info in infos]
    orig_shapes = list(orig_shapes)
    if dense:  # the reference: every cell decoded, then thresholded
        boxes, scores = decode_yolo(outputs, meta)
        decoded = [(boxes[i], scores[i]) for i in range(boxes.shape[0])]
    else:  # only the cells whose objectness can pass conf (same detections, a fraction of the work)
        decoded = decode_candidates(outputs, meta, conf)
    if not (len(infos) == len(orig_shapes) == len(decoded)):
        raise ValueError("postprocess got a batch of {} outputs, {} letterbox infos and {} shapes".format(
            len(decoded), len(infos), len(orig_shapes)))
    results = []
    for i, (boxes, scores) in enumerate(decoded):
        det = nms_per_class(boxes, scores, conf, iou, max_det, class_agnostic, max_candidates)
        results.append(Detections(scale_boxes_back(det.boxes, infos[i], orig_shapes[i]), det.scores, det.class_ids))
    return results


def _check_thresholds(conf, iou, max_det):
    # These come straight from CLI options, so they are user input: a clear error, never an assert.
    fraction(conf, "the confidence threshold", hint="pass e.g. --conf 0.25")
    fraction(iou, "the IoU threshold", hint="pass e.g. --iou 0.45")
    positive_int(max_det, "max detections", hint="pass e.g. --max-det 300")
