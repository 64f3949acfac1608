"""Run two artefacts (any backends and precisions of one model) on the same inputs: do they find the same objects?

The verdict is detection-level by default. Both artefacts' outputs go through the runtime's own post-processing
(the model family's NMS rule) and:

* **matched boxes**: per frame and class, A's detections at ``conf`` are matched greedily (by descending score)
  to B's at ``conf`` of the same class with IoU >= ``MATCH_IOU`` (0.5); per class: B's and A's counts, how many
  matched, the largest box-coordinate difference (original pixels) and score difference of a matched pair;
* **mAP of A against B**: B's detections at ``conf`` are taken as the ground truth and A's, ranked down to
  ``RANK_CONF`` (0.001, as ``edgecsp eval``), are scored against it (``evaluate_detections``: mAP@0.5 and
  mAP@0.5:0.95). A box whose score crosses ``conf`` between the two builds is not a miss here, only a lower rank.

A comparison passes when A's mAP@0.5 against B is at least ``min_map`` (default 0.95; when B finds nothing, when
A finds nothing either) and neither side's raw outputs hold a NaN or Inf. The raw-tensor check is an option
(``tensors=True``, or any ``atol``/``rtol`` given): per output, max/mean absolute difference, max/mean relative
difference (``|a - b| / max(|a|, |b|)``, 0 where both are 0), the NaN/Inf counts of either side, and the elements
outside ``|a - b| <= atol + rtol * max(|a|, |b|)``; with it, any element outside fails. The raw differences are
always measured and reported. Outputs are matched by position in ``meta.heads`` order. A classifier (no boxes)
is judged by the raw-tensor check alone.
"""
from typing import List, NamedTuple, Optional

import numpy as np

from edgecsp.errors import InputError, VerificationError
from edgecsp.validate import fraction, number_in

DEFAULT_DATA = "shapes:0"
DEFAULT_COUNT = 32
DEFAULT_CONF = 0.25  # what counts as a detection for the matching and as B's ground truth
DEFAULT_MIN_MAP = 0.95  # the verdict: A's mAP@0.5 against B's detections
DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-3
MATCH_IOU = 0.5
RANK_CONF = 0.001  # A's detections are ranked down to here for its mAP against B (as `edgecsp eval`)
RANK_MAX_DET = 100


class OutputDiff(NamedTuple):
    name: str
    shape: tuple
    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    nonfinite_a: int  # NaN or Inf elements in A's output
    nonfinite_b: int
    nan_a: int
    nan_b: int
    outside: int  # elements outside atol + rtol * max(|a|, |b|) (NaN/Inf count as outside)
    elements: int

    @property
    def passed(self):
        return self.outside == 0 and self.nonfinite_a == 0 and self.nonfinite_b == 0


class ClassMatch(NamedTuple):
    """One class over all frames: B's and A's detections at ``conf``, how many matched, the worst matched pair."""

    name: str
    boxes_b: int
    boxes_a: int
    matched: int
    max_box_diff: float  # largest |coordinate difference| of a matched pair, original pixels
    max_score_diff: float  # largest |score difference| of a matched pair

    @property
    def only_a(self):
        return self.boxes_a - self.matched

    @property
    def only_b(self):
        return self.boxes_b - self.matched


class FrameMatch(NamedTuple):
    """One frame whose detections differ (a box only in A or only in B)."""

    index: int
    boxes_b: int
    boxes_a: int
    matched: int


class DetectionAgreement(NamedTuple):
    conf: float
    match_iou: float
    classes: List[ClassMatch]  # classes found by either side
    frames: List[FrameMatch]  # only the frames with a box in one side alone
    map50: Optional[float]  # A against B's detections as ground truth; None when B found nothing
    map50_95: Optional[float]

    @property
    def boxes_b(self):
        return sum(c.boxes_b for c in self.classes)

    @property
    def boxes_a(self):
        return sum(c.boxes_a for c in self.classes)

    @property
    def matched(self):
        return sum(c.matched for c in self.classes)

    def to_dict(self):
        return {"conf": self.conf, "match_iou": self.match_iou, "map50": self.map50, "map50_95": self.map50_95,
                "boxes_b": self.boxes_b, "boxes_a": self.boxes_a, "matched": self.matched,
                "classes": [dict(c._asdict(), only_a=c.only_a, only_b=c.only_b) for c in self.classes],
                "frames_differing": [f._asdict() for f in self.frames]}


