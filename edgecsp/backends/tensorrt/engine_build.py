"""The device half of a TensorRT build: parse the bundle's ONNX, configure, build, write engine + manifest.

Runs where TensorRT is installed and the GPU is the target's (checked first). Every decision is in
``plan_engine`` and the small pure helpers, tested without TensorRT; the TensorRT calls are the few lines of
``_parse``, ``_configure``, ``_pin_fp32`` and ``_serialize``. API differences across 8.2..10 are handled by
feature detection (``hasattr``), not version tables. Python 3.6: this module runs on JetPack 4.6.1+ (L4T r32.7).
"""
import logging
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple

from edgecsp import __version__
from edgecsp._files import atomic_outputs, write_bytes_atomic
from edgecsp._lazy import require
from edgecsp.backends.tensorrt.cache_format import ALGORITHMS
from edgecsp.backends.tensorrt.calib_data import calibration_set
from edgecsp.backends.tensorrt.device import cuda_device
from edgecsp.backends.tensorrt.manifest import (EngineManifest, check_bundle_files, confined, engine_name, manifest_path,
                                               read_bundle, to_json)
from edgecsp.backends.tensorrt.options import make_options
from edgecsp.backends.tensorrt.logger import build_failure_message, make_logger
from edgecsp.backends.tensorrt.policy import (check_device_calibration, check_precision_policy, device_mismatch,
                                             sm_label)
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.meta import ModelMeta
from edgecsp.targets import get_target

log = logging.getLogger(__name__)
MIB = 1 << 20


class EnginePlan(NamedTuple):
    """Everything the TensorRT builder is told, decided before TensorRT is touched."""

    fp16: bool
    int8: bool
    workspace_bytes: int
    input_name: str
    profile: Optional[Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]  # (min, opt, max) input shapes
    fp32_tensors: Tuple[str, ...]
    dla_core: Optional[int]
    calibration: Optional[str]  # None | "cache" (the bundle's) | "images" (calibrate on the device)
    algorithm: Optional[str]  # the calibrator's cache-header algorithm
    batch_size: int  # calibration batch


def profile_shapes(input_shape, max_batch):
    """``(min, opt, max)`` for an input whose only dynamic dimension is the batch; None for a static input."""
    if all(d is not None for d in input_shape):
        return None
    if any(d is None for d in input_shape[1:]):
        raise UnsupportedError("the input shape {} has dynamic dimensions other than the batch: re-export with a "
                               "fixed input size (`edgecsp export --input-size H W`)".format(
                                   ["?" if d is None else d for d in input_shape]))
    rest = tuple(int(d) for d in input_shape[1:])
    return (1,) + rest, (int(max_batch),) + rest, (int(max_batch),) + rest


def plan_engine(manifest, options, overrides=()):
    # type: (...) -> EnginePlan
    """The build plan for a bundle ``manifest`` with device ``options`` (TensorRTOptions); ``overrides`` names
    the options given explicitly on the device, which win over the bundle's choices."""
    precision = manifest.precision
    int8 = precision == "int8"
    calibration = algorithm = None
    if int8:
        if options.calib:
            calibration = "images"
            algorithm = ALGORITHMS[check_device_calibration(options.calib_method)]
        elif manifest.calibration and manifest.calibration.get("cache"):
            calibration, algorithm = "cache", manifest.calibration.get("algorithm") or "EntropyCalibration2"
        elif manifest.calibration and manifest.calibration.get("config"):
            calibration = "images"
            check_device_calibration(manifest.calibration.get("method"))
            algorithm = manifest.calibration.get("algorithm") or ALGORITHMS[options.calib_method]
        else:
            raise InputError("this INT8 bundle has no calibration cache: pass --calib IMAGES on the device")
    workspace = options.workspace_mib if "workspace_mib" in overrides else manifest.workspace_mib
    profile = profile_shapes(manifest.input_shape, manifest.max_batch)
    first = manifest.input_shape[0] if manifest.input_shape else None
    return EnginePlan(
        fp16=precision in ("fp16", "int8"), int8=int8, workspace_bytes=int(workspace) * MIB,
        input_name=manifest.input_name, profile=profile,
        fp32_tensors=tuple(layer["tensor"] for layer in manifest.fp32_layers) if precision != "fp32" else (),
        dla_core=manifest.dla_core, calibration=calibration, algorithm=algorithm,
        batch_size=int(first) if first else 1)


