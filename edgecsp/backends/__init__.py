"""Inference backends: one subpackage per engine, all with the same small interface.

Every backend module offers ``is_available()``, ``version()``, ``Runner`` (a ``BaseRunner``), ``read_meta(path)``
and ``build(onnx_path, out_path, precision, target)``. Backends are listed here as data; the module is
imported on first use, and the engine package (onnxruntime, openvino...) only when a runner or build needs it.
"""
import contextlib
import importlib
import os
import shutil
import tempfile
from typing import List, NamedTuple, Optional, Tuple

from edgecsp._files import file_sha256  # noqa: F401 (re-exported)
from edgecsp.backends.base import BaseRunner, load_meta_or_raise, require_file
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.meta import META_KEY, ModelMeta

__all__ = ["BackendInfo", "BaseRunner", "backend_for_path", "check_opset", "file_sha256", "get_backend",
           "list_backends", "load_onnx", "onnx_opset", "open_runner", "read_artefact_meta", "set_onnx_meta",
           "staging_folder"]

ONNX_HINT = "pass the path of an .onnx exported by `edgecsp export`"


class BackendInfo(NamedTuple):
    name: str
    module: Optional[str]  # None while the backend is not implemented
    suffixes: Tuple[str, ...]  # artefact suffixes it runs (lower case)
    pending: str = ""  # why it cannot be used yet, when ``module`` is None


_BACKENDS = (
    BackendInfo("onnxruntime", "edgecsp.backends.onnxruntime", (".onnx",)),
    BackendInfo("openvino", "edgecsp.backends.openvino", (".xml",)),
    BackendInfo("tensorrt", "edgecsp.backends.tensorrt", (".engine", ".trt", ".plan")),
)


def list_backends():
    # type: () -> List[BackendInfo]
    return list(_BACKENDS)


def _info(name):
    for info in _BACKENDS:
        if info.name == name:
            return info
    raise UnsupportedError("unknown backend {!r}: known backends are {}".format(
        name, ", ".join(b.name for b in _BACKENDS)))


def get_backend(name):
    """The backend module called ``name`` (imported now); UnsupportedError for unknown or pending ones."""
    info = _info(name)
    if info.module is None:
        raise UnsupportedError(info.pending)
    return importlib.import_module(info.module)


def backend_for_path(path):
    # type: (str) -> str
    """The name of the backend that runs the artefact at ``path``, from its suffix."""
    suffix = os.path.splitext(str(path))[1].lower()
    for info in _BACKENDS:
        if suffix in info.suffixes:
            return info.name
    known = ", ".join(s for b in _BACKENDS for s in b.suffixes)
    raise InputError("cannot tell which backend runs {}: expected one of {}".format(
        os.path.basename(str(path)), known))


def open_runner(path, **options):
    """An unopened runner for the artefact at ``path``; use it as ``with open_runner(path) as runner:``.

    ``options`` go to the backend's runner (threads=..., and device=/hint= for OpenVINO, providers= for ORT).
    """
    backend = get_backend(backend_for_path(path))
    require_file(path)
    try:
        return backend.Runner(path, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise InputError("{} does not take these options ({}): {}".format(
            backend.Runner.__name__, ", ".join(sorted(options)), exc))


def read_artefact_meta(path):
    # type: (str) -> ModelMeta
    """The edgecsp metadata stored in the artefact at ``path`` (MetadataError when it has none)."""
    backend = get_backend(backend_for_path(path))
    return backend.read_meta(require_file(path))


# -- host side: reading the ONNX that every build starts from ---------------------------------------------------
def load_onnx(path):
    """``(onnx.ModelProto, ModelMeta)`` for the exported ONNX at ``path``, checked; needs the onnx package.

    InputError when the file is missing or not a valid ONNX model, MetadataError when it has no edgecsp metadata.
    """
    from edgecsp._lazy import require

    onnx = require("onnx", "reading ONNX models")
    path = require_file(path, "ONNX model", ONNX_HINT)
    where = os.path.basename(path)
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, checker ValidationError, external data errors...
        raise InputError("{} is not a valid ONNX model ({}: {}): {}".format(
            where, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", ONNX_HINT))
    props = dict((p.key, p.value) for p in model.metadata_props)
    return model, load_meta_or_raise(props.get(META_KEY), path)


def onnx_opset(model):
    # type: (...) -> int
    """The default-domain opset an ``onnx.ModelProto`` imports (0 when it imports none)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def set_onnx_meta(model, meta):
    """Store ``meta`` under META_KEY in ``model.metadata_props`` (in place), replacing an older value."""
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


@contextlib.contextmanager
def staging_folder(out_path):
    """A temporary folder next to ``out_path``, removed on exit; build there, then ``os.replace`` into place.

    Next to the output means on the same file system, so the rename is atomic.
    """
    folder = os.path.dirname(os.path.abspath(str(out_path)))
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(dir=folder, prefix=".edgecsp-build-")
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