class CompareResult(NamedTuple):
    a: str
    b: str
    batches: int
    atol: float
    rtol: float
    outputs: List[OutputDiff]
    detections: Optional[DetectionAgreement] = None  # None for a classifier
    min_map: float = DEFAULT_MIN_MAP
    tensors: bool = True  # whether the raw-tensor tolerances are part of the verdict

    @property
    def failures(self):
        """Why the comparison fails, one phrase per reason; empty when it passes."""
        reasons = []
        nonfinite = [o.name for o in self.outputs if o.nonfinite_a or o.nonfinite_b]
        if nonfinite:
            sides = [side for side, count in (("A", sum(o.nonfinite_a for o in self.outputs)),
                                              ("B", sum(o.nonfinite_b for o in self.outputs))) if count]
            reasons.append("{} produce{} NaN/Inf in output(s) {}".format(
                " and ".join(sides), "" if len(sides) > 1 else "s", ", ".join(nonfinite)))
        det = self.detections
        if det is not None:
            if det.map50 is None:
                if det.boxes_a:
                    reasons.append("B found no object at conf {:g} but A found {}".format(det.conf, det.boxes_a))
            elif det.map50 < self.min_map:
                reasons.append("A's mAP@0.5 against B's detections is {:.4f}, below --min-map {:g} ({} of B's {} "
                               "boxes matched at IoU {:g}, {} only in A)".format(
                                   det.map50, self.min_map, det.matched, det.boxes_b, det.match_iou,
                                   det.boxes_a - det.matched))
        if self.tensors or det is None:
            outside = [o.name for o in self.outputs if o.outside and o.name not in nonfinite]
            if outside:
                reasons.append("raw outputs differ beyond atol {:g} / rtol {:g} in output(s) {}".format(
                    self.atol, self.rtol, ", ".join(outside)))
        return reasons

    @property
    def passed(self):
        return not self.failures

    def to_dict(self):
        return {"a": self.a, "b": self.b, "batches": self.batches, "atol": self.atol, "rtol": self.rtol,
                "min_map": self.min_map, "tensors_checked": self.tensors or self.detections is None,
                "passed": self.passed, "failures": self.failures,
                "detections": None if self.detections is None else self.detections.to_dict(),
                "outputs": [dict(o._asdict(), shape=list(o.shape), passed=o.passed) for o in self.outputs]}


def require_agreement(result):
    """``result`` when it passes; VerificationError (exit code 6) naming every reason it fails otherwise."""
    if result.failures:
        raise VerificationError("{} and {} disagree: {}".format(result.a, result.b, "; ".join(result.failures)))
    return result


class _Accumulator(object):
    def __init__(self, name):
        self.name, self.shape = name, ()
        self.max_abs = self.max_rel = 0.0
        self.sum_abs = self.sum_rel = 0.0
        self.finite = 0
        self.nonfinite_a = self.nonfinite_b = self.nan_a = self.nan_b = self.outside = self.elements = 0

    def add(self, a, b, atol, rtol):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        self.shape = a.shape
        finite = np.isfinite(a) & np.isfinite(b)
        self.nonfinite_a += int((~np.isfinite(a)).sum())
        self.nonfinite_b += int((~np.isfinite(b)).sum())
        self.nan_a += int(np.isnan(a).sum())
        self.nan_b += int(np.isnan(b).sum())
        fa, fb = a[finite], b[finite]
        diff = np.abs(fa - fb)
        scale = np.maximum(np.abs(fa), np.abs(fb))
        rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), 0.0)
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(self.max_rel, float(rel.max()))
        self.sum_abs += float(diff.sum())
        self.sum_rel += float(rel.sum())
        self.finite += int(diff.size)
        self.outside += int((diff > atol + rtol * scale).sum()) + int((~finite).sum())
        self.elements += int(a.size)

    def result(self):
        n = max(1, self.finite)
        return OutputDiff(self.name, tuple(int(d) for d in self.shape), self.max_abs, self.sum_abs / n,
                          self.max_rel, self.sum_rel / n, self.nonfinite_a, self.nonfinite_b, self.nan_a,
                          self.nan_b, self.outside, self.elements)


