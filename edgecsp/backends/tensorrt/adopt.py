"""An engine built without edgecsp (the bundle's trtexec line) gets the sidecar manifest edgecsp needs.

``edgecsp infer`` and ``edgecsp package`` take an engine only with its manifest (``<engine>.json``: TensorRT
version, GPU, metadata). ``adopt_engine`` writes one for an engine that trtexec (or another tool) built from a
device bundle's ONNX, on the device: it deserializes the engine with this device's TensorRT, checks its inputs and
outputs (names, shapes, dtypes) against the bundle, and records this device's TensorRT version and GPU (the
probes of ``device``). What the engine file cannot show (its precision, the FP32 layers, DLA) is taken from the
bundle, as the trtexec line written from it asked. Python 3.6; needs TensorRT, not pycuda.
"""
import hashlib
import os
from typing import List, NamedTuple, Optional, Sequence

from edgecsp import __version__
from edgecsp._files import atomic_output, require_file
from edgecsp._lazy import check_numpy, require
from edgecsp.backends.tensorrt.device import cuda_device
from edgecsp.backends.tensorrt.logger import make_logger
from edgecsp.backends.tensorrt.manifest import (EngineManifest, check_bundle_files, manifest_path, read_bundle,
                                               to_json)
from edgecsp.backends.tensorrt.policy import device_mismatch, sm_label
from edgecsp.backends.tensorrt.runner import TensorIO, describe_io
from edgecsp.backends.tensorrt.versions import major_minor
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.meta import UINT8_NHWC_BGR, ModelMeta
from edgecsp.targets import get_target

ENGINE_SUFFIXES = (".engine", ".trt", ".plan")
LAYER_PRECISIONS_SINCE = (8, 4)  # trtexec --layerPrecisions (what pins a bundle's FP32 layers) arrived with 8.4
BUILT_BY = "trtexec"  # the metadata's extra["built_by"] of an adopted engine


class Adopted(NamedTuple):
    """What ``adopt_engine`` wrote: the manifest's path and the record in it."""

    path: str
    manifest: EngineManifest


def _dims(shape):
    return tuple(-1 if d is None else int(d) for d in shape)


def _shape_text(shape):
    return "(" + ", ".join("?" if d is None or int(d) < 0 else str(int(d)) for d in shape) + ")"


def engine_problems(io, bundle, meta):
    # type: (Sequence[TensorIO], ...) -> List[str]
    """How the engine's inputs and outputs ``io`` differ from what the bundle's ONNX has ([] when they match):
    one input named and shaped as ``bundle.input_*`` of the dtype of its input form; the bundle's outputs, each
    of the dtype and shape the metadata's layout gives it (the check every runner makes)."""
    problems = []
    inputs = [t for t in io if t.is_input]
    outputs = dict((t.name, t) for t in io if not t.is_input)
    wanted_dtype = "uint8" if meta.input_form == UINT8_NHWC_BGR else "float32"
    if [t.name for t in inputs] != [bundle.input_name]:
        problems.append("its inputs are {} but the bundle's model has one input, {}".format(
            ", ".join(t.name for t in inputs) or "none", bundle.input_name))
    else:
        found = inputs[0]
        if tuple(found.shape) != _dims(bundle.input_shape):
            problems.append("input {} is shaped {} but the bundle's is {}".format(
                found.name, _shape_text(found.shape), _shape_text(bundle.input_shape)))
        if found.dtype != wanted_dtype:
            problems.append("input {} is {} but the bundle's is {} (trtexec: drop --inputIOFormats)".format(
                found.name, found.dtype, wanted_dtype))
    extra = sorted(set(outputs) - set(bundle.outputs))
    missing = [name for name in bundle.outputs if name not in outputs]
    if extra or missing:
        problems.append("its outputs are {} but the bundle's are {}".format(
            ", ".join(sorted(outputs)) or "none", ", ".join(bundle.outputs)))
        return problems
    layout = meta.spec
    for index, name in enumerate(list(meta.outputs) or bundle.outputs):
        found = outputs[name]
        dims = tuple(d if d > 0 else None for d in found.shape)
        if not layout.shape_fits(meta, index, dims):
            problems.append("output {} is shaped {} but the bundle's model gives {}".format(
                name, _shape_text(found.shape), _shape_text(layout.output_shape(meta, index))))
        wanted = layout.output_dtype(meta, index)
        if found.dtype != wanted:
            problems.append("output {} is {} but the bundle's is {} (trtexec: drop --outputIOFormats)".format(
                name, found.dtype, wanted))
    return problems


