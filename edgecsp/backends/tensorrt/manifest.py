"""Manifests: the device bundle's ``bundle.json`` and the sidecar ``<engine>.json`` next to every engine.

A TensorRT engine only runs with the TensorRT version and on the GPU it was built with, and carries none of
edgecsp's metadata; its sidecar manifest records both, and it is checked before the engine is deserialized.
The engine file itself stays a plain TensorRT plan (trtexec, DeepStream and Triton load it). Pure JSON and
hashing: Python 3.6, no TensorRT needed.
"""
import json
import os
from typing import List, NamedTuple, Optional

from edgecsp._files import file_sha256 as sha256_of
from edgecsp.backends.tensorrt.policy import sm_label
from edgecsp.errors import InputError, MetadataError, UnsupportedError
from edgecsp.runtime.meta import ModelMeta
from edgecsp.runtime.schema import (Field, confined_path, file_name, flag, free_json, integer, list_of, one_of, optional,
                                    read_file, read_record, sha256, text)
from edgecsp.targets import dla_tag, get_target
from edgecsp.validate import shown

BUNDLE_MANIFEST = "bundle.json"
BUNDLE_KIND = "edgecsp-device-bundle"
ENGINE_KIND = "edgecsp-tensorrt-engine"
FORMAT = 1


class BundleManifest(NamedTuple):
    """What the host decided for the device build; the device builds exactly this."""

    target: str
    precision: str
    onnx: str  # file name inside the bundle
    onnx_sha256: str
    input_name: str
    input_shape: List[Optional[int]]  # NCHW, None for dynamic dimensions
    outputs: List[str]
    meta: dict  # ModelMeta.to_dict() of the bundled ONNX (the device may lack the onnx package)
    trt_version: List[str]  # the target's (lowest, highest) TensorRT when the bundle was written
    sm: Optional[str]
    workspace_mib: int
    max_batch: int = 1
    dla_core: Optional[int] = None
    allow_slow_int8: bool = False
    fp32_layers: List[dict] = []  # [{"tensor", "node", "why"}]: kept in FP32 on the device
    calibration: Optional[dict] = None  # {"method", "cache", "source", "images", "percentile", "algorithm"}
    fp16_check: dict = {}  # {"ran", "images", "report", "why_not"}
    lint: dict = {}  # {"matrix", "warnings"}
    notes: List[str] = []
    source_onnx: str = ""
    source_onnx_sha256: str = ""
    edgecsp: str = ""
    format: int = FORMAT
    kind: str = BUNDLE_KIND


class EngineManifest(NamedTuple):
    """The sidecar of an engine: where it runs, what it computes, how it was built."""

    engine: str  # file name of the engine next to this manifest
    engine_sha256: str
    tensorrt: str  # tensorrt.__version__ that built it
    gpu: str
    sm: str
    target: str
    precision: str
    input_name: str
    input_shape: List[Optional[int]]
    outputs: List[str]
    onnx_sha256: str
    meta: dict
    max_batch: int = 1
    calibration: Optional[dict] = None
    fp32_layers: List[dict] = []
    dla_core: Optional[int] = None
    workspace_mib: int = 0
    edgecsp: str = ""
    format: int = FORMAT
    kind: str = ENGINE_KIND



def manifest_path(engine_path):
    # type: (str) -> str
    """The sidecar manifest of an engine: ``model.engine`` -> ``model.engine.json``."""
    return str(engine_path) + ".json"


def to_json(record):
    # type: (...) -> str
    return json.dumps(record._asdict(), indent=2, sort_keys=True) + "\n"


_PRECISIONS = one_of("fp32", "fp16", "int8")
_SHAPE = list_of(optional(integer(1, 1 << 20)), 4, 4)  # NCHW (NHWC for uint8 input), None where dynamic
_NAMES = list_of(text(256), 1, 64)
_FP32_LAYERS = list_of(free_json(typed=[Field("node", text(1024)), Field("tensor", optional(text(1024))),
                                        Field("why", optional(text(4096, empty=True)))]), 0, 100000)
_CALIBRATION = optional(free_json(typed=[Field("cache", optional(file_name())), Field("method", optional(text(32))),
                                         Field("algorithm", optional(text(64))), Field("record", optional(text(4096)))]))
