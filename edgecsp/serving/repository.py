"""Triton model repositories: ``REPO/<name>/config.pbtxt`` and ``REPO/<name>/1/<model files>``.

``package_triton`` copies an artefact as it is for Triton's own backend (onnxruntime, openvino, tensorrt);
``python_repository`` wraps it in Triton's python backend with edgecsp's runner inside (``edgecsp serve``).
The model folder is written in a staging folder and moved into place whole: a failed package leaves nothing.
"""
import os
import shutil
from typing import NamedTuple, Optional

from edgecsp._files import atomic_folder, require_file, write_text_atomic
from edgecsp._lazy import require
from edgecsp.backends import backend_for_path, read_artefact_meta
from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.meta import check_interface
from edgecsp.serving.server import python_paths
from edgecsp.serving.triton_config import (BACKENDS, PYTHON, Interface, TensorSpec, check_model_name,
                                           default_model_name, model_config, to_pbtxt)

VERSION = "1"
PYTHON_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "triton_model.py")


class Packaged(NamedTuple):
    folder: str  # REPO/<name>
    name: str
    config: dict  # what config.pbtxt says, as model_config returned it
    files: tuple  # paths written, relative to the repository


def _onnx_dtype(elem_type):
    onnx = require("onnx", "reading an ONNX model's interface")
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


def onnx_interface(path):
    onnx = require("onnx", "reading an ONNX model's interface")
    graph = onnx.load(path, load_external_data=False).graph
    initializers = set(i.name for i in graph.initializer)

    def spec(value):
        dims = value.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
        return TensorSpec(value.name, _onnx_dtype(value.type.tensor_type.elem_type), shape)

    return Interface([spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output])


def openvino_interface(path):
    ov = require("openvino", "reading an OpenVINO IR's interface")
    model = ov.Core().read_model(path)

    def spec(port):
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        return TensorSpec(port.get_any_name(), port.get_element_type().to_dtype().name, shape)

    return Interface([spec(p) for p in model.inputs], [spec(p) for p in model.outputs])


def tensorrt_interface(path):
    """From the engine's sidecar manifest (no TensorRT needed): the input is float32 NCHW, or uint8 NHWC for an
    ``--input uint8`` build; the outputs are float32."""
    from edgecsp.backends.tensorrt.manifest import read_engine_manifest
    from edgecsp.runtime.meta import UINT8_NHWC_BGR, ModelMeta

    manifest = read_engine_manifest(path)
    meta = ModelMeta.from_dict(manifest.meta, path)
    shape = tuple(manifest.input_shape)
    layout = meta.spec
    outputs = []
    for index, name in enumerate(manifest.outputs):
        dims = layout.output_shape(meta, index)  # None where only the engine knows the size (Triton's -1)
        outputs.append(TensorSpec(name, layout.output_dtype(meta, index),
                                  ((shape[0],) + tuple(dims[1:])) if layout.batch_first(meta) else tuple(dims)))
    dtype = "uint8" if meta.input_form == UINT8_NHWC_BGR else "float32"
    return Interface([TensorSpec(manifest.input_name, dtype, shape)], outputs,
                     max_batch=manifest.max_batch if shape and shape[0] is None else None)


INTERFACES = {"onnxruntime": onnx_interface, "openvino": openvino_interface, "tensorrt": tensorrt_interface}


def artefact_interface(path):
    # type: (str) -> Interface
    return INTERFACES[backend_for_path(path)](path)


def _artefact_files(path, backend):
    """(source path, file name in the version folder) of everything the artefact is made of."""
    if backend == "openvino":
        return [(path, "model.xml"), (os.path.splitext(path)[0] + ".bin", "model.bin")]
    return [(path, BACKENDS[backend].files[0])]


def check_new_folder(folder, fix):
    """``folder`` when it is absent or an empty folder (``atomic_folder`` then writes it whole); InputError
    ending in ``fix`` otherwise."""
    if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise InputError("{} already exists and is not empty: {}".format(folder, fix))
    return folder


def _target_folder(repo, name, force=False, artefact=None):
    """``REPO/<name>``: new, or with ``force`` replaced whole once the new one is complete (never when it holds
    the ``artefact`` being packaged)."""
    from edgecsp._files import check_outputs_apart

    if os.path.exists(str(repo)) and not os.path.isdir(str(repo)):
        raise InputError("the repository {} is a file, not a folder: pass a folder".format(repo))
    folder = os.path.join(str(repo), name)
    if not force:
        return check_new_folder(folder, "pass another --model, another repository, --force to replace it, or "
                                        "remove it")
    if artefact is not None:
        check_outputs_apart([("ARTEFACT", artefact)], [("--triton", folder)])
    return folder