def calibration_shape(plan):
    # type: (EnginePlan) -> Optional[Tuple[int, ...]]
    """The input shape INT8 calibration runs at: the calibrator's batch with the profile's other dimensions.

    TensorRT calibrates at a profile's kOPT shape (``setCalibrationProfile``: "MIN and MAX values will be
    overwritten by kOPT"), so a dynamic-batch build gets its own calibration profile with min = opt = max = this,
    never the main profile (whose kOPT is ``max_batch``: the calibrator's buffer holds ``batch_size`` images).
    """
    if not plan.int8 or not plan.profile:
        return None
    return (int(plan.batch_size),) + tuple(plan.profile[1][1:])


def layers_to_pin(layers, tensors):
    # type: (Sequence[Tuple[str, Sequence[str]]], Sequence[str]) -> Tuple[List[Tuple[str, List[int]]], List[str]]
    """``(layers, missing)``: for ``(layer name, output names)`` pairs, which layer outputs write ``tensors``
    (as ``(layer, [output indices])``) and which wanted tensors no layer writes."""
    wanted = set(tensors)
    pinned, seen = [], set()
    for name, outputs in layers:
        hits = [i for i, out in enumerate(outputs) if out in wanted]
        if hits:
            pinned.append((name, hits))
            seen.update(outputs[i] for i in hits)
    return pinned, [t for t in tensors if t not in seen]


def timing_cache_path(engine_path, trt_version, sm):
    # type: (str, str, str) -> str
    """Default timing cache: one per TensorRT version and GPU, next to the engine, shared by its builds."""
    return os.path.join(os.path.dirname(os.path.abspath(engine_path)),
                        "tensorrt-{}-{}.timing".format(trt_version, sm_label(sm)))


# -- the TensorRT calls ---------------------------------------------------------------------------------------
def _parse(trt, logger, builder, onnx_path):
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None and int(trt.__version__.split(".")[0]) < 10:  # implicit in 10, deprecated there
        flags = 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UnsupportedError("TensorRT {} cannot parse {}: {} (the host lint did not catch this: please report it "
                               "with the model)".format(trt.__version__, os.path.basename(onnx_path),
                                                        " | ".join(errors) or "no parser message"))
    return network, parser  # the parser owns weights the network refers to: keep it alive until the build


def _pin_fp32(trt, network, tensors):
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    described = [(layer.name, [layer.get_output(j).name for j in range(layer.num_outputs)]) for layer in layers]
    pinned, missing = layers_to_pin(described, tensors)
    by_name = dict((layer.name, layer) for layer in layers)
    for name, outputs in pinned:
        by_name[name].precision = trt.float32
        for j in outputs:
            by_name[name].set_output_type(j, trt.float32)
    if missing:
        log.warning("no TensorRT layer writes %s: these stay in reduced precision", ", ".join(missing))
    return [name for name, _ in pinned]


def _configure(trt, builder, network, plan, calibrator, timing_data):
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    else:
        config.max_workspace_size = plan.workspace_bytes
    if plan.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    if plan.profile:
        profile = builder.create_optimization_profile()
        profile.set_shape(plan.input_name, *plan.profile)
        config.add_optimization_profile(profile)
        shape = calibration_shape(plan)
        if shape is not None:
            calibration = builder.create_optimization_profile()
            calibration.set_shape(plan.input_name, shape, shape, shape)
            config.set_calibration_profile(calibration)
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if plan.fp32_tensors and _pin_fp32(trt, network, plan.fp32_tensors):
        obey = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None)
        config.set_flag(obey if obey is not None else trt.BuilderFlag.STRICT_TYPES)
    if hasattr(config, "create_timing_cache"):
        config.set_timing_cache(config.create_timing_cache(timing_data), False)
    return config


