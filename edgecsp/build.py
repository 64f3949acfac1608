"""``edgecsp build``: turn an exported ONNX into the artefact a target runs (library entry point).

The target record says which backend builds it, which precisions it takes and the artefact's suffix; this module
checks the request and hands it to ``get_backend(target.backend).build``.

Host/device split: a backend whose artefacts must be built on the device itself (TensorRT) offers
``build_problem(target)`` (why this machine cannot build them, None when it can) and ``write_bundle``. In mode
"auto" such a target gets its artefact built here when it can be, else a device bundle (a folder with the
fitted ONNX, a manifest and the commands to run on the device); on the device a bundle folder is the source.
Python 3.6 compatible (it runs on the device too).
"""
import os
from typing import NamedTuple, Optional

from edgecsp._files import READS, READS_SPEC, WRITES, check_paths, require_file
from edgecsp._lazy import available, check_numpy
from edgecsp.backends import get_backend, get_backend_record
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.onnxio import ONNX_HINT, check_opset, load_onnx, onnx_opset
from edgecsp.targets import check_precision, dla_tag, get_target
from edgecsp.validate import choice

DEFAULT_FOLDER = "engines"
BUILD_MODES = ("auto", "here", "bundle")  # where the artefact is built: decide, this machine, the device
BUNDLE_SUFFIX = "-bundle"


class BuildConfig(NamedTuple):
    onnx_path: str  # an exported .onnx, or (on the device) a bundle folder written by a host build
    target: str = "cpu"
    precision: Optional[str] = None  # None: the target's default precision (a bundle's own, for a bundle)
    output: Optional[str] = None  # None: engines/<onnx stem>-<target>-<precision><suffix> (or -bundle/); an
    # existing folder: that default name inside it
    mode: str = "auto"  # one of BUILD_MODES; "bundle"/"here" only for backends with a host/device split
    options: dict = {}  # backend build options, e.g. TensorRT's workspace_mib, calib (backend.BUILD_OPTIONS)


# what build reads and writes (config fields and path options): no output may replace or sit inside an input
# (edgecsp._files.check_paths)
PATHS = (("onnx_path", "ONNX", READS), ("calib", "--calib", READS_SPEC), ("calib_cache", "--calib-cache", READS),
         ("val_data", "--data", READS), ("val_images", "--images", READS), ("output", "-o", WRITES),
         ("timing_cache", "--timing-cache", WRITES))


def default_output(onnx_path, target, precision, folder=DEFAULT_FOLDER, bundle=False, dla_core=None):
    # type: (str, str, str, str, bool, Optional[int]) -> str
    """``<folder>/<onnx stem>-<target>-<precision>[-dla<N>]<suffix or -bundle>``: a DLA build never takes the name
    of the GPU one."""
    target = get_target(target)
    stem = os.path.splitext(os.path.basename(str(onnx_path)))[0]
    return os.path.join(folder, "{}-{}-{}{}{}".format(stem, target.name, precision, dla_tag(dla_core),
                                                      BUNDLE_SUFFIX if bundle else target.suffix))


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


def resolve_mode(mode, target, backend):
    # type: (str, ...) -> str
    """"here" or "bundle" for ``mode`` on this machine; UnsupportedError when the request cannot be met."""
    choice(mode, "build mode", BUILD_MODES)
    if not get_backend_record(target.backend).device_build:
        if mode == "bundle":
            raise UnsupportedError("target {} builds its artefact on this machine: device bundles are for targets "
                                   "whose engines are built on the device (TensorRT targets)".format(target.name))
        return "here"
    if mode == "bundle":
        return mode
    problem = backend.build_problem(target)
    if mode == "here" and problem:
        raise UnsupportedError("cannot build the {} engine on this machine: {}; write the device bundle instead "
                               "(drop --device-build) and build it on the {}".format(target.name, problem, target.name))
    return "bundle" if problem else "here"


def check_options(options, target, backend):
    """``options`` if the target's backend takes them all; InputError naming the strays otherwise.

    A backend with an accuracy gate gets the validation metric it measures (``validator``) when validation
    data is given: backends never import evaluation.
    """
    known = tuple(backend.BUILD_OPTIONS)
    strays = sorted(k for k in options if k not in known)
    if strays:
        raise InputError("target {} ({} backend) takes no option {}{}".format(
            target.name, target.backend, ", ".join(strays),
            ": it takes " + ", ".join(known) if known else ": these are TensorRT options"))
    options = dict(options)
    if (get_backend_record(target.backend).accuracy_gate and options.get("val_data")
            and options.get("validator") is None):
        from edgecsp.evaluation.gate import DetectionValidation

        options["validator"] = DetectionValidation(options["val_data"], options.get("val_images"),
                                                   options.get("val_metric") or "map50")
    return options