def profile_max_batch(trt, engine, tensor):
    # type: (...) -> Optional[int]
    """The largest batch of the engine's first optimization profile for input ``tensor`` (None when static)."""
    if tensor.shape and int(tensor.shape[0]) > 0:
        return None
    if hasattr(engine, "get_tensor_profile_shape"):  # TensorRT 8.5+
        shapes = engine.get_tensor_profile_shape(tensor.name, 0)
    else:
        shapes = engine.get_profile_shape(0, tensor.index)
    return int(tuple(shapes[2])[0])  # (min, opt, max)


def _check_engine_path(engine_path):
    path = require_file(engine_path, "TensorRT engine", "pass the engine trtexec wrote (its --saveEngine path)")
    if os.path.splitext(path)[1].lower() not in ENGINE_SUFFIXES:
        raise InputError("{} is not a TensorRT engine file name (expected {}): pass the --saveEngine file of the "
                         "trtexec line".format(path, ", ".join(ENGINE_SUFFIXES)))
    return path


def adopt_engine(engine_path, bundle_folder, target=None):
    # type: (str, str, Optional[str]) -> Adopted
    """Write ``<engine>.json`` for the engine at ``engine_path``, built without edgecsp from the device bundle
    ``bundle_folder`` on this device; returns the manifest's path and record.

    InputError: no such engine, or its inputs/outputs are not the bundle's (``engine_problems``), or ``target``
    is not the bundle's; MetadataError: not a bundle; MissingDependency: no TensorRT; UnsupportedError: this
    device is not the bundle's target, or its TensorRT cannot deserialize the engine.
    """
    check_numpy()  # a device command: JetPack's numpy must be new enough
    engine_path = _check_engine_path(engine_path)
    folder = str(bundle_folder)
    bundle = read_bundle(folder)
    bundle_target = get_target(bundle.target)
    if target is not None and get_target(target).name != bundle_target.name:
        raise InputError("bundle {} was written for {}, not {}: pass --target {} (or the bundle written for {})".format(
            folder, bundle_target.name, get_target(target).name, bundle_target.name, get_target(target).name))
    check_bundle_files(folder, bundle)
    trt = require("tensorrt", "reading TensorRT engines")
    gpu = cuda_device()
    problem = device_mismatch(bundle_target, trt.__version__, gpu.sm if gpu else None)
    name = os.path.basename(engine_path)
    if problem:
        raise UnsupportedError("cannot write the manifest of {} here: {}; run this on the {} whose trtexec built "
                               "it".format(name, problem, bundle_target.name))
    with open(engine_path, "rb") as handle:
        data = handle.read()
    logger = make_logger(trt, echo_errors=False)  # its errors go into the one-line refusal
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    if engine is None:
        raise UnsupportedError("TensorRT {} on this {} cannot load {} ({}): it is not an engine built here; build it "
                               "again on this device with the trtexec line of {}".format(
                                   trt.__version__, sm_label(gpu.sm), name, " | ".join(logger.errors) or
                                   "no TensorRT message", os.path.join(folder, "build_on_device.sh")))
    io = describe_io(trt, engine)
    meta = ModelMeta.from_dict(bundle.meta, os.path.join(folder, "bundle.json"))
    problems = engine_problems(io, bundle, meta)
    if problems:
        raise InputError("{} was not built from bundle {}: {}; build it with the trtexec line of {}".format(
            name, folder, "; ".join(problems), os.path.join(folder, "build_on_device.sh")))
    inputs = [t for t in io if t.is_input]
    max_batch = profile_max_batch(trt, engine, inputs[0]) or bundle.max_batch
    pinned = major_minor(trt.__version__) >= LAYER_PRECISIONS_SINCE and bundle.precision != "fp32"
    record = EngineManifest(
        engine=name, engine_sha256=hashlib.sha256(data).hexdigest(), tensorrt=trt.__version__, gpu=gpu.name,
        sm=gpu.sm, target=bundle_target.name, precision=bundle.precision, input_name=bundle.input_name,
        input_shape=bundle.input_shape, outputs=bundle.outputs, onnx_sha256=bundle.onnx_sha256,
        meta=meta.with_extra(precision=bundle.precision, target=bundle_target.name, backend="tensorrt",
                             tensorrt=trt.__version__, gpu=gpu.name, sm=gpu.sm, built_by=BUILT_BY).to_dict(),
        max_batch=int(max_batch), calibration=dict(bundle.calibration) if bundle.precision == "int8" else None,
        fp32_layers=bundle.fp32_layers if pinned else [], dla_core=bundle.dla_core, workspace_mib=0,
        edgecsp=__version__)
    path = manifest_path(engine_path)
    with atomic_output(path) as staged:
        with open(staged, "w") as handle:
            handle.write(to_json(record))
    return Adopted(path, record)
