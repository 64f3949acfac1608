"""Run OpenVINO IR; imports openvino on first use."""
import os
import threading

from edgecsp._files import reading, require_file
from edgecsp._lazy import require
from edgecsp.runtime.runner import BaseRunner, check_threads
from edgecsp.errors import InputError, MetadataError, UnsupportedError
from edgecsp.runtime.meta import META_KEY, load_meta_or_raise
from edgecsp.validate import choice, optional

RT_INFO_PATH = ("edgecsp", "meta")  # where `edgecsp build` stores the metadata JSON
FRAMEWORK_PATH = ("framework", META_KEY)  # where convert_model/ovc copy the ONNX metadata_props
HINTS = ("LATENCY", "THROUGHPUT")
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
# Artefacts built for these precisions let the plugin pick its fast type (bf16 on AMX CPUs); all others run
# in f32, so an fp32 build really computes in fp32.
_PLUGIN_CHOOSES_FOR = ("fp16", "int8")


def ov_message(exc):
    """The informative line of an OpenVINO exception (they start with 'Exception from src/...' lines)."""
    lines = [line.strip() for line in str(exc).splitlines()
             if line.strip() and not line.strip().startswith("Exception from")]
    return (lines[0] if lines else type(exc).__name__)[:300]


def model_meta_json(model):
    """The metadata JSON in an ``openvino.Model``'s rt_info, or None."""
    for path in (RT_INFO_PATH, FRAMEWORK_PATH):
        try:
            if model.has_rt_info(list(path)):
                return model.get_rt_info(list(path)).astype(str)
        except RuntimeError as exc:  # an rt_info entry that is a map, not a string (an edited IR)
            raise MetadataError("the IR's rt_info {} is not a metadata string ({}): rebuild it with `edgecsp "
                                "build`".format("/".join(path), ov_message(exc)))
    return None


def read_model(core, path):
    try:
        with reading(path):  # no commit of another build in between: the .xml and the .bin of one build
            return core.read_model(path)
    except RuntimeError as exc:
        raise InputError("OpenVINO cannot read {} ({}): rebuild it with `edgecsp build --target cpu`".format(
            os.path.basename(path), ov_message(exc)))


def read_meta(path):
    """The edgecsp metadata of the IR at ``path`` (the .xml; its .bin must sit next to it)."""
    ov = require("openvino", "reading OpenVINO IR")
    path = require_file(path)
    return load_meta_or_raise(model_meta_json(read_model(ov.Core(), path)), path)


