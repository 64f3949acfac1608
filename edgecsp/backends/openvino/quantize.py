"""INT8 OpenVINO IR with NNCF post-training quantization (host side); nncf is imported on first use.

* ``quantize_ir``: ``nncf.quantize`` on a ``CalibrationSet`` with the PERFORMANCE preset by default (symmetric
  weights and activations; ``int8_preset="mixed"``: asymmetric activations). The convolutions that write the
  model outputs stay in float: their outputs are the raw box/objectness/class logits that the runtime decodes
  with exp/sigmoid, where an INT8 step becomes a visible box or score error, while they cost a few percent of the
  compute.
* why PERFORMANCE and ``strided_slices`` (measured on a Xeon with AMX, docs/benchmarks.md): with MIXED, every
  INT8 convolution pays the zero-point compensation of its asymmetric input, and NNCF does not treat ONNX
  ``Slice`` (the CSP channel split, darknet's ``groups``/``group_id`` route) as quantization-agnostic, so the
  convolution before each split wrote float and two extra requantize steps ran around the split. Both together
  made the INT8 IR slower than the FP16 IR run in bf16 on the 256x256 demo (and only 1.09x faster at 640x640).
  The Slices are rewritten as the equivalent StridedSlice (agnostic: one quantizer before the split, int8 through
  it) on a copy of the model before NNCF sees it.
* with ``AccuracyControl.max_drop``: ``nncf.quantize_with_accuracy_control``, which reverts the layers that
  hurt mAP most until the drop on the validation set is within the bound. The result is then measured again
  as the runners run it (FP32 IR in f32, INT8 IR with the plugin's choice) and a drop above the bound fails
  with the figures reached, before anything is written.
"""
import logging
import os

from edgecsp._lazy import require
from edgecsp._quiet import quiet_logger, quiet_rich_console
from edgecsp.errors import InputError, VerificationError

log = logging.getLogger(__name__)

# --int8-preset -> NNCF QuantizationPreset member
PRESETS = {"performance": "PERFORMANCE", "mixed": "MIXED"}
DEFAULT_PRESET = "performance"


def method_name(preset, controlled=False):
    """The provenance record's method, e.g. ``nncf.quantize/PERFORMANCE``."""
    return "nncf.{}/{}".format("quantize_with_accuracy_control" if controlled else "quantize", PRESETS[preset])


def check_preset(preset):
    from edgecsp.validate import choice

    return choice(DEFAULT_PRESET if preset is None else preset, "--int8-preset", sorted(PRESETS),
                  "performance (symmetric activations, the fast one) or mixed (asymmetric activations)")


def strided_slices(model):
    """Rewrite, in place, each ``Slice`` of ``model`` whose start/stop/step/axes are constants as the equivalent
    ``StridedSlice`` (same outputs, bit for bit), which NNCF treats as quantization-agnostic; returns how many."""
    import numpy as np
    import openvino.opset1 as ops

    count = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Slice":
            continue
        data = node.input_value(0)
        consts = [node.input_value(i).get_node() for i in range(1, node.get_input_size())]
        rank = data.get_partial_shape().rank
        if any(c.get_type_name() != "Constant" for c in consts) or rank.is_dynamic:
            continue
        rank = rank.get_length()
        start, stop, step = [c.get_data().astype(np.int64).ravel() for c in consts[:3]]
        axes = consts[3].get_data().astype(np.int64).ravel() if len(consts) > 3 else np.arange(len(start))
        begin, end, strides = np.zeros(rank, np.int64), np.zeros(rank, np.int64), np.ones(rank, np.int64)
        mask = [1] * rank  # 1: the whole axis
        for axis, first, last, stride in zip(axes, start, stop, step):
            axis = int(axis) % rank
            begin[axis], end[axis], strides[axis], mask[axis] = first, last, stride, 0
        replacement = ops.strided_slice(data, ops.constant(begin), ops.constant(end), ops.constant(strides),
                                        mask, mask)
        replacement.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(replacement.output(0))
        count += 1
    if count:
        model.validate_nodes_and_infer_types()
    return count


CONVOLUTIONS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData")
NOT_OPS = ("Constant", "Parameter", "Result")


def decode_tail(model):
    """Friendly names of the ops between the last convolutions and the outputs, and of those convolutions: the
    head convolutions and whatever decode the family put in its graph after them (PP-PicoDet's split and
    sigmoid, Ultralytics' DFL and box arithmetic, YOLOX's grid decode), kept in float (``edgecsp.onnxio.decode_tail``
    does the same for ONNX graphs)."""
    names, seen, stack = [], set(), [output.get_node() for output in model.outputs]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        kind = node.get_type_name()
        if kind not in NOT_OPS:
            names.append(name)
        if kind not in CONVOLUTIONS:
            stack.extend(value.get_node() for value in node.input_values())
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