def match_detections(det_a, det_b, iou=MATCH_IOU):
    """Greedy same-class matching of ``det_a`` (by descending score) to ``det_b``: ``[(i_a, i_b), ...]``.

    Each of A's detections takes B's unmatched detection of its class with the highest IoU, if that is >= ``iou``
    (the rule of COCO's evaluation, B playing the ground truth).
    """
    from edgecsp.evaluation.detection_map import box_iou

    pairs = []
    taken = np.zeros(len(det_b.scores), bool)
    ious = box_iou(det_a.boxes, det_b.boxes)
    same = det_a.class_ids[:, None] == det_b.class_ids[None, :]
    for i in np.argsort(-np.asarray(det_a.scores, np.float64), kind="mergesort"):
        candidates = np.where(same[i] & ~taken, ious[i], -1.0)
        j = int(candidates.argmax()) if candidates.size else -1
        if j >= 0 and candidates[j] >= iou:
            taken[j] = True
            pairs.append((int(i), j))
    return pairs


class _DetectionAccumulator(object):
    """Matches per frame; A's ranked detections and B's as ground truth for the mAP at the end."""

    def __init__(self, names, conf):
        self.names, self.conf = list(names), conf
        n = len(self.names)
        self.boxes_a, self.boxes_b, self.matched = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.box_diff, self.score_diff = np.zeros(n), np.zeros(n)
        self.frames, self.ranked, self.truths = [], [], []

    def add(self, det_a, det_b, ranked_a):
        n = len(self.names)
        pairs = match_detections(det_a, det_b)
        self.boxes_a += np.bincount(det_a.class_ids, minlength=n)[:n]
        self.boxes_b += np.bincount(det_b.class_ids, minlength=n)[:n]
        for i, j in pairs:
            c = int(det_a.class_ids[i])
            self.matched[c] += 1
            self.box_diff[c] = max(self.box_diff[c], float(np.abs(det_a.boxes[i] - det_b.boxes[j]).max()))
            self.score_diff[c] = max(self.score_diff[c], abs(float(det_a.scores[i]) - float(det_b.scores[j])))
        if len(pairs) != len(det_a.scores) or len(pairs) != len(det_b.scores):
            self.frames.append(FrameMatch(len(self.ranked), len(det_b.scores), len(det_a.scores), len(pairs)))
        self.ranked.append((ranked_a.boxes, ranked_a.scores, ranked_a.class_ids))
        self.truths.append((det_b.boxes, det_b.class_ids))

    def result(self):
        from edgecsp.evaluation.detection_map import evaluate_detections

        map50 = map50_95 = None
        if self.boxes_b.sum():
            scores = evaluate_detections(self.ranked, self.truths, len(self.names), max_detections=RANK_MAX_DET)
            map50, map50_95 = scores["map50"], scores["map50_95"]
        classes = [ClassMatch(self.names[c], int(self.boxes_b[c]), int(self.boxes_a[c]), int(self.matched[c]),
                              float(self.box_diff[c]), float(self.score_diff[c]))
                   for c in range(len(self.names)) if self.boxes_a[c] or self.boxes_b[c]]
        return DetectionAgreement(self.conf, MATCH_IOU, classes, self.frames, map50, map50_95)


