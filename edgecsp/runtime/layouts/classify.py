"""Layout ``classify``: one ``(N, C)`` output of class logits or probabilities (``(N, C, 1, 1)`` from a final 1x1
convolution also fits). Written by edgecsp's classifiers and darknet cfgs without ``[yolo]`` (csdarknet53...)."""
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
