"""Run OpenVINO IR; imports openvino on first use."""
import os

from edgecsp._lazy import require
from edgecsp.backends.base import BaseRunner, check_threads, load_meta_or_raise, require_file
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.meta import META_KEY

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
        if model.has_rt_info(list(path)):
            return model.get_rt_info(list(path)).astype(str)
    return None


def read_model(core, path):
    try:
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

    ``hint``: LATENCY (one request at a time) or THROUGHPUT. ``inference_precision``: f32, bf16 or f16; None
    means f32 for fp32 artefacts and the plugin's choice for fp16 ones.
    """

    def __init__(self, path, device="CPU", threads=None, hint="LATENCY", inference_precision=None):
        super(OpenVINORunner, self).__init__(path)
        self.device = str(device)
        self.threads = check_threads(threads)
        self.hint = str(hint).upper()
        if self.hint not in HINTS:
            raise InputError("OpenVINO hint must be one of {}, got {!r}".format(", ".join(HINTS), hint))
        if inference_precision is not None and inference_precision not in INFERENCE_PRECISIONS:
            raise InputError("inference_precision must be one of {}, got {!r}".format(
                ", ".join(INFERENCE_PRECISIONS), inference_precision))
        self.inference_precision = inference_precision
        self._request = None
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
        self._bind(meta, port.get_any_name(), shape, [o.get_any_name() for o in model.outputs])

        config = {"PERFORMANCE_HINT": self.hint}
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

    def _deactivate(self):
        self._request = None
        self._ports = []

    def _infer(self, batch):
        results = self._request.infer({self._input_name: batch})  # share_outputs=False: results are copies
        return [results[port] for port in self._ports]
