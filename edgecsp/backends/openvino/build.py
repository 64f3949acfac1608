"""Build OpenVINO IR from an exported ONNX (host side).

The precision is always explicit: ``openvino.save_model`` compresses weights to FP16 unless told otherwise.
"""
import os

from edgecsp._files import Staged, file_sha256, require_file, write_json
from edgecsp._lazy import available, require
from edgecsp.backends.openvino.runner import FRAMEWORK_PATH, RT_INFO_PATH, model_meta_json, ov_message, read_model
from edgecsp.calibration.config import ACCURACY_OPTIONS, CALIBRATION_OPTIONS, int8_options
from edgecsp.calibration.provenance import provenance_path
from edgecsp.errors import InputError, UnsupportedError, VerificationError
from edgecsp.onnxio import ONNX_HINT, input_form_of, load_onnx
from edgecsp.runtime.meta import UINT8_NHWC_BGR, load_meta_or_raise
from edgecsp.targets import check_precision, get_target

BACKEND = "openvino"
# what `edgecsp build --target cpu` takes beyond the precision: calibration data and an accuracy bound for int8
BUILD_OPTIONS = CALIBRATION_OPTIONS + ACCURACY_OPTIONS + ("input_form", "int8_preset")
# precision -> (element type, least share of the float weight elements that must have it); fp16 IR keeps a few
# constants (out of fp16 range, shape arithmetic) in f32
WEIGHT_TYPES = {"fp32": ("f32", 1.0), "fp16": ("f16", 0.5)}


def build(onnx_path, out_xml, precision=None, target="cpu", **options):
    """Convert the ONNX at ``onnx_path`` to IR ``out_xml`` (+ .bin) in ``precision``; returns ``out_xml``.

    int8 needs calibration data and may take an accuracy bound: ``options`` are ``BUILD_OPTIONS`` (``calib``,
    ``calib_count``, ``max_drop``, ``val_data``, ``int8_preset``...; see ``quantize.py``). Its provenance record goes next to the
    IR (``<stem>.calibration.json``).
    The IR is saved in a temporary folder next to ``out_xml``, loaded and checked there, then moved into place
    provenance and .bin first and .xml last: an .xml on disk always belongs to a complete artefact.
    """
    target = get_target(target)
    if target.backend != BACKEND:
        raise UnsupportedError("target {} uses the {} backend, not {}".format(target.name, target.backend, BACKEND))
    precision = check_precision(target, precision)
    options = dict(options)
    input_form = input_form_of(options.pop("input_form", None))  # default: the letterboxed uint8 frames
    preset = options.pop("int8_preset", None)  # default: quantize.DEFAULT_PRESET
    calibration, accuracy = int8_options(options, CALIBRATION_OPTIONS + ACCURACY_OPTIONS)
    int8 = precision == "int8" or calibration is not None or accuracy is not None or preset is not None
    if int8:
        from edgecsp.backends.openvino.quantize import check_request

        check_request(precision, calibration, accuracy, preset)
    ov = require("openvino", "building OpenVINO IR for target " + target.name)
    onnx_path = require_file(onnx_path, "ONNX model", ONNX_HINT)
    out_xml = str(out_xml)
    if not out_xml.lower().endswith(".xml"):
        raise InputError("OpenVINO IR output must end in .xml, got {}".format(out_xml))
    try:
        model = ov.convert_model(onnx_path)
    except Exception as exc:  # ovc raises its own Error class as well as RuntimeError
        raise InputError("OpenVINO cannot convert {} ({}): {}".format(
            os.path.basename(onnx_path), ov_message(exc), ONNX_HINT))
    import edgecsp.backends.openvino as backend

    meta = _source_meta(model, onnx_path).with_extra(
        precision=precision, target=target.name, backend=BACKEND, openvino=backend.version(),
        onnx_sha256=file_sha256(onnx_path))
    sidecars = {}
    if int8:
        from edgecsp.backends.openvino.quantize import build_int8

        model, meta, sidecars = build_int8(ov, model, meta, onnx_path, out_xml, precision, calibration, accuracy,
                                           preset)
    if input_form == UINT8_NHWC_BGR:  # after quantization: NNCF calibrated the float network
        model, meta = uint8_input(ov, model, meta), meta._replace(input_form=input_form)
    model.set_rt_info(meta.to_json(), list(RT_INFO_PATH))
    _save_atomically(ov, model, out_xml, precision, meta, sidecars)
    return out_xml