def _checked(artefact):
    path = require_file(artefact, "artefact", "pass an .onnx, an OpenVINO .xml or a TensorRT engine built by "
                                              "`edgecsp build`")
    backend = backend_for_path(path)
    if backend not in BACKENDS:
        raise InputError("{} is a {} artefact, which Triton does not serve: pass an .onnx, .xml or engine".format(
            os.path.basename(path), backend))
    try:
        meta = read_artefact_meta(path)
    except MetadataError as exc:
        raise MetadataError("{}; Triton's config carries the metadata so that clients can decode: {}".format(
            str(exc).rstrip("."), "re-export it with `edgecsp export`"))
    interface = artefact_interface(path)  # the check every runner makes when it loads the artefact
    check_interface(meta, interface.inputs[0].name, interface.inputs[0].shape,
                    [(o.name, o.shape) for o in interface.outputs], os.path.basename(path))
    return path, backend, meta


def package_triton(repo, artefact, name=None, max_batch=None, instances=1, force=False):
    # type: (str, str, Optional[str], Optional[int], int, bool) -> Packaged
    """Write ``REPO/<name>`` for Triton's own backend of ``artefact`` (its files copied as they are); ``force``
    replaces an existing ``REPO/<name>`` whole, atomically (a failed package leaves the old one)."""
    path, backend, meta = _checked(artefact)
    name = check_model_name(name) if name is not None else default_model_name(
        os.path.splitext(os.path.basename(path))[0])
    folder = _target_folder(repo, name, force, path)
    files = _artefact_files(path, backend)
    for source, _ in files:
        require_file(source, "artefact file", "rebuild it with `edgecsp build`")
    config = model_config(name, BACKENDS[backend], artefact_interface(path), meta.to_json(),
                          os.path.basename(path), max_batch=max_batch, instances=instances)
    written = _write(folder, config, [(source, os.path.join(VERSION, target)) for source, target in files])
    return Packaged(folder, name, config, tuple(os.path.join(name, w) for w in written))


def python_repository(repo, artefact, name=None, max_batch=None, instances=1):
    # type: (str, str, Optional[str], Optional[int], int) -> Packaged
    """Write ``REPO/<name>`` for Triton's python backend: ``1/model.py`` runs ``artefact`` (copied beside it)
    with edgecsp's runner, for whatever backend it is; the server's dynamic batcher hands it request batches."""
    path, backend, meta = _checked(artefact)
    name = check_model_name(name) if name is not None else default_model_name(
        os.path.splitext(os.path.basename(path))[0])
    folder = _target_folder(repo, name)
    artefact_dir = "artefact"
    copies = [(source, os.path.join(VERSION, artefact_dir, os.path.basename(source)))
              for source in _artefact_sources(path, backend)]
    config = model_config(name, PYTHON, artefact_interface(path), meta.to_json(), os.path.basename(path),
                          max_batch=max_batch, instances=instances,
                          artefact_file=os.path.join(artefact_dir, os.path.basename(path)),
                          python_paths=python_paths())
    copies.append((PYTHON_MODEL, os.path.join(VERSION, "model.py")))
    written = _write(folder, config, copies)
    return Packaged(folder, name, config, tuple(os.path.join(name, w) for w in written))


def _artefact_sources(path, backend):
    if backend == "openvino":
        return [path, os.path.splitext(path)[0] + ".bin"]
    if backend == "tensorrt":
        from edgecsp.backends.tensorrt.manifest import manifest_path

        return [path, manifest_path(path)]
    return [path]


def _write(folder, config, copies):
    """Stage the model folder: config.pbtxt and ``copies`` ((source, relative target)); then move it in."""
    written = ["config.pbtxt"]
    with atomic_folder(folder) as staging:
        write_text_atomic(os.path.join(staging, "config.pbtxt"), to_pbtxt(config))
        for source, target in copies:
            destination = os.path.join(staging, target)
            if not os.path.isdir(os.path.dirname(destination)):
                os.makedirs(os.path.dirname(destination))
            shutil.copyfile(source, destination)
            written.append(target)
    return written
