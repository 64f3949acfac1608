"""The one post-processing path: a model's outputs -> detections in original-frame pixels.

Inference, evaluation and the parity checks all call :func:`postprocess`, so a threshold or coordinate
convention can only change in one place. Python 3.6 compatible; numpy only.
"""
import numpy as np

from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.nms import (DEFAULT_MAX_CANDIDATES, Detections, best_class, nms_labelled, nms_per_class,
                                 top_detections)
from edgecsp.runtime.preprocess import scale_boxes_back
from edgecsp.validate import ascii_digits, fraction, positive_int

_LISTED = 30  # class names an unknown --classes value lists (ImageNet has 1000)


def postprocess(outputs, meta, infos, orig_shapes=None, conf=0.25, iou=0.45, max_det=300, class_agnostic=False,
                max_candidates=DEFAULT_MAX_CANDIDATES, dense=False, multi_label=True, classes=None):
    """Decode, threshold, NMS and map back to the original frames.

    ``outputs``: the model's outputs in ``meta.outputs`` order (or a dict by name) for a batch of N frames;
    ``infos``: the N :class:`~edgecsp.runtime.preprocess.LetterboxInfo` from ``preprocess``; ``orig_shapes``: N
    (height, width) to clip to (default: each info's ``orig_shape``). Returns a list of N
    :class:`~edgecsp.runtime.nms.Detections` in original-frame pixels, best score first.

    The model's output layout decodes (``edgecsp.runtime.layouts``): by default only the rows that can pass
    ``conf`` (its candidate decode); ``dense=True`` decodes every row first, the reference the tests hold the fast
    path to. Per-class scores go through multi-label NMS (every (box, class) pair above ``conf``, as darknet and
    mmdet do) or, with ``multi_label=False``, each box's best class (Ultralytics, YOLOX, YOLOv7); rows of a model
    that applied NMS itself are only thresholded and capped at ``max_det``. ``classes`` (class ids, see
    :func:`class_ids_of`) keeps only those classes, before NMS as Ultralytics does: multi-label drops the other
    classes' scores, single-label drops the boxes whose best class is another one.
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
    keep = None if classes is None else np.asarray(sorted(set(int(c) for c in classes)), dtype=np.int64)
    for i, rows in enumerate(decoded):
        if rows.classes is None and multi_label:
            scores = rows.scores
            if keep is not None:
                scores = np.zeros_like(scores)
                scores[:, keep] = rows.scores[:, keep]
            det = nms_per_class(rows.boxes, scores, conf, iou, max_det, class_agnostic, max_candidates)
        else:
            boxes = rows.boxes
            scores, labels = (rows.scores, rows.classes) if rows.classes is not None else best_class(rows.scores)
            if keep is not None:
                wanted = _member(labels, keep)
                boxes, scores, labels = boxes[wanted], scores[wanted], labels[wanted]
            det = (top_detections(boxes, scores, labels, conf, max_det) if suppressed else
                   nms_labelled(boxes, scores, labels, conf, iou, max_det, class_agnostic, max_candidates))
        results.append(Detections(scale_boxes_back(det.boxes, infos[i], orig_shapes[i]), det.scores, det.class_ids))
    return results


def _check_thresholds(conf, iou, max_det):
    # These come straight from CLI options, so they are user input: a clear error, never an assert.
    fraction(conf, "the confidence threshold", hint="pass e.g. --conf 0.25")
    fraction(iou, "the IoU threshold", hint="pass e.g. --iou 0.45")
    positive_int(max_det, "max detections", hint="pass e.g. --max-det 300")


def _member(labels, keep):
    """Which ``labels`` are in ``keep``: a lookup table, one pass (np.in1d is gone from recent numpy)."""
    labels = np.asarray(labels, dtype=np.int64)
    if not labels.size:
        return np.zeros(0, dtype=bool)
    table = np.zeros(int(max(labels.max(), keep.max() if keep.size else -1)) + 1, dtype=bool)  # no initial=: 1.15+
    table[keep] = True
    return table[labels]


def class_ids_of(values, names, flag="--classes"):
    """The class ids ``values`` name: class names (exact, else case-insensitive) or ids, as given on the command
    line (``"person,car"`` names two, unless a class is called so); None for None. InputError listing the model's
    classes for one it does not have."""
    if values is None:
        return None
    names = [str(n) for n in names]
    folded = {}
    for i, name in enumerate(names):
        folded.setdefault(name.lower(), []).append(i)
    ids = []
    values = list(values)
    while values:
        value = values.pop(0)
        text = str(value).strip()
        if text not in names and text.lower() not in folded and "," in text:  # "person,car": several classes
            values[:0] = [part for part in text.split(",") if part.strip()]
            continue
        if text in names:
            ids.append(names.index(text))
        elif len(folded.get(text.lower(), ())) == 1:
            ids.append(folded[text.lower()][0])
        elif ascii_digits(text) and int(text) < len(names):
            ids.append(int(text))
        else:
            listed = ", ".join("{} {}".format(i, n) for i, n in enumerate(names[:_LISTED]))
            if len(names) > _LISTED:
                listed += " ... and {} more (ids up to {})".format(len(names) - _LISTED, len(names) - 1)
            raise InputError("{} {}: the model has no such class name or id; its classes are {}".format(
                flag, text, listed))
    if not ids:
        raise InputError("{} names no class: give class names or ids".format(flag))
    return tuple(sorted(set(ids)))