def _batches(data, meta_a, meta_b, count, seed):
    """``(batch for A, batch for B, letterbox infos)``: each image preprocessed as each artefact takes it (a
    uint8-input build and a float one of the same model get the same pixels in their own form); given arrays go
    to both, their boxes staying in network-input pixels."""
    from edgecsp.runtime.preprocess import LetterboxInfo, preprocess

    if data is None or isinstance(data, str):
        from edgecsp.calibration.sources import select_samples

        spec = data or DEFAULT_DATA
        probe = select_samples(spec, 1, seed)  # a folder, json or video may hold fewer: then all of them
        if probe.kind != "shapes" and probe.available < count:
            count = probe.available
        same = meta_a.input_form == meta_b.input_form
        for frame in select_samples(spec, count, seed).frames():
            batch_a, infos = preprocess([frame], meta_a)
            yield batch_a, batch_a if same else preprocess([frame], meta_b)[0], infos
        return
    size = tuple(int(v) for v in meta_a.input_size)
    for batch in data:
        infos = [LetterboxInfo(1.0, 0, 0, 1.0, 1.0, size, size) for _ in range(len(batch))]
        yield batch, batch, infos


def _boxes(outputs, meta, infos, options):
    """Detections of one batch, in original pixels, with the model family's NMS rule (as ``edgecsp infer``)."""
    from edgecsp.runtime.pipeline import resolved
    from edgecsp.runtime.postprocess import postprocess

    nms = resolved(options, meta)
    return postprocess(outputs, meta, infos, conf=nms.conf, iou=nms.iou, max_det=nms.max_det,
                       multi_label=nms.multi_label)


def _check_tolerance(value, option):
    return number_in(value, option, 0.0)


def compare_artefacts(a, b, inputs=None, atol=None, rtol=None, count=DEFAULT_COUNT, seed=0, threads=None,
                      conf=DEFAULT_CONF, min_map=DEFAULT_MIN_MAP, tensors=False):
    """Run artefacts ``a`` and ``b`` on the same inputs; a :class:`CompareResult` (``.passed``, ``.failures``).

    ``inputs``: a source spec (folder, video, COCO json, image, ``shapes:SEED``) of which ``count`` images (all
    of them where it has fewer) are drawn with ``seed`` and preprocessed as each artefact's metadata says (default ``shapes:0``), or batches as
    ``preprocess`` makes them. ``conf``: the score above which a box counts (B's ground truth, the matching);
    ``min_map``: the least mAP@0.5 of A against B that passes. ``tensors=True``, or an ``atol``/``rtol`` given,
    makes the raw-tensor tolerances (default 1e-3 each) part of the verdict. InputError when the two take
    different inputs or have different outputs.
    """
    from edgecsp.calibration.provenance import preprocessing_of
    from edgecsp.runtime.pipeline import DetectOptions

    tensors = bool(tensors) or atol is not None or rtol is not None
    atol = _check_tolerance(DEFAULT_ATOL if atol is None else atol, "--atol")
    rtol = _check_tolerance(DEFAULT_RTOL if rtol is None else rtol, "--rtol")
    conf = fraction(conf, "--conf: the score a detection needs")
    min_map = fraction(min_map, "--min-map: the least mAP@0.5 of A against B")
    from edgecsp.evaluation.torch_runner import open_model_runner  # an artefact, or torch:... (the PyTorch model)

    with open_model_runner(a, threads, beside=b) as runner_a, open_model_runner(b, threads, beside=a) as runner_b:
        meta_a, meta_b = runner_a.meta, runner_b.meta
        if preprocessing_of(meta_a) != preprocessing_of(meta_b):
            raise InputError("{} and {} take differently preprocessed inputs ({} vs {}): compare artefacts of the "
                             "same model".format(a, b, preprocessing_of(meta_a), preprocessing_of(meta_b)))
        if len(runner_a.output_names) != len(runner_b.output_names):
            raise InputError("{} has {} outputs but {} has {}: compare artefacts of the same model".format(
                a, len(runner_a.output_names), b, len(runner_b.output_names)))
        boxes = meta_a.task == "detect" and meta_b.task == "detect"
        if boxes and list(meta_a.names) != list(meta_b.names):
            raise InputError("{} and {} name their classes differently ({} vs {}): compare artefacts of the same "
                             "model".format(a, b, ", ".join(meta_a.names[:5]), ", ".join(meta_b.names[:5])))
        found = _DetectionAccumulator(meta_a.names, conf) if boxes else None
        accumulators = [_Accumulator(name) for name in runner_a.output_names]
        batches = 0
        for batch_a, batch_b, infos in _batches(inputs, meta_a, meta_b, count, seed):
            outs_a, outs_b = runner_a.infer(batch_a), runner_b.infer(batch_b)
            for acc, out_a, out_b in zip(accumulators, outs_a, outs_b):
                if np.shape(out_a) != np.shape(out_b):
                    raise InputError("output {} of {} is shaped {} but {}'s is {}: compare artefacts of the same "
                                     "model".format(acc.name, a, np.shape(out_a), b, np.shape(out_b)))
                acc.add(out_a, out_b, atol, rtol)
            if found is not None:
                counted, ranked = DetectOptions(conf=conf), DetectOptions(RANK_CONF, max_det=RANK_MAX_DET)
                for det_a, det_b, ranked_a in zip(_boxes(outs_a, meta_a, infos, counted),
                                                  _boxes(outs_b, meta_b, infos, counted),
                                                  _boxes(outs_a, meta_a, infos, ranked)):
                    found.add(det_a, det_b, ranked_a)
            batches += 1
    if not batches:
        raise InputError("no inputs to compare: pass --data with images, a video or shapes:SEED")
    return CompareResult(str(a), str(b), batches, atol, rtol, [acc.result() for acc in accumulators],
                         None if found is None else found.result(), min_map, tensors)


