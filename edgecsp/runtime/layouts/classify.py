"""Layout ``classify``: one ``(N, C)`` output of class logits or probabilities (``(N, C, 1, 1)`` from a final 1x1
convolution also fits). Written by edgecsp's classifiers and darknet cfgs without ``[yolo]`` (csdarknet53...).

``top_classes`` turns a batch's output into each frame's best classes (:class:`Classification`), what
``edgecsp infer`` writes and draws for a classifier. Python 3.6 compatible; numpy only."""
from typing import NamedTuple

import numpy as np

from edgecsp.runtime.layouts import Layout
from edgecsp.runtime.schema import Field, flag


class Classify(Layout):
    name = "classify"
    task = "classify"
    writers = "edgecsp's CSP classifiers, darknet classifier cfgs ([softmax] last: probabilities)"
    fields = (Field("probabilities", flag(), default=False),)  # softmax already applied
    legacy_names = ("logits", "probs")

    def example(self):
        return {"input_size": (64, 64), "classes": 4, "params": {"probabilities": False}}

    def params_from_format_1(self, document, old_name):
        return {"probabilities": old_name == "probs"}

    def output_shape(self, meta, index):
        return (None, meta.num_classes)

    def shape_fits(self, meta, index, dims):
        return (len(dims) >= 2 and dims[1] in (None, meta.num_classes)
                and all(d in (None, 1) for d in dims[2:]))

    def describe_output(self, meta, index):
        return "a (N, classes) output"

    def decode(self, outputs, meta, batch=None):
        from edgecsp.errors import UnsupportedError

        raise UnsupportedError("{} is a classifier: detection post-processing does not apply to it".format(
            meta.model or "the model"))

    def recognise(self, outputs, producer):
        return None  # an imported ONNX is a detector; classifiers come from edgecsp's registry or darknet


def probabilities(output, meta):
    """Class probabilities (N, C) from the output (softmax unless the model applied it)."""
    out = np.asarray(output, dtype=np.float32).reshape(np.asarray(output).shape[0], -1)
    if meta.params["probabilities"]:
        return out
    shifted = out - out.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    return shifted / shifted.sum(axis=1, keepdims=True)


class Classification(NamedTuple):
    """One frame's best classes, best first: ``class_ids`` (k,) int64 and their probabilities ``scores`` (k,)
    float32. A classifier's counterpart of ``edgecsp.runtime.nms.Detections``."""

    class_ids: np.ndarray
    scores: np.ndarray


def top_classes(output, meta, k=5, classes=None):
    """The ``k`` most probable classes of each frame of the output batch: a list of N :class:`Classification`.
    ``classes``: class ids to choose from (None: all); probabilities stay those over all the model's classes."""
    probs = probabilities(output, meta)
    allowed = np.arange(probs.shape[1]) if classes is None else np.asarray(sorted(set(classes)), dtype=np.int64)
    results = []
    for row in probs[:, allowed]:
        order = np.argsort(-row, kind="mergesort")[:max(0, int(k))]  # stable: ties give the lower id first
        results.append(Classification(allowed[order].astype(np.int64), row[order].astype(np.float32)))
    return results


def class_records(result, names=None, score_decimals=5):
    """A Classification as JSON-ready dicts ``{"class_id", "name", "score"}``, best first (as ``to_records``)."""
    names = list(names) if names is not None else []
    records = []
    for cid, score in zip(result.class_ids.tolist(), result.scores.tolist()):
        cid = int(cid)
        records.append({"class_id": cid, "name": names[cid] if 0 <= cid < len(names) else str(cid),
                        "score": round(score, score_decimals) if score_decimals is not None else score})
    return records
