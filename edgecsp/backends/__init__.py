"""Inference backends: one subpackage per engine, declared here as records, all with the same small contract.

A :class:`Backend` record says, without importing anything, what a backend is: its engine package, the
artefact suffixes it runs, where those artefacts carry edgecsp's metadata, how it makes INT8, what it can do
(accuracy-gated INT8, device builds, overlapping requests). Everything that
lists backends (``bench``, the CLI help texts, the light-import test, the test gates) reads ``list_backends()``.

The subpackage a record names implements :data:`MODULE_CONTRACT` (checked by ``check_contract`` and a test):
``is_available()``, ``version()``, ``Runner`` (a :class:`~edgecsp.runtime.runner.BaseRunner`), ``read_meta(path)``,
``build(onnx_path, out_path, precision, target, **options)`` and ``BUILD_OPTIONS`` (the option keys it takes); a backend with ``device_build`` adds
``build_problem(target)``, ``write_bundle(...)`` and ``build_from_bundle(...)``. The subpackage is imported on
first use, the engine package only when a runner or a build needs it.

Adding a backend: its subpackage, one record in ``_BACKENDS`` (plus target records that use it), its tests.
"""
import importlib
import os
from typing import List, NamedTuple, Tuple

from edgecsp._files import require_file
from edgecsp.runtime.runner import BaseRunner
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.meta import ModelMeta

__all__ = ["Backend", "BaseRunner", "MODULE_CONTRACT", "artefact_help", "artefact_suffixes", "backend_for_path", "check_contract",
           "get_backend", "get_backend_record", "list_backends", "open_runner", "read_artefact_meta",
           "runner_options"]


class Backend(NamedTuple):
    """One backend, as data."""

    name: str  # what targets name in Target.backend
    module: str  # the subpackage implementing MODULE_CONTRACT
    package: str  # the engine's Python package: its presence is the availability check (tests' gates too)
    suffixes: Tuple[str, ...]  # artefact suffixes it runs (lower case), the first is what its builds write
    metadata: str  # where its artefacts carry edgecsp's ModelMeta
    label: str  # what its artefacts are called in help texts ("OpenVINO IR")
    description: str
    int8: str = ""  # how it makes INT8 artefacts ("" when it does not)
    accuracy_gate: bool = False  # INT8 builds can take --max-drop (an accuracy-controlled quantization)
    device_build: bool = False  # artefacts are tied to the device: built there from a bundle the host writes
    async_requests: bool = False  # its runner overlaps requests (submit/in_flight); others run them in turn


_BACKENDS = (
    Backend("onnxruntime", "edgecsp.backends.onnxruntime", "onnxruntime", (".onnx",),
            metadata="ONNX metadata_props['edgecsp.meta']", label="ONNX Runtime",
            description="ONNX Runtime, CPU execution provider",
            int8="static QDQ (onnxruntime.quantization), reusable tensor ranges",
            async_requests=True),
    Backend("openvino", "edgecsp.backends.openvino", "openvino", (".xml",),
            metadata="IR rt_info['edgecsp']['meta']", label="OpenVINO IR",
            description="OpenVINO IR (.xml + .bin), CPU plugin",
            int8="NNCF post-training quantization (PERFORMANCE preset)", accuracy_gate=True, async_requests=True),
    Backend("tensorrt", "edgecsp.backends.tensorrt", "tensorrt", (".engine", ".trt", ".plan"),
            metadata="sidecar manifest <engine>.json (the engine stays a plain TensorRT plan)",
            label="TensorRT engine", description="TensorRT engine, built on its device from a host-written bundle",
            int8="TensorRT calibration cache (entropy/minmax computed on the host)", device_build=True),
)

# what every backend subpackage offers; device-build backends add DEVICE_BUILD_CONTRACT
MODULE_CONTRACT = ("NAME", "is_available", "version", "Runner", "read_meta", "build", "BUILD_OPTIONS")
DEVICE_BUILD_CONTRACT = ("build_problem", "write_bundle", "build_from_bundle")


def list_backends():
    # type: () -> List[Backend]
    return list(_BACKENDS)


def get_backend_record(name):
    # type: (str) -> Backend
    """The record of the backend called ``name``; UnsupportedError listing the known ones otherwise."""
    for record in _BACKENDS:
        if record.name == name:
            return record
    raise UnsupportedError("unknown backend {!r}: known backends are {}".format(
        name, ", ".join(b.name for b in _BACKENDS)))


def get_backend(name):
    """The backend subpackage called ``name`` (imported now); UnsupportedError for unknown ones."""
    return importlib.import_module(get_backend_record(name).module)


def check_contract(record, module):
    """The names of MODULE_CONTRACT (and DEVICE_BUILD_CONTRACT) that ``module`` lacks, plus mismatches."""
    wanted = MODULE_CONTRACT + (DEVICE_BUILD_CONTRACT if record.device_build else ())
    problems = [name for name in wanted if not hasattr(module, name)]
    if hasattr(module, "NAME") and module.NAME != record.name:
        problems.append("NAME is {!r}, not {!r}".format(module.NAME, record.name))
    if hasattr(module, "Runner") and not issubclass(module.Runner, BaseRunner):
        problems.append("Runner is not a BaseRunner")
    return problems


def artefact_suffixes():
    # type: () -> Tuple[str, ...]
    """Every artefact suffix some backend runs, in registry order."""
    return tuple(s for b in _BACKENDS for s in b.suffixes)


def artefact_help():
    # type: () -> str
    """'.onnx (ONNX Runtime), .xml (OpenVINO IR), ...' for the CLI's help texts."""
    return ", ".join("{} ({})".format("/".join(b.suffixes), b.label) for b in _BACKENDS)


def backend_for_path(path):
    # type: (str) -> str
    """The name of the backend that runs the artefact at ``path``, from its suffix."""
    suffix = os.path.splitext(str(path))[1].lower()
    for record in _BACKENDS:
        if suffix in record.suffixes:
            return record.name
    raise InputError("cannot tell which backend runs {}: expected one of {}".format(
        os.path.basename(str(path)), ", ".join(artefact_suffixes())))


def open_runner(path, **options):
    """An unopened runner for the artefact at ``path``; use it as ``with open_runner(path) as runner:``.

    ``options`` go to the backend's runner (``runner_options(name)``: threads=..., device=/hint= for OpenVINO,
    providers= for ORT).
    """
    name = backend_for_path(path)
    require_file(path)
    known = runner_options(name)
    strays = sorted(k for k in options if k not in known)
    if strays:
        raise InputError("the {} runner does not take these options ({}): it takes {}".format(
            name, ", ".join(strays), ", ".join(known) or "none"))
    return get_backend(name).Runner(path, **options)


def runner_options(name):
    # type: (str) -> Tuple[str, ...]
    """The keyword options the runner of backend ``name`` takes beyond the artefact path (from its signature)."""
    import inspect

    params = list(inspect.signature(get_backend(name).Runner.__init__).parameters.values())[2:]
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def read_artefact_meta(path):
    # type: (str) -> ModelMeta
    """The edgecsp metadata stored in the artefact at ``path`` (MetadataError when it has none)."""
    backend = get_backend(backend_for_path(path))
    return backend.read_meta(require_file(path))