def resolve_output(output, onnx_path, target, precision, bundle, dla_core=None):
    # type: (Optional[str], str, ...) -> str
    """Where the artefact goes: ``output``, or the default name in the default folder or in ``output`` when that
    is an existing folder (for a bundle, a folder that is not itself a bundle)."""
    if output is None:
        return default_output(onnx_path, target, precision, bundle=bundle, dla_core=dla_core)
    output = str(output)
    if os.path.isdir(output) and not (bundle and _is_bundle(output)):
        return default_output(onnx_path, target, precision, folder=output, bundle=bundle, dla_core=dla_core)
    return output


def _is_bundle(folder):
    from edgecsp.backends.tensorrt.manifest import BUNDLE_MANIFEST  # the device bundles' one manifest name

    return os.path.isfile(os.path.join(folder, BUNDLE_MANIFEST))


def _bundle_inputs(folder):
    """The files of a device bundle an engine is built from: its manifest, ONNX model(s) and calibration cache."""
    from edgecsp.backends.tensorrt.host.bundle import CACHE_FILE
    from edgecsp.backends.tensorrt.manifest import BUNDLE_MANIFEST

    names = sorted(os.listdir(str(folder)))
    return [os.path.join(str(folder), n) for n in names if n in (BUNDLE_MANIFEST, CACHE_FILE) or n.endswith(".onnx")]


def build(config):
    # type: (BuildConfig) -> str
    """Build ``config.onnx_path`` for ``config.target``; returns the artefact's path (a folder for a bundle)."""
    check_numpy()  # device builds run on JetPack's numpy
    target = get_target(config.target)
    backend = get_backend(target.backend)
    options = check_options(config.options or {}, target, backend)
    source = str(config.onnx_path)
    if os.path.isdir(source):
        return _build_from_bundle(config, target, backend, options)
    precision = check_precision(target, config.precision)
    mode = resolve_mode(config.mode, target, backend)
    output = resolve_output(config.output, source, target, precision, bundle=(mode == "bundle"),
                            dla_core=options.get("dla_core"))
    if mode == "here" and os.path.splitext(output)[1].lower() != target.suffix:
        raise InputError("target {} writes {} artefacts, but the output is {}".format(
            target.name, target.suffix, output))
    if mode == "bundle" and os.path.splitext(output)[1].lower() == target.suffix:
        raise InputError("a device bundle is a folder, but the output {} is named like an engine: drop -o or "
                         "name a folder".format(output))
    check_paths(dict(config._asdict(), **options), PATHS, output=output)
    check_source(source, target)
    if mode == "bundle":
        return backend.write_bundle(source, output, precision, target, **options)
    return backend.build(source, output, precision, target, **options)


def _build_from_bundle(config, target, backend, options):
    """On the device: build the engine a bundle folder describes (the bundle knows its precision)."""
    if not hasattr(backend, "build_from_bundle"):
        raise InputError("{} is a folder: target {} builds from an .onnx file ({})".format(
            config.onnx_path, target.name, ONNX_HINT))
    if config.mode == "bundle":
        raise InputError("{} is already a device bundle: build it on the device with --device-build".format(
            config.onnx_path))
    problem = backend.build_problem(target)
    if problem:
        raise UnsupportedError("cannot build the {} engine from bundle {} here: {}; run this on the {}".format(
            target.name, config.onnx_path, problem, target.name))
    if config.output and os.path.splitext(config.output)[1].lower() != target.suffix:
        raise InputError("target {} writes {} artefacts, but the output is {}".format(
            target.name, target.suffix, config.output))
    # the engine goes into the bundle by default: what the bundle holds is read, not the folder as a whole
    check_paths(dict(config._asdict(), **options), PATHS, onnx_path=_bundle_inputs(config.onnx_path))
    return backend.build_from_bundle(str(config.onnx_path), config.output, config.precision, target, **options)


METRIC_LABELS = {"map50": "mAP@0.5", "map50_95": "mAP@0.5:0.95"}


def int8_report(meta):
    # type: (object) -> list
    """Lines that say what an INT8 build measured (``meta.extra['calibration']``): the accuracy reached against
    FP32 and, after accuracy control (``--max-drop``), the layers that went back to float. Empty otherwise."""
    calibration = (meta.extra or {}).get("calibration") or {}
    figures = calibration.get("accuracy")
    lines = []
    if figures:
        bound = calibration.get("max_drop")
        lines.append("INT8 {} {:.2f} vs FP32 {:.2f} on {} images of {}: a drop of {:.2f} points{}".format(
            METRIC_LABELS.get(figures["metric"], figures["metric"]), 100 * figures["int8"], 100 * figures["fp32"],
            figures["validation_images"], figures["validation"], figures["drop_points"],
            "" if bound is None else " (--max-drop {:g})".format(bound)))
    reverted = calibration.get("reverted_to_float")
    if reverted is not None:
        lines.append("back in float after accuracy control: {}".format(
            "{} layer(s): {}".format(len(reverted), ", ".join(reverted)) if reverted else "none"))
    return lines

