"""Build for ONNX Runtime targets: a checked copy of the ONNX with its metadata stamped (host side)."""
import os

from edgecsp._lazy import available, require
from edgecsp.backends import check_opset, file_sha256, load_onnx, onnx_opset, set_onnx_meta, staging_folder
from edgecsp.errors import UnsupportedError, VerificationError
from edgecsp.targets import check_precision, get_target

BACKEND = "onnxruntime"


def build(onnx_path, out_path, precision=None, target="cpu-ort"):
    """Write ``out_path``: the ONNX at ``onnx_path`` with precision/target in its metadata; returns the path.

    The file is written into a staging folder next to ``out_path``, checked there, then renamed into place.
    """
    target = get_target(target)
    if target.backend != BACKEND:
        raise UnsupportedError("target {} uses the {} backend, not {}".format(target.name, target.backend, BACKEND))
    precision = check_precision(target, precision)
    onnx = require("onnx", "building for target " + target.name)
    model, meta = load_onnx(onnx_path)
    check_opset(onnx_opset(model), target, os.path.basename(str(onnx_path)))
    import edgecsp.backends.onnxruntime as backend

    meta = meta.with_extra(precision=precision, target=target.name, backend=BACKEND,
                           onnxruntime=backend.version(), onnx_sha256=file_sha256(str(onnx_path)))
    set_onnx_meta(model, meta)

    out_path = str(out_path)
    with staging_folder(out_path) as staging:
        staged = os.path.join(staging, os.path.basename(out_path))
        onnx.save(model, staged)
        _verify(staged, meta)
        os.replace(staged, out_path)
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
