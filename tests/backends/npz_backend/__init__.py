"""A sixth backend that lives outside the package: the backend contract, and nothing else, made concrete.

Artefacts are ``.npz`` files holding the edgecsp metadata JSON and one random 1x1 convolution per head; the
runner computes them in numpy. ``tests/backends/test_backend_registry.py`` registers it with one record and runs
`edgecsp build`, `edgecsp infer` and `edgecsp bench` on it, so "a new backend is its subpackage plus one registry
line plus its tests" is checked, not claimed.
"""

import numpy as np

from edgecsp._files import atomic_output, require_file
from edgecsp.runtime.runner import BaseRunner, check_threads
from edgecsp.onnxio import load_onnx
from edgecsp.runtime.meta import ModelMeta, load_meta_or_raise

NAME = "npz"
BUILD_OPTIONS = ()


def is_available():
    return True


def version():
    return "1.0"


def read_meta(path):
    with np.load(require_file(path)) as data:
        return load_meta_or_raise(str(data["meta"]) if "meta" in data else None, path)


def build(onnx_path, out_path, precision=None, target="npz-cpu", **options):
    _, meta = load_onnx(onnx_path)
    rng = np.random.RandomState(0)
    layout = meta.spec  # one 1x1 convolution per output, as wide as the layout's channel axis
    weights = dict(("w{}".format(i), rng.randn(layout.output_shape(meta, i)[1], 3).astype(np.float32) * 0.1)
                   for i in range(layout.output_count(meta)))
    meta = meta.with_extra(precision=precision or "fp32", target=str(getattr(target, "name", target)), backend=NAME)
    with atomic_output(out_path) as tmp:
        with open(tmp, "wb") as handle:  # np.savez would append .npz to a staged name without it
            np.savez(handle, meta=np.array(meta.to_json()), **weights)
    return out_path


class Runner(BaseRunner):
    def __init__(self, path, threads=None):
        BaseRunner.__init__(self, path)
        check_threads(threads)
        self._weights = None

    def _activate(self):
        with np.load(self.path) as data:
            meta = ModelMeta.from_json(str(data["meta"]))
            self._weights = [data["w{}".format(i)] for i in range(meta.spec.output_count(meta))]
        h, w = meta.input_size
        self._bind(meta, meta.input_name or "images", (1, 3, h, w), list(meta.outputs))

    def _deactivate(self):
        self._weights = None

    def _infer(self, batch):
        outputs = []
        for head, weights in zip(self._meta.params.heads, self._weights):  # a yolo_raw model
            s = head.stride
            pooled = batch[:, :, s // 2::s, s // 2::s]  # one pixel per grid cell
            outputs.append(np.einsum("oc,nchw->nohw", weights, pooled).astype(np.float32))
        return outputs
