"""INT8 OpenVINO IR with NNCF post-training quantization (host side); nncf is imported on first use.

* ``quantize_ir``: ``nncf.quantize`` with the MIXED preset (symmetric weights, asymmetric activations) on a
  ``CalibrationSet``. The convolutions that write the model outputs stay in float: their outputs are the raw
  box/objectness/class logits that the runtime decodes with exp/sigmoid, where an INT8 step becomes a visible
  box or score error, while they cost a few percent of the compute.
* with ``AccuracyControl.max_drop``: ``nncf.quantize_with_accuracy_control``, which reverts the layers that
  hurt mAP most until the drop on the validation set is within the bound. The result is then measured again
  as the runners run it (FP32 IR in f32, INT8 IR with the plugin's choice) and a drop above the bound fails
  with the figures reached, before anything is written.
"""
import logging
import os

from edgecsp._lazy import require
from edgecsp.errors import InputError, VerificationError

log = logging.getLogger(__name__)

PRESET = "MIXED"
METHOD = "nncf.quantize/MIXED"
CONTROLLED_METHOD = "nncf.quantize_with_accuracy_control/MIXED"


def output_convolutions(model):
    """Friendly names of the Convolution ops that produce the model outputs (through a bias Add)."""
    names = []
    for output in model.outputs:
        node = output.get_node()
        if node.get_type_name() == "Result":
            node = node.input_value(0).get_node()
        if node.get_type_name() == "Add":
            node = next((v.get_node() for v in node.input_values() if v.get_node().get_type_name() == "Convolution"),
                        node)
        if node.get_type_name() == "Convolution":
            names.append(node.get_friendly_name())
    return names


class CompiledRunner(object):
    """Just enough of a runner (``meta``, ``infer``) over an ``openvino.CompiledModel`` for ``predict``."""

    def __init__(self, compiled, meta, path="<compiled model>"):
        self.compiled, self.meta, self.path = compiled, meta, path
        self._ports = [compiled.output(name) for name in meta.outputs] if meta.outputs else list(compiled.outputs)

    def infer(self, batch):
        results = self.compiled(batch)
        return [results[port] for port in self._ports]


def compile_as_runner(ov, model, meta, precision):
    """Compile ``model`` the way ``OpenVINORunner`` runs an artefact of ``precision`` (fp32 in f32)."""
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return CompiledRunner(ov.Core().compile_model(model, "CPU", config), meta)


def measure(ov, model, meta, precision, validation):
    """The validation metric (fraction) of ``model`` as the runner would run it (``validation``: the
    ``AccuracyControl.validator`` callback, e.g. ``edgecsp.evaluation.gate.DetectionValidation``)."""
    return validation.score(compile_as_runner(ov, model, meta, precision))


def quantize_ir(model, meta, calibration, accuracy=None, keep_float=None):
    """``(INT8 openvino.Model, summary dict)`` for the float ``model`` (from ``convert_model``).

    ``calibration``: a verified ``CalibrationSet``; ``accuracy``: an ``AccuracyControl`` or None;
    ``keep_float``: op names kept in float (default: ``output_convolutions``).
    """
    ov = require("openvino", "INT8 quantization")
    nncf = require("nncf", "INT8 quantization of OpenVINO IR")
    keep = output_convolutions(model) if keep_float is None else list(keep_float)
    options = dict(preset=getattr(nncf.QuantizationPreset, PRESET), target_device=nncf.TargetDevice.CPU,
                   subset_size=len(calibration),  # batches: NNCF counts dataset items
                   ignored_scope=nncf.IgnoredScope(names=keep, validate=False) if keep else None)
    calibration_data = nncf.Dataset(calibration)
    summary = {"tool": "nncf", "nncf": nncf.__version__, "preset": PRESET, "kept_float": keep,
               "samples": calibration.num_samples}
    if accuracy is None:
        quantized = nncf.quantize(model, calibration_data, **options)
        summary["method"] = METHOD
        return quantized, summary

    validation = accuracy.validator
    validation.check_classes(meta.names)  # fail now when the validation classes do not fit the model
    if accuracy.max_drop is None:
        quantized = nncf.quantize(model, calibration_data, **options)
        summary["method"] = METHOD
    else:
        quantized = _controlled(nncf, model, meta, calibration_data, validation, accuracy, options)
        summary.update(method=CONTROLLED_METHOD, max_drop=float(accuracy.max_drop))
    summary.update(_check_drop(ov, model, quantized, meta, validation, accuracy))
    return quantized, summary