_SHARED_FIELDS = [
    Field("target", text(64), required=True), Field("precision", _PRECISIONS, required=True),
    Field("input_name", text(256), required=True), Field("input_shape", _SHAPE, required=True),
    Field("outputs", _NAMES, required=True), Field("meta", free_json(), required=True),
    Field("max_batch", integer(1, 1 << 16), default=1), Field("dla_core", optional(integer(0, 7))),
    Field("fp32_layers", _FP32_LAYERS, default=[]), Field("calibration", _CALIBRATION),
    Field("edgecsp", text(64, empty=True), default=""), Field("format", integer(1, FORMAT), default=FORMAT),
]
FIELDS = {
    BUNDLE_KIND: _SHARED_FIELDS + [
        Field("kind", one_of(BUNDLE_KIND), required=True),
        Field("onnx", file_name(), required=True), Field("onnx_sha256", sha256(), required=True),
        Field("trt_version", list_of(text(32), 1, 2), required=True), Field("sm", optional(text(16))),
        Field("workspace_mib", integer(1, 1 << 22), required=True),
        Field("allow_slow_int8", flag(), default=False), Field("fp16_check", free_json(), default={}),
        Field("lint", free_json(), default={}), Field("notes", list_of(text(4096, empty=True), 0, 1000), default=[]),
        Field("source_onnx", text(4096, empty=True), default=""),
        Field("source_onnx_sha256", text(64, empty=True), default=""),
    ],
    ENGINE_KIND: _SHARED_FIELDS + [
        Field("kind", one_of(ENGINE_KIND), required=True),
        Field("engine", file_name(), required=True), Field("engine_sha256", sha256(), required=True),
        Field("tensorrt", text(32), required=True), Field("gpu", text(256, empty=True), required=True),
        Field("sm", text(16), required=True), Field("onnx_sha256", sha256(), required=True),
        Field("workspace_mib", integer(0, 1 << 22), default=0),
    ],
}


def _from_dict(cls, data, where, kind):
    """The manifest ``data`` read through ``FIELDS[kind]``, its metadata through ModelMeta's rules."""
    fix = ("rebuild the engine with `edgecsp build`" if kind == ENGINE_KIND else
           "write the bundle again on the host with `edgecsp build --target T model.onnx`")
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise MetadataError("{} is not an {} manifest (kind {}): {}".format(
            where, kind, shown(data.get("kind") if isinstance(data, dict) else type(data).__name__, 40), fix))
    version = data.get("format", FORMAT)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
        raise MetadataError("{} uses manifest format {} but this edgecsp reads up to {}: upgrade edgecsp on this "
                            "device".format(where, version, FORMAT))
    record = cls(**read_record(data, FIELDS[kind], where, fix))
    ModelMeta.from_dict(record.meta, where)
    return record


def _load_json(path, hint):
    if not os.path.isfile(path):
        raise MetadataError("{} not found: {}".format(path, hint))
    return read_file(path, "manifest", hint)


def confined(folder, name, what):
    # type: (str, str, str) -> str
    """``folder/name`` for a file a bundle's manifest names, kept inside the bundle (``confined_path``)."""
    return confined_path(folder, name, what, "a bundle holds its own files; copy the bundle from the host again")


def engine_name(manifest):
    # type: (BundleManifest) -> str
    """The engine file the device build writes inside the bundle: ``<onnx stem>-<target>-<precision>.engine``
    (``...-<precision>-dla<N>.engine`` for DLA core N)."""
    stem = os.path.splitext(manifest.onnx)[0]
    return "{}-{}-{}{}{}".format(stem, manifest.target, manifest.precision, dla_tag(manifest.dla_core),
                                 get_target(manifest.target).suffix)


def bundle_given_as_engine(path):
    # type: (str) -> Optional[str]
    """Why ``path`` cannot be run as an engine when it is a device bundle (a folder with bundle.json), else None:
    the engine is built from it on the device first, by its build_on_device.sh."""
    path = str(path)
    if not os.path.isfile(os.path.join(path, BUNDLE_MANIFEST)):
        return None
    try:
        manifest = read_bundle(path)
    except (InputError, MetadataError):  # unreadable or damaged: still a bundle, named by its manifest file
        return ("{} is a device bundle, not an engine: copy it to the device and run `sh {}` there, then pass the "
                "engine it writes to --engine".format(path, os.path.join(path, "build_on_device.sh")))
    engine = os.path.join(path, engine_name(manifest))
    if os.path.isfile(engine):
        return "{} is a device bundle, not an engine; the engine built from it is {}: pass --engine {}".format(
            path, engine, engine)
    return ("{} is a device bundle for {}, not an engine: build its engine on the {} first (`sh {}` there, or with "
            "trtexec: the lines in that file), then run `edgecsp infer --engine {} ...`".format(
                path, manifest.target, manifest.target, os.path.join(path, "build_on_device.sh"), engine))