def uint8_input(ov, model, meta):
    """``model`` taking the letterboxed uint8 NHWC BGR frames: OpenVINO's PrePostProcessor does the channel swap,
    the scaling and the layout inside the compiled graph (what ``edgecsp.runtime.preprocess`` did in numpy)."""
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    port = ppp.input()
    port.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    port.model().set_layout(ov.Layout("NCHW"))
    steps = port.preprocess().convert_element_type(ov.Type.f32)
    if str(meta.channel_order).upper() == "RGB":
        steps.convert_color(ColorFormat.RGB)
    divisor = meta.scale_divisor  # divide or multiply exactly as the runtime's preprocess does
    if divisor is not None:
        if divisor != 1.0:
            steps.scale(divisor)  # divides
    else:
        import numpy as np
        import openvino.opset8 as ops

        factor = np.array(meta.scale, dtype=np.float32)
        steps.custom(lambda node: ops.multiply(node, ops.constant(factor)).output(0))
    if meta.normalized:  # (x - mean) / std per channel, in the network's channel order
        steps.mean([float(v) for v in meta.mean]).scale([float(v) for v in meta.std])
    return ppp.build()


def _source_meta(model, onnx_path):
    """The ONNX's metadata: convert_model copies metadata_props into rt_info; older OpenVINO may not."""
    if not model.has_rt_info(list(FRAMEWORK_PATH)) and available("onnx"):
        return load_onnx(onnx_path)[1]
    return load_meta_or_raise(model_meta_json(model), onnx_path)


def _save(ov, model, xml_path, precision):
    ov.save_model(model, xml_path, compress_to_fp16=(precision == "fp16"))


def _save_atomically(ov, model, out_xml, precision, meta, sidecars=None):
    """``sidecars``: {final path: JSON-ready dict} written next to the IR (the calibration provenance).

    The .xml goes into place last, after the .bin and the sidecars, and the record of an earlier INT8 build is
    removed unless this build writes it again: an .xml on disk always belongs to a complete artefact.
    """
    out_bin = os.path.splitext(out_xml)[0] + ".bin"
    with Staged([out_bin, out_xml], remove=[out_xml, provenance_path(out_xml)]) as staged:
        staged_xml = staged.staged[-1]
        _save(ov, model, staged_xml, precision)  # writes the staged .bin beside it
        verify_ir(ov, staged_xml, precision, meta)
        for path, payload in sorted((sidecars or {}).items()):
            write_json(staged.sidecar(path), payload)


def weight_precisions(model):
    """``{element type name: elements}`` over the floating-point Constant nodes of an ``openvino.Model``."""
    counts = {}
    for op in model.get_ops():
        if op.get_type_name() != "Constant" or not op.get_element_type().is_real():
            continue
        size = 1
        for dim in op.get_output_shape(0):
            size *= int(dim)
        name = op.get_element_type().get_type_name()
        counts[name] = counts.get(name, 0) + size
    return counts


def verify_ir(ov, xml_path, precision, meta):
    """The IR loads and compiles on CPU, carries ``meta`` and stores most float weights as ``precision`` says."""
    core = ov.Core()
    model = read_model(core, xml_path)
    where = os.path.basename(xml_path)
    found = model_meta_json(model)
    if found != meta.to_json():
        raise VerificationError("{}: the metadata read back from rt_info differs from what was written".format(where))
    counts = weight_precisions(model)
    wanted, share = WEIGHT_TYPES.get(precision, (None, 0.0))
    total = sum(counts.values())
    if wanted and total and counts.get(wanted, 0) < share * total:
        raise VerificationError("{} was built as {} but only {} of {} float weight elements are {} ({}): "
                                "report this with your OpenVINO version".format(
                                    where, precision, counts.get(wanted, 0), total, wanted, counts))
    try:
        core.compile_model(model, "CPU")
    except RuntimeError as exc:
        raise VerificationError("{} does not compile on CPU ({})".format(where, ov_message(exc)))