def _controlled(nncf, model, meta, calibration_data, validation, accuracy, options):
    def validate(compiled, indices):  # NNCF ranks layers by how much each image's value changes
        return validation.per_image(CompiledRunner(compiled, meta), indices)

    validation_data = nncf.Dataset(list(range(len(validation))))
    try:
        return nncf.quantize_with_accuracy_control(
            model, calibration_data, validation_data, validate, max_drop=float(accuracy.max_drop) / 100.0,
            drop_type=nncf.DropType.ABSOLUTE, **options)
    except nncf.ValidationError as exc:
        raise InputError("NNCF accuracy control cannot run on this model and validation set: {}".format(
            str(exc).splitlines()[0]))


def _check_drop(ov, model, quantized, meta, validation, accuracy):
    """Measure FP32 and INT8 as deployed; VerificationError when the drop is above ``accuracy.max_drop``."""
    reference = measure(ov, model, meta, "fp32", validation)
    reached = measure(ov, quantized, meta, "int8", validation)
    drop = 100.0 * (reference - reached)
    figures = {"metric": accuracy.metric, "validation": validation.name,
               "validation_images": len(validation), "fp32": reference, "int8": reached, "drop_points": drop}
    log.info("INT8 %s %.2f vs FP32 %.2f on %d images: drop %.2f points", accuracy.metric, 100 * reached,
             100 * reference, len(validation), drop)
    if accuracy.max_drop is not None and drop > float(accuracy.max_drop) + 1e-9:
        raise VerificationError("INT8 {} is {:.2f} vs FP32 {:.2f} on {} images of {}: a drop of {:.2f} points, above "
                                "--max-drop {:g}; nothing was written. Raise --max-drop, calibrate on more "
                                "representative data (--calib, --calib-count) or build fp32".format(
                                    accuracy.metric, 100 * reached, 100 * reference, len(validation),
                                    validation.name, drop, float(accuracy.max_drop)))
    return figures


def quantized_op_count(model):
    """How many FakeQuantize ops an ``openvino.Model`` has (0 means it was not quantized)."""
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


def check_request(precision, calibration, accuracy):
    """InputError/UnsupportedError for an INT8 request that cannot work, before any model is loaded."""
    from edgecsp.errors import UnsupportedError

    if precision != "int8":
        raise InputError("--calib, --calib-cache and --max-drop apply to --precision int8, not {}".format(precision))
    if calibration is None:
        raise InputError("INT8 needs calibration data: pass --calib with a folder of images, a video, a COCO json "
                         "or shapes:SEED")
    calibration.checked()
    if calibration.cache:
        raise UnsupportedError("target cpu (OpenVINO + NNCF) calibrates on every build and leaves no reusable "
                               "calibration result: drop --calib-cache and pass --calib")
    if accuracy is not None:
        accuracy.checked()
        if accuracy.validator is None:
            raise InputError("--max-drop / --val-data need a validation metric: build through edgecsp.build.build, "
                             "or pass AccuracyControl(validator=edgecsp.evaluation.gate.DetectionValidation(...))")


def build_int8(ov, model, meta, onnx_path, out_xml, precision, calibration, accuracy):
    """Quantize ``model`` for ``build``: ``(INT8 model, meta with the calibration summary, {path: record})``.

    Everything the user can get wrong (options, calibration images, validation data) fails here, before NNCF
    starts and before anything is written.
    """
    from edgecsp._files import file_sha256
    from edgecsp.calibration import CalibrationSet, provenance_path

    check_request(precision, calibration, accuracy)
    batch = model.input(0).get_partial_shape()[0]
    calibration_set = CalibrationSet(calibration, meta, batch.get_length() if batch.is_static else 1).verify()
    quantized, summary = quantize_ir(model, meta, calibration_set, accuracy)
    fake_quantize = quantized_op_count(quantized)
    if not fake_quantize:
        raise VerificationError("NNCF left {} without any quantized operation: report this with your NNCF and "
                                "OpenVINO versions".format(os.path.basename(str(onnx_path))))
    summary["fake_quantize_ops"] = fake_quantize
    import edgecsp.backends.openvino as backend

    figures = {}
    for key in ("metric", "validation", "validation_images", "fp32", "int8", "drop_points"):
        if key in summary:
            figures[key] = summary.pop(key)
    record = calibration_set.provenance(file_sha256(str(onnx_path)), summary,
                                        tools={"openvino": backend.version(), "nncf": summary.get("nncf")})
    record["artefact"] = os.path.basename(str(out_xml))
    record["accuracy"] = figures or None
    path = provenance_path(out_xml)
    meta = meta.with_extra(calibration={
        "provenance": os.path.basename(path), "method": summary["method"], "source": calibration.source,
        "fingerprint": calibration_set.fingerprint(), "samples": calibration_set.num_samples,
        "accuracy": figures or None})
    return quantized, meta, {path: record}
