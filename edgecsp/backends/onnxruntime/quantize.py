"""INT8 ONNX for ONNX Runtime: static QDQ quantization over a ``CalibrationSet`` (host side).

``onnxruntime.quantization.quantize_static`` with QDQ nodes, uint8 activations (asymmetric) and per-channel
int8 weights, MinMax ranges. The convolutions that write the model outputs stay in float, as for OpenVINO:
their outputs are the raw logits the runtime decodes. The tensor ranges are kept as a calibration cache next
to the artefact; ``CalibrationConfig.cache`` reuses them, after ``reusable_cache`` has checked that they were
computed for the same model and preprocessing.
"""
import inspect
import logging
import os
import shutil

from edgecsp._files import write_json
from edgecsp._lazy import require
from edgecsp._quiet import dropped_root_warnings, quiet_logger
from edgecsp.errors import InputError, UnsupportedError, VerificationError
from edgecsp.onnxio import decode_tail

log = logging.getLogger(__name__)

METHOD = "onnxruntime.quantize_static/QDQ/MinMax"
CACHE_SUFFIX = ".calibration-ranges.json"


def cache_path(out_path):
    # type: (str) -> str
    return os.path.splitext(str(out_path))[0] + CACHE_SUFFIX


class _Reader(object):
    """ONNX Runtime's CalibrationDataReader protocol (get_next/rewind) over a CalibrationSet."""

    def __init__(self, calibration_set, input_name):
        self.calibration_set, self.input_name = calibration_set, input_name
        self._batches = None

    def get_next(self):
        if self._batches is None:
            self._batches = iter(self.calibration_set)
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self):
        self._batches = None

    def __len__(self):
        return len(self.calibration_set)

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)


def build_int8(onnx_path, staged, meta, precision, calibration):
    """Quantize for ``build``: ``(INT8 onnx.ModelProto, meta with the calibration summary)``.

    ``staged``: the ``edgecsp._files.Staged`` output of the build; the INT8 model is written to its last staged
    path, and the sidecars (provenance record, ranges cache) are added to it under their final names. Options, calibration data and a
    reused cache are checked before ONNX Runtime starts.
    """
    onnx = require("onnx", "INT8 quantization for ONNX Runtime")
    require("onnxruntime", "INT8 quantization for ONNX Runtime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgecsp._files import file_sha256
    from edgecsp.calibration import CalibrationSet, provenance_path, reusable_cache

    if precision != "int8":
        raise InputError("--calib and --calib-cache apply to --precision int8, not {}".format(precision))
    if calibration is None:
        raise InputError("INT8 needs calibration data: pass --calib with a folder of images, a video, a COCO json "
                         "or shapes:SEED (or --calib-cache with the record of an earlier calibration)")
    source = onnx.load(str(onnx_path), load_external_data=False)
    model_sha256 = file_sha256(str(onnx_path))
    takes_cache = "calibration_cache_path" in inspect.signature(quantize_static).parameters
    out_path = staged.paths[-1]
    staged_out = staged.staged[-1]
    staged_cache = os.path.join(staged.staging, os.path.basename(cache_path(out_path)))
    reused, calibration_set, reader = None, None, None
    if calibration.cache:
        if not takes_cache:
            raise UnsupportedError("reusing ONNX Runtime calibration ranges needs onnxruntime with "
                                   "quantize_static(calibration_cache_path=...); upgrade it or pass --calib")
        reused, found = reusable_cache(calibration.cache, model_sha256, meta, METHOD)
        shutil.copyfile(found, staged_cache)
    else:
        calibration_set = CalibrationSet(calibration.checked(), meta, _static_batch(source)).verify()
        reader = _Reader(calibration_set, meta.input_name or source.graph.input[0].name)

    prepared = _pre_process(str(onnx_path), os.path.join(staged.staging, ".prepared.onnx"))
    keep = decode_tail(onnx.load(prepared, load_external_data=False))  # head convolutions and the decode after
    options = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                   per_channel=True, reduce_range=False, calibrate_method=CalibrationMethod.MinMax,
                   nodes_to_exclude=keep)
    if takes_cache:
        options["calibration_cache_path"] = staged_cache
    try:
        # ONNX Runtime advises pre-processing when a model lacks its marker: a model it could not prepare, of which
        # _pre_process has already warned once
        with dropped_root_warnings("Please consider"):
            quantize_static(prepared, staged_out, reader, **options)
    except (ValueError, RuntimeError) as exc:
        raise VerificationError("onnxruntime could not quantize {} ({}): report this with your onnxruntime "
                                "version".format(os.path.basename(str(onnx_path)), str(exc).splitlines()[0]))
    model = onnx.load(staged_out)
    if not any(node.op_type == "QuantizeLinear" for node in model.graph.node):
        raise VerificationError("onnxruntime left {} without QuantizeLinear nodes: report this with your "
                                "onnxruntime version".format(os.path.basename(str(onnx_path))))
    import edgecsp.backends.onnxruntime as backend

    summary = {"tool": "onnxruntime", "method": METHOD, "kept_float": keep, "format": "QDQ",
               "activations": "uint8", "weights": "int8 per-channel"}
    cache = None
    if os.path.isfile(staged_cache):
        os.chmod(staged_cache, 0o644)  # ONNX Runtime writes it through mkstemp (0600)
        staged.sidecar(cache_path(out_path))  # it is already at its staged path, under its final name
        cache = {"file": os.path.basename(staged_cache), "sha256": file_sha256(staged_cache)}
    tools = {"onnxruntime": backend.version(), "onnx": onnx.__version__}
    if reused is not None:
        record = dict(reused, algorithm=summary, cache=cache, reused_from=os.path.basename(calibration.cache))
        record["tools"] = dict(reused.get("tools") or {}, **tools)
    else:
        record = calibration_set.provenance(model_sha256, summary, tools=tools, cache=cache)
    record["artefact"] = os.path.basename(out_path)
    record["accuracy"] = None
    record_path = provenance_path(out_path)
    write_json(staged.sidecar(record_path), record)
    meta = meta.with_extra(calibration={
        "provenance": os.path.basename(record_path), "method": METHOD, "source": record["data"].get("source"),
        "fingerprint": record["data"].get("fingerprint"), "samples": record["samples"],
        "reused_from": record.get("reused_from")})
    return model, meta


def _pre_process(onnx_path, prepared):
    """ONNX Runtime's recommended preparation (shape inference, graph optimization) into ``prepared``; without
    its symbolic shape inference when that fails (it needs sympy, and is for dynamic shapes that edgecsp's
    exports do not have); the source model when that fails too (quantization works without it, only less well
    fused)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    error = None
    for skip_symbolic_shape in (False, True):
        try:
            with quiet_logger("onnxruntime", logging.CRITICAL):  # its traceback of a step we retry or report
                quant_pre_process(onnx_path, prepared, skip_symbolic_shape=skip_symbolic_shape)
            return prepared
        except Exception as exc:  # symbolic shape inference raises assorted errors on unusual graphs
            error = error or exc
    log.warning("onnxruntime's quantization pre-processing failed (%s); quantizing the model as exported",
                str(error).splitlines()[0] if str(error) else type(error).__name__)
    return onnx_path


def _static_batch(model):
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.dim_value > 0 else 1
