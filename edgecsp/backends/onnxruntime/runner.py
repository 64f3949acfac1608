"""Run an .onnx with ONNX Runtime; Python 3.6 compatible, imports onnxruntime on first use."""
import os

from edgecsp._lazy import require
from edgecsp.backends.base import BaseRunner, check_threads, load_meta_or_raise, require_file
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.meta import META_KEY

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def open_session(path, threads=None, providers=None):
    """An ``onnxruntime.InferenceSession`` for ``path``; InputError when onnxruntime cannot load it."""
    ort = require("onnxruntime", "running .onnx models")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings are not the user's to fix
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(path, sess_options=options, providers=list(providers or DEFAULT_PROVIDERS))
    except Exception as exc:  # ORT raises its own pybind exception types (InvalidProtobuf, Fail, NoSuchFile...)
        raise InputError("onnxruntime cannot load {} ({}): pass an .onnx exported by `edgecsp export`".format(
            os.path.basename(path), str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__))


def session_meta(session, path):
    return load_meta_or_raise(session.get_modelmeta().custom_metadata_map.get(META_KEY), path)


def read_meta(path):
    """The edgecsp metadata of the .onnx at ``path``, read through onnxruntime."""
    path = require_file(path)
    return session_meta(open_session(path), path)


class OnnxRuntimeRunner(BaseRunner):
    """Runs an .onnx with ONNX Runtime (CPU execution provider unless ``providers`` says otherwise)."""

    def __init__(self, path, threads=None, providers=None):
        super(OnnxRuntimeRunner, self).__init__(path)
        self.threads = check_threads(threads)
        self.providers = tuple(providers) if providers else DEFAULT_PROVIDERS
        self._session = None

    def _activate(self):
        self._session = open_session(self.path, self.threads, self.providers)
        meta = session_meta(self._session, self.path)
        inputs = self._session.get_inputs()
        where = os.path.basename(self.path)
        if len(inputs) != 1:
            raise UnsupportedError("{} has {} inputs; edgecsp runs single-input models".format(where, len(inputs)))
        if inputs[0].type != "tensor(float)":
            raise UnsupportedError("{} takes {} input; edgecsp feeds float32: re-export it with a float32 "
                                   "input".format(where, inputs[0].type))
        shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        self._bind(meta, inputs[0].name, shape, [o.name for o in self._session.get_outputs()])

    def _deactivate(self):
        self._session = None

    def _infer(self, batch):
        return self._session.run(self._output_names, {self._input_name: batch})