class OpenVINORunner(BaseRunner):
    """Runs OpenVINO IR on ``device``.

    ``hint``: LATENCY (one request at a time) or THROUGHPUT; None picks THROUGHPUT when ``set_in_flight``
    asked for several requests (an ``AsyncInferQueue`` of that many), LATENCY otherwise.
    ``inference_precision``: f32, bf16 or f16; None means f32 for fp32 artefacts and the plugin's choice for
    fp16 ones.
    """

    def __init__(self, path, device="CPU", threads=None, hint=None, inference_precision=None):
        super(OpenVINORunner, self).__init__(path)
        self.device = str(device)
        self.threads = check_threads(threads)
        self.hint = optional(choice, None if hint is None else str(hint).upper(), "the OpenVINO hint", HINTS)
        self.inference_precision = optional(choice, inference_precision, "inference_precision", INFERENCE_PRECISIONS)
        self._request = None
        self._ring = []  # infer requests used in turn when several are in flight
        self._handles = []  # the latest handle of each ring request
        self._next = 0
        self._ports = []

    def _activate(self):
        ov = require("openvino", "running OpenVINO IR (.xml)")
        core = ov.Core()
        model = read_model(core, self.path)
        meta = load_meta_or_raise(model_meta_json(model), self.path)
        where = os.path.basename(self.path)
        if len(model.inputs) != 1:
            raise UnsupportedError("{} has {} inputs; edgecsp runs single-input models".format(
                where, len(model.inputs)))
        port = model.input(0)
        partial = port.get_partial_shape()
        if partial.rank.is_dynamic:
            raise UnsupportedError("{} has an input of unknown rank: re-export it with a fixed NCHW input".format(
                where))
        shape = [d.get_length() if d.is_static else None for d in partial]
        outputs = [(o.get_any_name(), None if o.get_partial_shape().rank.is_dynamic else
                    [d.get_length() if d.is_static else None for d in o.get_partial_shape()]) for o in model.outputs]
        self._bind(meta, port.get_any_name(), shape, outputs)

        requests = self._requested_in_flight  # None: synchronous submit
        # THROUGHPUT: several streams (groups of cores) each running one request, what many requests want
        config = {"PERFORMANCE_HINT": self.hint or ("THROUGHPUT" if requests and requests > 1 else "LATENCY")}
        if requests and requests > 1:
            config["PERFORMANCE_HINT_NUM_REQUESTS"] = requests  # no more streams than requests to fill them
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        precision = self.inference_precision
        if precision is None and meta.extra.get("precision") not in _PLUGIN_CHOOSES_FOR:
            precision = "f32"
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            compiled = core.compile_model(model, self.device, config)
        except RuntimeError as exc:
            raise InputError("OpenVINO cannot compile {} for device {} ({}): available devices are {}".format(
                where, self.device, ov_message(exc), ", ".join(core.available_devices)))
        self._request = compiled.create_infer_request()
        self._ports = [compiled.output(name) for name in self._output_names]
        if requests:
            # A ring of requests used in turn rather than an AsyncInferQueue: its Python completion callbacks
            # need the GIL on OpenVINO's threads, and its wait_all() can deadlock against them.
            self._ring = [compiled.create_infer_request() for _ in range(requests)]
            self._handles = [None] * requests
            self._next = 0

    def _deactivate(self):
        self._wait_all()  # no request may still run when the model is released
        self._ring, self._handles = [], []
        self._request = None
        self._ports = []

    def _infer(self, batch):
        results = self._request.infer({self._input_name: batch})  # share_outputs=False: results are copies
        return [results[port] for port in self._ports]

    def _submit(self, batch):
        if not self._ring:
            return super(OpenVINORunner, self)._submit(batch)
        slot = self._next
        self._next = (slot + 1) % len(self._ring)
        previous = self._handles[slot]
        if previous is not None:
            previous.collect()  # waits while this request is busy; its outputs move into its handle
        request = self._ring[slot]
        request.start_async({self._input_name: batch})  # copies the input (share_inputs=False)
        handle = _RequestHandle(request, self._ports)
        self._handles[slot] = handle
        return handle

    def _in_flight(self):
        return len(self._ring) or 1

    def _wait_all(self):
        for handle in self._handles:
            if handle is not None:
                handle.collect()


class _RequestHandle(object):
    """A request started with start_async: ``result()`` waits for it and copies its outputs out, once."""

    def __init__(self, request, ports):
        self._request = request
        self._ports = ports
        self._outputs = None
        self._error = None
        self._lock = threading.Lock()

    def collect(self):
        with self._lock:
            if self._request is None:
                return
            try:
                self._request.wait()  # releases the GIL while it waits
                self._outputs = [self._request.get_tensor(port).data.copy() for port in self._ports]
            except RuntimeError as exc:
                self._error = InputError("OpenVINO inference failed: {}".format(ov_message(exc)))
            self._request = None  # the runner may reuse the request from now on

    def done(self):
        return self._request is None

    def result(self, timeout=None):
        self.collect()
        if self._error is not None:
            raise self._error
        return self._outputs


def executed_precisions(path, hint="LATENCY", device="CPU"):
    """How the plugin really runs the IR at ``path``: ``{layer type: {runtime precision: count}}`` from the
    compiled model's execution graph (the question "which layers run in int8 / bf16 / f32" of an INT8 build)."""
    ov = require("openvino", "reading OpenVINO execution graphs")
    compiled = ov.Core().compile_model(str(path), device, {"PERFORMANCE_HINT": hint})
    table = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        table.setdefault(kind, {})
        table[kind][precision] = table[kind].get(precision, 0) + 1
    return table
