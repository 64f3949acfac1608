"""Run two artefacts (any backends and precisions) on the same inputs and compare their raw outputs.

For each output: max/mean absolute difference, max/mean relative difference (``|a - b| / max(|a|, |b|)``,
0 where both are 0), the NaN/Inf counts of either side, and how many elements are outside
``|a - b| <= atol + rtol * max(|a|, |b|)``. A comparison passes when no element is outside and neither side
has a NaN or Inf. Outputs are matched by position in ``meta.heads`` order.
"""
from typing import List, NamedTuple

import numpy as np

from edgecsp.errors import InputError
from edgecsp.validate import number_in

DEFAULT_DATA = "shapes:0"
DEFAULT_COUNT = 8


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


class CompareResult(NamedTuple):
    a: str
    b: str
    batches: int
    atol: float
    rtol: float
    outputs: List[OutputDiff]

    @property
    def passed(self):
        return all(o.passed for o in self.outputs)

    def to_dict(self):
        return {"a": self.a, "b": self.b, "batches": self.batches, "atol": self.atol, "rtol": self.rtol,
                "passed": self.passed,
                "outputs": [dict(o._asdict(), shape=list(o.shape), passed=o.passed) for o in self.outputs]}


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


def _check_tolerance(value, option):
    return number_in(value, option, 0.0)


def _batches(data, meta_a, meta_b, count, seed):
    """``(batch for A, batch for B)`` pairs: each image preprocessed as each artefact takes it (a uint8-input
    build and a float one of the same model get the same pixels in their own form); given arrays go to both."""
    if data is None or isinstance(data, str):
        from edgecsp.calibration.sources import select_samples
        from edgecsp.runtime.preprocess import preprocess

        samples = select_samples(data or DEFAULT_DATA, count, seed)
        same = meta_a.input_form == meta_b.input_form
        return ((lambda x: (x, x if same else preprocess([frame], meta_b)[0]))(preprocess([frame], meta_a)[0])
                for frame in samples.frames())
    return ((batch, batch) for batch in data)


def compare_artefacts(a, b, inputs=None, atol=1e-3, rtol=1e-3, count=DEFAULT_COUNT, seed=0, threads=None):
    """Run artefacts ``a`` and ``b`` on the same inputs; a :class:`CompareResult`.

    ``inputs``: float32 NCHW batches, or a source spec (folder, video, COCO json, image, ``shapes:SEED``) of
    which ``count`` images are drawn with ``seed`` and preprocessed as ``a``'s metadata says (default
    ``shapes:0``). InputError when the two take different inputs or have different outputs.
    """
    from edgecsp.backends import open_runner
    from edgecsp.calibration.provenance import preprocessing_of

    atol, rtol = _check_tolerance(atol, "--atol"), _check_tolerance(rtol, "--rtol")
    options = {"threads": threads} if threads else {}
    with open_runner(a, **options) as runner_a, open_runner(b, **options) as runner_b:
        if preprocessing_of(runner_a.meta) != preprocessing_of(runner_b.meta):
            raise InputError("{} and {} take differently preprocessed inputs ({} vs {}): compare artefacts of the "
                             "same model".format(a, b, preprocessing_of(runner_a.meta),
                                                 preprocessing_of(runner_b.meta)))
        if len(runner_a.output_names) != len(runner_b.output_names):
            raise InputError("{} has {} outputs but {} has {}: compare artefacts of the same model".format(
                a, len(runner_a.output_names), b, len(runner_b.output_names)))
        accumulators = [_Accumulator(name) for name in runner_a.output_names]
        batches = 0
        for batch_a, batch_b in _batches(inputs, runner_a.meta, runner_b.meta, count, seed):
            outs_a, outs_b = runner_a.infer(batch_a), runner_b.infer(batch_b)
            for acc, out_a, out_b in zip(accumulators, outs_a, outs_b):
                if np.shape(out_a) != np.shape(out_b):
                    raise InputError("output {} of {} is shaped {} but {}'s is {}: compare artefacts of the same "
                                     "model".format(acc.name, a, np.shape(out_a), b, np.shape(out_b)))
                acc.add(out_a, out_b, atol, rtol)
            batches += 1
    if not batches:
        raise InputError("no inputs to compare: pass --data with images, a video or shapes:SEED")
    return CompareResult(str(a), str(b), batches, atol, rtol, [acc.result() for acc in accumulators])


def format_compare(result):
    """The comparison as a table, one line per output, and a PASS/FAIL line."""
    header = "{:<12} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9}".format(
        "output", "max abs", "mean abs", "max rel", "mean rel", "NaN/Inf A", "NaN/Inf B", "outside")
    lines = [header]
    for o in result.outputs:
        lines.append("{:<12} {:>11.4g} {:>11.4g} {:>11.4g} {:>11.4g} {:>9d} {:>9d} {:>9d}".format(
            o.name[:12], o.max_abs, o.mean_abs, o.max_rel, o.mean_rel, o.nonfinite_a, o.nonfinite_b, o.outside))
    verdict = "PASS" if result.passed else "FAIL"
    lines.append("{}: {} batches, atol {:g}, rtol {:g} (|a-b| <= atol + rtol * max(|a|, |b|), no NaN/Inf)".format(
        verdict, result.batches, result.atol, result.rtol))
    return "\n".join(lines)