def quantize_ir(model, meta, calibration, accuracy=None, keep_float=None, preset=None):
    """``(INT8 openvino.Model, summary dict)`` for the float ``model`` (from ``convert_model``; not modified).

    ``calibration``: a verified ``CalibrationSet``; ``accuracy``: an ``AccuracyControl`` or None;
    ``keep_float``: op names kept in float (default: ``decode_tail``); ``preset``: a key of ``PRESETS``.
    """
    ov = require("openvino", "INT8 quantization")
    nncf = require("nncf", "INT8 quantization of OpenVINO IR")
    preset = check_preset(preset)
    model = model.clone()
    rewritten = strided_slices(model)
    keep = decode_tail(model) if keep_float is None else list(keep_float)
    options = dict(preset=getattr(nncf.QuantizationPreset, PRESETS[preset]), target_device=nncf.TargetDevice.CPU,
                   subset_size=len(calibration),  # batches: NNCF counts dataset items
                   ignored_scope=nncf.IgnoredScope(names=keep, validate=False) if keep else None)
    calibration_data = nncf.Dataset(calibration)
    summary = {"tool": "nncf", "nncf": nncf.__version__, "preset": PRESETS[preset], "kept_float": keep,
               "samples": calibration.num_samples, "slices_as_strided_slice": rewritten}
    if accuracy is None:
        quantized = nncf.quantize(model, calibration_data, **options)
        summary["method"] = method_name(preset)
        return quantized, summary

    validation = accuracy.validator
    validation.check_classes(meta.names)  # fail now when the validation classes do not fit the model
    if accuracy.max_drop is None:
        quantized = nncf.quantize(model, calibration_data, **options)
        summary["method"] = method_name(preset)
    else:
        quantized = _controlled(nncf, model, meta, calibration_data, validation, accuracy, options)
        summary.update(method=method_name(preset, controlled=True), max_drop=float(accuracy.max_drop),
                       reverted_to_float=reverted_layers(quantized, keep))
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
                                "representative data (--calib, --count) or build fp32".format(
                                    accuracy.metric, 100 * reached, 100 * reference, len(validation),
                                    validation.name, drop, float(accuracy.max_drop)))
    return figures


WEIGHTED = CONVOLUTIONS + ("MatMul",)


def float_weighted_layers(model):
    """Names of the convolutions and MatMuls of ``model`` whose weights are a float Constant: the layers that run
    in float (NNCF compresses a quantized layer's weights to int8: Constant -> Convert -> Multiply). OpenVINO's
    ``/WithoutBiases`` suffix is dropped, so the names are the ONNX nodes'."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in WEIGHTED and op.get_input_size() > 1:
            weights = op.input_value(1).get_node()
            if weights.get_type_name() == "Constant" and weights.get_element_type().is_real():
                name = op.get_friendly_name()
                names.append(name[:-len("/WithoutBiases")] if name.endswith("/WithoutBiases") else name)
    return names


def reverted_layers(quantized, kept_float=()):
    """The layers accuracy control sent back to float: float layers of ``quantized`` that were not kept in float
    from the start (``kept_float``, the decode tail)."""
    kept = set(n[:-len("/WithoutBiases")] if n.endswith("/WithoutBiases") else n for n in kept_float)
    return [name for name in float_weighted_layers(quantized) if name not in kept]


def quantized_op_count(model):
    """How many FakeQuantize ops an ``openvino.Model`` has (0 means it was not quantized)."""
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


def check_request(precision, calibration, accuracy, preset=None):
    """InputError/UnsupportedError for an INT8 request that cannot work, before any model is loaded."""
    from edgecsp.errors import UnsupportedError

    if precision != "int8":
        raise InputError("--calib, --calib-cache, --max-drop and --int8-preset apply to --precision int8, not "
                         "{}".format(precision))
    check_preset(preset)
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
            raise InputError("--max-drop / --data need a validation metric: build through edgecsp.build.build, "
                             "or pass AccuracyControl(validator=edgecsp.evaluation.gate.DetectionValidation(...))")


def build_int8(ov, model, meta, onnx_path, out_xml, precision, calibration, accuracy, preset=None):
    """Quantize ``model`` for ``build``: ``(INT8 model, meta with the calibration summary, {path: record})``.

    Everything the user can get wrong (options, calibration images, validation data) fails here, before NNCF
    starts and before anything is written.
    """
    from edgecsp._files import file_sha256
    from edgecsp.calibration import CalibrationSet, provenance_path

    check_request(precision, calibration, accuracy, preset)
    batch = model.input(0).get_partial_shape()[0]
    calibration_set = CalibrationSet(calibration, meta, batch.get_length() if batch.is_static else 1).verify()
    require("nncf", "INT8 quantization of OpenVINO IR")  # first: importing nncf sets its logger to INFO
    with quiet_logger("nncf"), quiet_rich_console():  # NNCF's INFO lines and progress bars
        quantized, summary = quantize_ir(model, meta, calibration_set, accuracy, preset=preset)
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
    described = {
        "provenance": os.path.basename(path), "method": summary["method"], "source": calibration.source,
        "fingerprint": calibration_set.fingerprint(), "samples": calibration_set.num_samples,
        "accuracy": figures or None}
    if "max_drop" in summary:  # accuracy control: its bound and the layers it sent back to float
        described.update(max_drop=summary["max_drop"], reverted_to_float=summary["reverted_to_float"])
    meta = meta.with_extra(calibration=described)
    return quantized, meta, {path: record}
