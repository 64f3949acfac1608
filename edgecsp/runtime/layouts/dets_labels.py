"""Layout ``dets_labels``: mmdeploy's end-to-end detector outputs, NMS already applied in the graph.

Written by mmdeploy (``torch2onnx`` of an mmdet detector for ONNX Runtime, ``model_type: end2end``): ``dets``
``(N, K, 5)`` rows ``x1, y1, x2, y2, score`` in network-input pixels and ``labels`` ``(N, K)`` integer classes. K
is usually dynamic; mmdeploy appends an all-zero row (score 0) to each image's survivors and pads the images of a
batch to the same K with zeros, so rows whose score is not above 0 are padding and never detections (mmdeploy's
``End2EndModel`` drops them too). The boxes are not clamped to the input; the runtime only thresholds them and
caps their count.
"""
import numpy as np

from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.layouts import Decoded, Layout, Recognised, as_outputs, check_array
from edgecsp.runtime.layouts.dist_points import RTMDET_PREPROCESS
from edgecsp.runtime.schema import Field, integer, optional


class DetsLabels(Layout):
    name = "dets_labels"
    writers = "mmdeploy end2end ONNX (dets (N, K, 5) x1,y1,x2,y2,score + labels (N, K)), e.g. RTMDet"
    fields = (Field("rows", optional(integer(1, 1 << 30))),)  # K when the model always writes that many rows

    def example(self):
        return {"input_size": (64, 64), "classes": 3, "params": {"rows": 10}}

    def sample(self, meta, rng, batch):
        corner = rng.random_sample((batch, 10, 2)) * 40
        dets = np.concatenate([corner, corner + rng.random_sample((batch, 10, 2)) * 20 + 1,
                               rng.random_sample((batch, 10, 1))], axis=2).astype(np.float32)
        dets[:, -1, :] = 0.0  # mmdeploy's padding row
        return [dets, rng.randint(0, meta.num_classes, (batch, 10)).astype(np.int64)]

    def output_count(self, meta):
        return 2

    def output_shape(self, meta, index):
        return (None, meta.params["rows"], 5) if index == 0 else (None, meta.params["rows"])

    def describe_output(self, meta, index):
        return "the (N, K, 5) dets x1,y1,x2,y2,score" if index == 0 else "the (N, K) labels"

    def output_dtype(self, meta, index):
        return "int64" if index == 1 else "float32"

    def nms_applied(self, meta):
        return True

    def decode(self, outputs, meta, batch=None):
        """Every image's rows except the padding (score <= 0), classes as int64."""
        dets, labels = as_outputs(outputs, meta, 2)
        dets, labels = check_array(dets, meta, self, 0), check_array(labels, meta, self, 1)
        if dets.shape[:2] != labels.shape:
            raise MetadataError("dets are shaped {} but labels {}: the outputs do not belong together; re-export "
                                "the model".format(tuple(dets.shape), tuple(labels.shape)))
        results = []
        for i in range(dets.shape[0]):
            live = dets[i, :, 4] > 0
            classes = np.rint(labels[i][live]).astype(np.int64)
            if classes.size and (classes.min() < 0 or classes.max() >= meta.num_classes):
                raise MetadataError("the model output class {} but its metadata has {} classes: the class names do "
                                    "not belong to this model; re-export it".format(
                                        int(classes.max() if classes.max() >= meta.num_classes else classes.min()),
                                        meta.num_classes))
            results.append(Decoded(np.ascontiguousarray(dets[i, live, :4]), np.ascontiguousarray(dets[i, live, 4]),
                                   classes))
        return results

    # -- import --------------------------------------------------------------------------------------------------
    def recognise(self, outputs, producer):
        """A 3-D (N, K, 5) output and a 2-D (N, K) one (mmdeploy names them dets and labels): mmdeploy's end2end
        export. mmdeploy writes no preprocessing into the file: RTMDet's is assumed, and said."""
        found = self._pair(outputs)
        if found is None:
            return None
        dets, labels, rows = found
        return Recognised({"rows": rows}, [outputs[dets][0], outputs[labels][0]], preprocess=dict(RTMDET_PREPROCESS),
                          family="mmdeploy end2end dets/labels (RTMDet's preprocessing assumed: BGR, ImageNet "
                                 "mean/std, padded bottom-right with 114; for other mmdet models pass "
                                 "--channel-order, --mean, --std, --pad-position)")

    def from_options(self, options, outputs, input_size):
        if set(options) - set(["rows"]):
            raise InputError("layout dets_labels takes no options but --param rows=K: leave the others out")
        found = self._pair(outputs)
        if found is None:
            raise InputError("layout dets_labels needs a (N, K, 5) dets and a (N, K) labels output, got {}".format(
                [[n, list(s) if s else s] for n, s in outputs]))
        if found[:2] != (0, 1):
            raise InputError("the model's outputs are labels then dets; layout dets_labels reads dets first: "
                             "let `edgecsp export --onnx` recognise it without --layout")
        return {"rows": options.get("rows", found[2])}

    @staticmethod
    def _pair(outputs):
        """``(index of dets, index of labels, K or None)`` when ``outputs`` are mmdeploy's two, else None."""
        if len(outputs) != 2 or any(s is None for _, s in outputs):
            return None
        order = sorted(range(2), key=lambda i: -len(outputs[i][1]))
        dets, labels = (outputs[i][1] for i in order)
        if len(dets) != 3 or len(labels) != 2 or dets[2] != 5:
            return None
        if any(a is not None and b is not None and a != b for a, b in zip(dets[:2], labels)):
            return None
        rows = dets[1] if dets[1] is not None else labels[1]
        return order[0], order[1], rows
