"""``edgecsp build``: turn an exported ONNX into the artefact a target runs (library entry point).

The target record says which backend builds it, which precisions it takes and the artefact's suffix; this module
checks the request and hands it to ``get_backend(target.backend).build``.
"""
import os
from typing import NamedTuple, Optional

from edgecsp._lazy import available
from edgecsp.backends import ONNX_HINT, check_opset, get_backend, load_onnx, onnx_opset
from edgecsp.backends.base import require_file
from edgecsp.errors import InputError
from edgecsp.targets import check_precision, get_target

DEFAULT_FOLDER = "engines"


class BuildConfig(NamedTuple):
    onnx_path: str
    target: str = "cpu"
    precision: Optional[str] = None  # None: the target's default precision
    output: Optional[str] = None  # None: engines/<onnx stem>-<target>-<precision><suffix>


def default_output(onnx_path, target, precision, folder=DEFAULT_FOLDER):
    # type: (str, str, str, str) -> str
    target = get_target(target)
    stem = os.path.splitext(os.path.basename(str(onnx_path)))[0]
    return os.path.join(folder, "{}-{}-{}{}".format(stem, target.name, precision, target.suffix))


def check_source(onnx_path, target):
    """Check the ONNX a build starts from; returns its ModelMeta when the onnx package is there to read it.

    Without onnx only the path is checked here and the backend's own reader checks the content.
    """
    path = require_file(onnx_path, "ONNX model", ONNX_HINT)
    if not available("onnx"):
        if not path.lower().endswith(".onnx"):
            raise InputError("{} is not an ONNX model (no .onnx suffix): {}".format(path, ONNX_HINT))
        return None
    model, meta = load_onnx(path)
    check_opset(onnx_opset(model), get_target(target), os.path.basename(path))
    return meta


def build(config):
    # type: (BuildConfig) -> str
    """Build ``config.onnx_path`` for ``config.target``; returns the artefact's path."""
    target = get_target(config.target)
    precision = check_precision(target, config.precision)
    output = config.output or default_output(config.onnx_path, target, precision)
    if os.path.splitext(output)[1].lower() != target.suffix:
        raise InputError("target {} writes {} artefacts, but the output is {}".format(
            target.name, target.suffix, output))
    if os.path.abspath(output) == os.path.abspath(str(config.onnx_path)):
        raise InputError("the output {} would overwrite the source ONNX: choose another --output".format(output))
    check_source(config.onnx_path, target)
    return get_backend(target.backend).build(str(config.onnx_path), output, precision, target)