def _serialize(trt, builder, network, config, logger):
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UnsupportedError(build_failure_message(trt.__version__, logger.errors))
    timing = config.get_timing_cache() if hasattr(config, "get_timing_cache") else None
    return bytes(serialized), (bytes(timing.serialize()) if timing is not None else None)


# -- entry points ---------------------------------------------------------------------------------------------
def build_from_bundle(folder, out_path=None, precision=None, target=None, **options):
    """Build the engine a device bundle describes, on this device; returns the engine path.

    ``out_path`` defaults to ``<bundle>/<stem>-<target>-<precision>.engine``; ``options`` (TensorRTOptions
    fields) given here override the bundle's workspace, or recalibrate INT8 on the device (calib=...).
    """
    folder = str(folder)
    manifest = read_bundle(folder)
    bundle_target = get_target(manifest.target)
    if target is not None and get_target(target).name != bundle_target.name:
        raise InputError("this bundle was written for {}, not {}: write one for {} on the host".format(
            bundle_target.name, get_target(target).name, get_target(target).name))
    if precision is not None and precision != manifest.precision:
        raise InputError("this bundle was prepared for {} (its FP16 check and calibration belong to it), not {}: "
                         "write a {} bundle on the host".format(manifest.precision, precision, precision))
    opts = make_options(**options)
    check_precision_policy(bundle_target, manifest.precision, manifest.allow_slow_int8 or opts.allow_slow_int8)
    onnx_path = check_bundle_files(folder, manifest)
    out_path = str(out_path or os.path.join(folder, engine_name(manifest)))
    if os.path.splitext(out_path)[1].lower() not in (".engine", ".trt", ".plan"):
        raise InputError("engine output {} must end in .engine (or .trt/.plan)".format(out_path))
    trt = require("tensorrt", "building TensorRT engines")
    gpu = cuda_device()
    problem = device_mismatch(bundle_target, trt.__version__, gpu.sm if gpu else None)
    if problem:
        raise UnsupportedError("cannot build the {} engine here: {}; run this on the {} (or in its JetPack "
                               "container there)".format(bundle_target.name, problem, bundle_target.name))
    plan = plan_engine(manifest, opts, overrides=tuple(options))
    timing_path = opts.timing_cache or timing_cache_path(out_path, trt.__version__, gpu.sm)
    engine, timing = _build(trt, onnx_path, plan, manifest, opts, out_path, timing_path)
    meta = ModelMeta.from_dict(manifest.meta, os.path.join(folder, "bundle.json")).with_extra(
        precision=manifest.precision, target=bundle_target.name, backend="tensorrt", tensorrt=trt.__version__,
        gpu=gpu.name, sm=gpu.sm)
    calibration = dict(manifest.calibration or {}) if plan.int8 else None
    if plan.calibration == "images" and opts.calib:
        calibration = {"method": opts.calib_method, "algorithm": plan.algorithm, "computed_on": "device (TensorRT)",
                       "config": {"source": os.path.abspath(opts.calib), "count": opts.calib_count,
                                  "seed": opts.calib_seed, "every": opts.calib_every}}
    # the manifest lands first and the engine last; a stale pair fails the manifest's sha256 check
    with atomic_outputs(manifest_path(out_path), out_path) as (staged_manifest, staged_engine):
        record = EngineManifest(
            engine=os.path.basename(out_path), engine_sha256=_sha_of_bytes(engine), tensorrt=trt.__version__,
            gpu=gpu.name, sm=gpu.sm, target=bundle_target.name, precision=manifest.precision,
            input_name=manifest.input_name, input_shape=manifest.input_shape, outputs=manifest.outputs,
            onnx_sha256=manifest.onnx_sha256, meta=meta.to_dict(), max_batch=manifest.max_batch,
            calibration=calibration, fp32_layers=manifest.fp32_layers, dla_core=manifest.dla_core,
            workspace_mib=plan.workspace_bytes // MIB, edgecsp=__version__)
        with open(staged_manifest, "w") as handle:
            handle.write(to_json(record))
        with open(staged_engine, "wb") as handle:
            handle.write(engine)
        if timing:
            write_bytes_atomic(timing_path, timing)  # a timing cache may live anywhere
    return out_path


def _sha_of_bytes(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _build(trt, onnx_path, plan, manifest, opts, out_path, timing_path):
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network, parser = _parse(trt, logger, builder, onnx_path)
    timing_data = b""
    if os.path.isfile(timing_path):
        with open(timing_path, "rb") as handle:
            timing_data = handle.read()
    if not plan.int8:
        config = _configure(trt, builder, network, plan, None, timing_data)
        return _serialize(trt, builder, network, config, logger)
    meta = ModelMeta.from_dict(manifest.meta)
    cache_text = batches = None
    if plan.calibration == "cache":
        with open(confined(os.path.dirname(onnx_path), manifest.calibration["cache"], "the calibration cache")) as handle:
            cache_text = handle.read()
    else:
        config = (manifest.calibration or {}).get("config") or {}
        device_opts = opts if opts.calib else opts._replace(
            calib=config.get("source"), calib_count=config.get("count") or opts.calib_count,
            calib_seed=config.get("seed") or 0, calib_every=config.get("every"))
        batches = calibration_set(device_opts, meta, plan.batch_size)
    with cuda_context_for_calibration() as cuda:
        calibrator = _make_calibrator(trt, cuda, plan, batches, cache_text, out_path)
        config = _configure(trt, builder, network, plan, calibrator, timing_data)
        try:
            built = _serialize(trt, builder, network, config, logger)
        finally:
            calibrator.raise_failure()  # an exception inside a TensorRT callback, kept for after the build
        return built


def cuda_context_for_calibration():
    from edgecsp.backends.tensorrt.calibrator import cuda_context

    return cuda_context()


def _make_calibrator(trt, cuda, plan, batches, cache_text, out_path):
    from edgecsp.backends.tensorrt.calibrator import make_calibrator

    names = [s.name for s in batches.samples.samples] if hasattr(batches, "samples") else None
    return make_calibrator(trt, cuda, plan.algorithm, plan.batch_size, batches, cache_text,
                           cache_out=os.path.splitext(out_path)[0] + ".calib.cache", sample_names=names)


def build(onnx_path, out_path, precision=None, target="x86-cuda", **options):
    """Build an engine on this device from an exported ONNX (or a bundle folder); returns the engine path.

    From an ONNX, the host half runs here first (fit, lint, FP16 check when onnxruntime is installed) into a
    temporary bundle; INT8 is then calibrated by TensorRT itself on ``calib`` images.
    """
    if os.path.isdir(str(onnx_path)):
        return build_from_bundle(onnx_path, out_path, precision, target, **options)
    from edgecsp._lazy import available
    from edgecsp.backends.tensorrt.host.bundle import write_bundle

    host_options = dict(options, calibrate_on="device")
    if not available("onnxruntime"):
        host_options["fp16_check"] = False
    device_options = dict((k, v) for k, v in options.items()
                          if k in ("workspace_mib", "timing_cache", "allow_slow_int8"))
    import tempfile

    scratch = os.path.dirname(os.path.abspath(str(out_path)))
    if not os.path.isdir(scratch):
        os.makedirs(scratch)
    with tempfile.TemporaryDirectory(prefix=".edgecsp-bundle-", dir=scratch) as staging:
        folder = write_bundle(onnx_path, os.path.join(staging, "bundle"), precision, target, **host_options)
        return build_from_bundle(folder, out_path, precision, target, **device_options)