def format_compare(result):
    """The comparison as text: the matched boxes per class, A's mAP against B, the raw outputs, the verdict."""
    lines = []
    det = result.detections
    if det is not None:
        lines.append("{:<12} {:>7} {:>7} {:>7} {:>6} {:>6} {:>11} {:>10}".format(
            "class", "B boxes", "A boxes", "matched", "only B", "only A", "max box px", "max score"))
        for c in det.classes:
            lines.append("{:<12} {:>7d} {:>7d} {:>7d} {:>6d} {:>6d} {:>11.3g} {:>10.3g}".format(
                c.name[:12], c.boxes_b, c.boxes_a, c.matched, c.only_b, c.only_a, c.max_box_diff, c.max_score_diff))
        lines.append("boxes at conf {:g}, matched at IoU {:g} (same class): {} of B's {} matched, {} only in A; "
                     "{} of {} frames differ{}".format(
                         det.conf, det.match_iou, det.matched, det.boxes_b, det.boxes_a - det.matched,
                         len(det.frames), result.batches,
                         (" (" + ", ".join("frame {}: {} only in B, {} only in A".format(
                             f.index, f.boxes_b - f.matched, f.boxes_a - f.matched) for f in det.frames[:3])
                          + (", ..." if len(det.frames) > 3 else "") + ")") if det.frames else ""))
        if det.map50 is None:
            lines.append("mAP of A against B: undefined (B found no object at conf {:g})".format(det.conf))
        else:
            lines.append("mAP of A against B's detections as ground truth: mAP@0.5 {:.4f}, mAP@0.5:0.95 {:.4f}"
                         .format(det.map50, det.map50_95))
    lines.append("{:<12} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9}".format(
        "output", "max abs", "mean abs", "max rel", "mean rel", "NaN/Inf A", "NaN/Inf B", "outside"))
    for o in result.outputs:
        lines.append("{:<12} {:>11.4g} {:>11.4g} {:>11.4g} {:>11.4g} {:>9d} {:>9d} {:>9d}".format(
            o.name[:12], o.max_abs, o.mean_abs, o.max_rel, o.mean_rel, o.nonfinite_a, o.nonfinite_b, o.outside))
    tensors = result.tensors or det is None
    rule = []
    if det is not None:
        rule.append("mAP@0.5 of A against B >= {:g}".format(result.min_map))
    if tensors:
        rule.append("|a-b| <= atol {:g} + rtol {:g} * max(|a|, |b|)".format(result.atol, result.rtol))
    rule.append("no NaN/Inf")
    lines.append("{}: {} images; {}{}".format("PASS" if result.passed else "FAIL", result.batches, ", ".join(rule),
                                              "" if tensors else " (raw outputs not judged: --tensors)"))
    return "\n".join(lines)
