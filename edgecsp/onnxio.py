"""ONNX helpers shared by export and every backend: load and check, opset, metadata, simplify, save.

It sits below both ``edgecsp.export`` and ``edgecsp.backends`` (neither imports the other); the onnx and onnxsim
packages are imported on first use. Saving goes through the one atomic writer (``edgecsp._files``).
"""
import os

from edgecsp._files import atomic_output, require_file
from edgecsp._lazy import require
from edgecsp.errors import InputError, UnsupportedError, VerificationError
from edgecsp.runtime.meta import META_KEY, ModelMeta, load_meta_or_raise

ONNX_HINT = "pass the path of an .onnx exported by `edgecsp export`"

__all__ = ["ONNX_HINT", "check_opset", "load_onnx", "onnx_meta_json", "onnx_opset", "save_onnx", "set_onnx_meta",
           "simplify"]


def load_onnx(path):
    """``(onnx.ModelProto, ModelMeta)`` for the exported ONNX at ``path``, checked; needs the onnx package.

    InputError when the file is missing or not a valid ONNX model, MetadataError when it has no edgecsp metadata.
    """
    onnx = require("onnx", "reading ONNX models")
    path = require_file(path, "ONNX model", ONNX_HINT)
    where = os.path.basename(path)
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, checker ValidationError, external data errors...
        raise InputError("{} is not a valid ONNX model ({}: {}): {}".format(
            where, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", ONNX_HINT))
    return model, load_meta_or_raise(onnx_meta_json(model), path)


def onnx_meta_json(model):
    """The edgecsp metadata JSON stored in an ``onnx.ModelProto`` (None when it has none)."""
    props = dict((p.key, p.value) for p in model.metadata_props)
    return props.get(META_KEY)


def onnx_opset(model):
    # type: (...) -> int
    """The default-domain opset an ``onnx.ModelProto`` imports (0 when it imports none)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def set_onnx_meta(model, meta):
    # type: (...) -> object
    """Store ``meta`` (a ModelMeta) under META_KEY in ``model.metadata_props`` (in place), replacing an older one."""
    if not isinstance(meta, ModelMeta):
        raise TypeError("set_onnx_meta takes a ModelMeta, got {}".format(type(meta).__name__))
    for prop in list(model.metadata_props):
        if prop.key == META_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    return model


def check_opset(opset, target, where):
    # type: (int, ...) -> None
    """UnsupportedError when an ONNX model's ``opset`` is above what ``target``'s parser takes."""
    if opset > target.max_opset:
        raise UnsupportedError("{} uses ONNX opset {} but target {} takes at most {}: re-export with "
                               "`edgecsp export --opset {}`".format(where, opset, target.name, target.max_opset,
                                                                    target.max_opset))


def simplify(onnx_model):
    """onnxsim with shape inference; raises VerificationError if it cannot prove its result equivalent."""
    onnxsim = require("onnxsim", "simplifying ONNX")
    simplified, ok = onnxsim.simplify(onnx_model)
    if not ok:
        raise VerificationError("onnxsim could not validate the simplified model: re-run with --no-simplify")
    return simplified


def save_onnx(model, path):
    """Write an ``onnx.ModelProto`` to ``path`` atomically (no external data); returns ``path``."""
    onnx = require("onnx", "writing ONNX models")
    with atomic_output(path) as tmp:
        onnx.save(model, tmp)
    return str(path)
