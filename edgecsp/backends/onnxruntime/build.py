"""Build for ONNX Runtime targets: a checked copy of the ONNX with its metadata stamped (host side)."""
import os

from edgecsp._files import Staged, file_sha256
from edgecsp._lazy import available, require
from edgecsp.calibration.config import CALIBRATION_OPTIONS, int8_options
from edgecsp.calibration.provenance import provenance_path
from edgecsp.errors import UnsupportedError, VerificationError
from edgecsp.onnxio import add_uint8_input, check_opset, input_form_of, load_onnx, onnx_opset, set_onnx_meta
from edgecsp.runtime.meta import UINT8_NHWC_BGR
from edgecsp.targets import check_precision, get_target

BACKEND = "onnxruntime"
# what `edgecsp build --target cpu-ort` takes beyond precision; accuracy control (--max-drop) is OpenVINO's
BUILD_OPTIONS = CALIBRATION_OPTIONS + ("input_form",)


def build(onnx_path, out_path, precision=None, target="cpu-ort", **options):
    """Write ``out_path``: the ONNX at ``onnx_path`` with precision/target in its metadata; returns the path.

    int8 quantizes it (static QDQ, ``quantize.py``) with the calibration ``options`` (``BUILD_OPTIONS``: ``calib``,
    ``calib_count``, ``calib_cache``...) and writes the provenance record and the calibration ranges next to it.
    The files are staged next to ``out_path`` (``edgecsp._files.Staged``), checked there, then renamed into
    place, the model last.
    """
    target = get_target(target)
    if target.backend != BACKEND:
        raise UnsupportedError("target {} uses the {} backend, not {}".format(target.name, target.backend, BACKEND))
    precision = check_precision(target, precision)
    options = dict(options)
    input_form = input_form_of(options.pop("input_form", None))  # default: the letterboxed uint8 frames
    calibration, _ = int8_options(options, CALIBRATION_OPTIONS)
    onnx = require("onnx", "building for target " + target.name)
    model, meta = load_onnx(onnx_path)
    check_opset(onnx_opset(model), target, os.path.basename(str(onnx_path)))
    import edgecsp.backends.onnxruntime as backend

    meta = meta.with_extra(precision=precision, target=target.name, backend=BACKEND,
                           onnxruntime=backend.version(), onnx_sha256=file_sha256(str(onnx_path)))
    out_path = str(out_path)
    from edgecsp.backends.onnxruntime.quantize import cache_path

    # the sidecars of an earlier INT8 build must not describe this artefact: removed unless written again
    with Staged([out_path], remove=[provenance_path(out_path), cache_path(out_path)]) as staged:
        if precision == "int8" or calibration is not None:
            from edgecsp.backends.onnxruntime.quantize import build_int8

            model, meta = build_int8(onnx_path, staged, meta, precision, calibration)
        if input_form == UINT8_NHWC_BGR:  # after quantization: calibration ran on the float network
            model = add_uint8_input(model, meta)
            meta = meta._replace(input_form=input_form)
        set_onnx_meta(model, meta)
        onnx.save(model, staged.staged[-1])
        _verify(staged.staged[-1], meta)
    return out_path


def _verify(path, meta):
    """The written file loads (in onnxruntime when installed) and carries exactly ``meta``."""
    if available("onnxruntime"):
        from edgecsp.backends.onnxruntime.runner import read_meta

        found = read_meta(path)
    else:
        found = load_onnx(path)[1]
    if found.to_json() != meta.to_json():
        raise VerificationError("{}: the metadata read back differs from the metadata written".format(path))
