"""Build for ONNX Runtime targets: a checked copy of the ONNX with its metadata stamped (host side)."""
import os

from edgecsp._lazy import available, require
from edgecsp.backends import check_opset, file_sha256, load_onnx, onnx_opset, set_onnx_meta, staging_folder
from edgecsp.calibration.config import CALIBRATION_OPTIONS, int8_options
from edgecsp.errors import UnsupportedError, VerificationError
from edgecsp.targets import check_precision, get_target

BACKEND = "onnxruntime"
# what `edgecsp build --target cpu-ort` takes beyond precision; accuracy control (--max-drop) is OpenVINO's
BUILD_OPTIONS = CALIBRATION_OPTIONS


def build(onnx_path, out_path, precision=None, target="cpu-ort", **options):
    """Write ``out_path``: the ONNX at ``onnx_path`` with precision/target in its metadata; returns the path.

    int8 quantizes it (static QDQ, ``quantize.py``) with the calibration ``options`` (``BUILD_OPTIONS``: ``calib``,
    ``calib_count``, ``calib_cache``...) and writes the provenance record and the calibration ranges next to it.
    The files are written into a staging folder next to ``out_path``, checked there, then renamed into place, the
    model last.
    """
    target = get_target(target)
    if target.backend != BACKEND:
        raise UnsupportedError("target {} uses the {} backend, not {}".format(target.name, target.backend, BACKEND))
    precision = check_precision(target, precision)
    calibration, _ = int8_options(options, BUILD_OPTIONS)
    onnx = require("onnx", "building for target " + target.name)
    model, meta = load_onnx(onnx_path)
    check_opset(onnx_opset(model), target, os.path.basename(str(onnx_path)))
    import edgecsp.backends.onnxruntime as backend

    meta = meta.with_extra(precision=precision, target=target.name, backend=BACKEND,
                           onnxruntime=backend.version(), onnx_sha256=file_sha256(str(onnx_path)))
    out_path = str(out_path)
    with staging_folder(out_path) as staging:
        staged = os.path.join(staging, os.path.basename(out_path))
        sidecars = []
        if precision == "int8" or calibration is not None:
            from edgecsp.backends.onnxruntime.quantize import build_int8

            model, meta, sidecars = build_int8(onnx_path, staged, meta, precision, calibration)
        set_onnx_meta(model, meta)
        onnx.save(model, staged)
        _verify(staged, meta)
        _replace_sidecars(out_path, sidecars)
        os.replace(staged, out_path)
    return out_path


def _replace_sidecars(out_path, staged_paths):
    """Move the staged provenance/cache files next to ``out_path``; remove those of an earlier INT8 build."""
    from edgecsp.backends.onnxruntime.quantize import cache_path
    from edgecsp.calibration.provenance import provenance_path

    folder = os.path.dirname(os.path.abspath(out_path))
    names = [os.path.basename(p) for p in staged_paths]
    for stale in (provenance_path(out_path), cache_path(out_path)):
        if os.path.exists(stale) and os.path.basename(stale) not in names:
            os.remove(stale)
    for staged in staged_paths:
        os.replace(staged, os.path.join(folder, os.path.basename(staged)))


def _verify(path, meta):
    """The written file loads (in onnxruntime when installed) and carries exactly ``meta``."""
    if available("onnxruntime"):
        from edgecsp.backends.onnxruntime.runner import read_meta

        found = read_meta(path)
    else:
        found = load_onnx(path)[1]
    if found.to_json() != meta.to_json():
        raise VerificationError("{}: the metadata read back differs from the metadata written".format(path))
