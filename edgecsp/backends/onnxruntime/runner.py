"""Run an .onnx with ONNX Runtime; Python 3.6 compatible, imports onnxruntime on first use."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from edgecsp._files import require_file
from edgecsp._lazy import require
from edgecsp.runtime.runner import BaseRunner, InferHandle, check_threads
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.meta import META_KEY, UINT8_NHWC_BGR, load_meta_or_raise

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


def usable_cpus():
    # type: () -> int
    """CPUs this process may run on (its affinity mask where the OS has one: containers, taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeRunner(BaseRunner):
    """Runs an .onnx with ONNX Runtime (CPU execution provider unless ``providers`` says otherwise).

    With ``set_in_flight(k)``, k > 1, ``submit`` runs requests on k threads of one session (``session.run`` is
    thread-safe and releases the GIL); unless ``threads`` is given each run then gets cpus / k intra-op
    threads, so the concurrent runs share the cores instead of fighting over them.
    """

    def __init__(self, path, threads=None, providers=None):
        super(OnnxRuntimeRunner, self).__init__(path)
        self.threads = check_threads(threads)
        self.providers = tuple(providers) if providers else DEFAULT_PROVIDERS
        self._session = None
        self._pool = None
        self._slots = None

    def _activate(self):
        requests = self._requested_in_flight  # None: synchronous submit
        threads = self.threads
        if threads is None and requests:
            threads = max(1, usable_cpus() // requests)
        self._session = open_session(self.path, threads, self.providers)
        meta = session_meta(self._session, self.path)
        inputs = self._session.get_inputs()
        where = os.path.basename(self.path)
        if len(inputs) != 1:
            raise UnsupportedError("{} has {} inputs; edgecsp runs single-input models".format(where, len(inputs)))
        wanted = "tensor(uint8)" if meta.input_form == UINT8_NHWC_BGR else "tensor(float)"
        if inputs[0].type != wanted:
            raise UnsupportedError("{} takes {} input but its metadata says input form {}: rebuild it with "
                                   "`edgecsp build`".format(where, inputs[0].type, meta.input_form))
        shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        self._bind(meta, inputs[0].name, shape, [(o.name, o.shape) for o in self._session.get_outputs()])
        if requests:
            self._pool = ThreadPoolExecutor(max_workers=requests)
            self._slots = threading.BoundedSemaphore(requests)

    def _deactivate(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None
        self._slots = None
        self._session = None

    def _submit(self, batch):
        if self._pool is None:
            return super(OnnxRuntimeRunner, self)._submit(batch)
        handle = InferHandle()
        self._slots.acquire()  # wait while every request is busy, as OpenVINO's requests do
        try:
            self._pool.submit(self._run, batch, handle)
        except BaseException:
            self._slots.release()
            raise
        return handle

    def _run(self, batch, handle):
        try:
            handle.set_result(self._checked_outputs(self._infer(batch)))
        except Exception as exc:
            handle.set_error(exc)
        finally:
            self._slots.release()

    def _in_flight(self):
        return self._requested_in_flight if self._pool is not None else 1

    def _wait_all(self):
        if self._slots is not None:
            requests = self._requested_in_flight
            for _ in range(requests):  # every slot free = nothing running
                self._slots.acquire()
            for _ in range(requests):
                self._slots.release()

    def _infer(self, batch):
        return self._session.run(self._output_names, {self._input_name: batch})