# -- bundles --------------------------------------------------------------------------------------------------
def read_bundle(folder):
    # type: (str) -> BundleManifest
    """The manifest of the device bundle ``folder``; MetadataError when it is not a bundle."""
    path = os.path.join(str(folder), BUNDLE_MANIFEST)
    data = _load_json(path, "a device bundle is a folder written by `edgecsp build --target T model.onnx` on a "
                            "machine without the target's GPU")
    return _from_dict(BundleManifest, data, path, BUNDLE_KIND)


def check_bundle_files(folder, manifest):
    # type: (str, BundleManifest) -> str
    """The bundled ONNX's path after checking it is the one the manifest describes (sha256); InputError else."""
    onnx_path = confined(folder, manifest.onnx, "the ONNX")
    where = os.path.basename(os.path.abspath(str(folder)))
    if not os.path.isfile(onnx_path):
        raise InputError("bundle {} lacks {}: copy the whole folder from the host again".format(where, manifest.onnx))
    found = sha256_of(onnx_path)
    if found != manifest.onnx_sha256:
        raise InputError("{} in bundle {} does not match its manifest (sha256 {}... != {}...): it was modified or "
                         "copied incompletely; copy the bundle again or rebuild it on the host".format(
                             manifest.onnx, where, found[:12], manifest.onnx_sha256[:12]))
    if manifest.calibration and manifest.calibration.get("cache"):
        cache = confined(folder, manifest.calibration["cache"], "the calibration cache")
        if not os.path.isfile(cache):
            raise InputError("bundle {} lacks its calibration cache {}: copy the whole folder again".format(
                where, manifest.calibration["cache"]))
    return onnx_path


# -- engines --------------------------------------------------------------------------------------------------
def read_engine_manifest(engine_path):
    # type: (str) -> EngineManifest
    """The sidecar manifest of ``engine_path``; MetadataError (saying how to get one) when it is missing."""
    path = manifest_path(engine_path)
    if not os.path.isfile(path):
        raise MetadataError("{} has no sidecar manifest {}: edgecsp needs it to check the TensorRT version and GPU "
                            "and to post-process; build the engine with `edgecsp build`, or for an engine trtexec "
                            "built from a device bundle write it with `edgecsp build --from-trtexec {} "
                            "BUNDLE_FOLDER`".format(os.path.basename(str(engine_path)), os.path.basename(path),
                                                    str(engine_path)))
    data = _load_json(path, "rebuild the engine with `edgecsp build`")
    return _from_dict(EngineManifest, data, path, ENGINE_KIND)


def engine_meta(engine_path):
    # type: (str) -> ModelMeta
    """The edgecsp metadata of an engine, from its sidecar manifest."""
    manifest = read_engine_manifest(engine_path)
    return ModelMeta.from_dict(manifest.meta, manifest_path(engine_path))


def rebuild_hint(target):
    # type: (str) -> str
    return ("rebuild it on this device: `edgecsp build --target {} --device-build BUNDLE_FOLDER` (or from the "
            ".onnx), then run the new engine".format(target))


def check_engine_manifest(manifest, trt_version, sm, engine_name="engine", onnx_sha256=None):
    # type: (EngineManifest, Optional[str], Optional[str], str, Optional[str]) -> None
    """UnsupportedError when the engine cannot run here: another TensorRT version, another GPU, or (when
    ``onnx_sha256`` is given) built from another ONNX. The message says to rebuild on this device."""
    problems = []
    if trt_version is not None and str(trt_version) != manifest.tensorrt:
        problems.append("it was built with TensorRT {} but this device has TensorRT {}".format(
            manifest.tensorrt, trt_version))
    if sm is not None and str(sm) != str(manifest.sm):
        problems.append("it was built for {} ({}) but this GPU is {}".format(
            sm_label(manifest.sm), manifest.gpu or manifest.target, sm_label(sm)))
    if onnx_sha256 is not None and onnx_sha256 != manifest.onnx_sha256:
        problems.append("it was built from another ONNX (sha256 {}... != {}...)".format(
            manifest.onnx_sha256[:12], onnx_sha256[:12]))
    if problems:
        raise UnsupportedError("{} cannot run here: {}; TensorRT engines only run where they were built: {}".format(
            engine_name, "; ".join(problems), rebuild_hint(manifest.target)))


def check_engine_file(engine_path, manifest):
    # type: (str, EngineManifest) -> None
    """UnsupportedError when the engine file is not the one its manifest describes (replaced or truncated)."""
    found = sha256_of(engine_path)
    if found != manifest.engine_sha256:
        raise UnsupportedError("{} does not match its manifest (sha256 {}... != {}...): it was replaced or copied "
                               "incompletely; {}".format(os.path.basename(str(engine_path)), found[:12],
                                                         manifest.engine_sha256[:12], rebuild_hint(manifest.target)))
