"""DeepStream configs for a model exported with ``--decode-in-graph`` (``edgecsp package --deepstream DIR MODEL``).

Writes ``DIR/config_infer_primary.txt`` (nvinfer: the model, its scaling and letterbox, the class count, NMS),
``DIR/labels.txt``, ``DIR/deepstream_app_config.txt`` (deepstream-app with N streams tiled) and ``DIR/README.txt``
(the steps on the device), and copies the model into DIR. For an INT8 ONNX it also writes ``DIR/calib.cache``,
the TensorRT calibration cache edgecsp computes on the host (entropy, as nvinfer's EntropyCalibrator2 reads it;
``edgecsp.backends.tensorrt.host.calib_cache``), which ``int8-calib-file`` names: nvinfer builds its INT8 engine
from it without calibrating. The decode appended to the graph and the head convolutions that feed it get no
scale in the cache, so TensorRT keeps them out of INT8 (the raw logits feed exp/sigmoid). The bounding-box parser
is DeepStream-Yolo's ``NvDsInferParseYolo`` (``libnvdsinfer_custom_impl_Yolo.so``, built on the device from
marcoslucianops/DeepStream-Yolo), which reads exactly the ``(N, M, 6)`` output the decode in the graph writes. Nothing here ran DeepStream: the files are
checked by parsing them back (tests), not by nvinfer.
"""
import math
import os
import shutil
from typing import NamedTuple

from edgecsp._files import atomic_folder, require_file
from edgecsp.backends import backend_for_path, read_artefact_meta
from edgecsp.calibration.config import SOURCE_HELP
from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.meta import PAD_CENTER
from edgecsp.serving.repository import artefact_interface, check_new_folder
from edgecsp.validate import positive_int

CUSTOM_LIB = "nvdsinfer_custom_impl_Yolo/libnvdsinfer_custom_impl_Yolo.so"
ENGINE_CREATE = "NvDsInferYoloCudaEngineGet"
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode
SAMPLE_URI = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"
FILES = ("config_infer_primary.txt", "labels.txt", "deepstream_app_config.txt", "README.txt")
CALIB_FILE = "calib.cache"
CALIB_ALGORITHM = "EntropyCalibration2"  # the calibrator class nvinfer reads int8-calib-file with
PARSER_REPO = "https://github.com/marcoslucianops/DeepStream-Yolo"


class DeepStreamPackage(NamedTuple):
    folder: str
    files: tuple  # names written inside folder
    infer_config: dict  # [property] of config_infer_primary.txt
    app_config: dict  # {section: {key: value}} of deepstream_app_config.txt


def infer_config(model_file, meta, precision, batch, custom_lib, conf, iou, max_det, engine_file=None,
                 calib_file=None):
    """The ``[property]`` and ``[class-attrs-all]`` groups of nvinfer's config, as ordered dicts."""
    # nvinfer computes net-scale-factor * (pixel - offsets): edgecsp's (pixel * scale - mean) / std with one std
    std = float(meta.std[0])
    prop = {"gpu-id": 0, "net-scale-factor": repr(float(meta.scale) / std),
            "model-color-format": 0 if str(meta.channel_order).upper() == "RGB" else 1}
    if any(float(m) for m in meta.mean):
        prop["offsets"] = ";".join(repr(float(m) / float(meta.scale)) for m in meta.mean)
    if engine_file:
        prop["model-engine-file"] = engine_file
    else:
        prop["onnx-file"] = model_file
        prop["model-engine-file"] = "model_b{}_gpu0_{}.engine".format(batch, precision)  # where nvinfer caches it
        if calib_file:
            prop["int8-calib-file"] = calib_file
    prop.update([("labelfile-path", "labels.txt"), ("batch-size", batch), ("network-mode", NETWORK_MODES[precision]),
                 ("num-detected-classes", meta.num_classes), ("interval", 0), ("gie-unique-id", 1),
                 ("process-mode", 1), ("network-type", 0), ("cluster-mode", 2),
                 ("maintain-aspect-ratio", 1 if meta.letterbox else 0),
                 ("symmetric-padding", 1 if meta.letterbox and meta.pad_position == PAD_CENTER else 0),
                 ("parse-bbox-func-name", meta.spec.deepstream_parser), ("custom-lib-path", custom_lib),
                 ("engine-create-func-name", ENGINE_CREATE)])
    classes = {"nms-iou-threshold": iou, "pre-cluster-threshold": conf, "topk": max_det}
    return prop, classes


def app_config(streams, uri, width, height):
    """deepstream-app's groups for ``streams`` sources of ``uri``, tiled, one primary GIE."""
    rows = int(math.floor(math.sqrt(streams)))
    columns = int(math.ceil(float(streams) / rows))
    return {
        "application": {"enable-perf-measurement": 1, "perf-measurement-interval-sec": 5},
        "tiled-display": {"enable": 1, "rows": rows, "columns": columns, "width": 1280, "height": 720, "gpu-id": 0,
                          "nvbuf-memory-type": 0},
        "source0": {"enable": 1, "type": 3, "uri": uri, "num-sources": streams, "gpu-id": 0, "cudadec-memtype": 0},
        "sink0": {"enable": 1, "type": 2, "sync": 0, "gpu-id": 0, "nvbuf-memory-type": 0},
        "osd": {"enable": 1, "gpu-id": 0, "border-width": 3, "text-size": 15, "nvbuf-memory-type": 0},
        "streammux": {"gpu-id": 0, "live-source": 0, "batch-size": streams, "batched-push-timeout": 40000,
                      "width": width, "height": height, "enable-padding": 0, "nvbuf-memory-type": 0},
        "primary-gie": {"enable": 1, "gpu-id": 0, "gie-unique-id": 1, "nvbuf-memory-type": 0, "batch-size": streams,
                        "config-file": "config_infer_primary.txt"},
        "tests": {"file-loop": 0},
    }


def to_keyfile(groups):
    """``{group: {key: value}}`` as a GLib key file (what DeepStream reads)."""
    lines = []
    for group, keys in groups.items():
        lines.append("[{}]".format(group))
        lines += ["{}={}".format(k, v) for k, v in keys.items()]
        lines.append("")
    return "\n".join(lines)


def check_int8_calibration(path, backend, precision, calib, calib_cache, target):
    """The TensorRT target whose version the computed calibration cache is stamped for; None when edgecsp
    computes none (not INT8, an engine, which is built already, or a ``calib_cache`` given). InputError for what
    an INT8 ONNX lacks, before anything is computed."""
    if precision != "int8" or backend == "tensorrt":
        if calib or calib_cache:
            raise InputError("--calib and --calib-cache apply to --precision int8 with an ONNX, not {} {}: drop "
                             "them".format(precision, os.path.basename(path)))
        return None
    if bool(calib) == bool(calib_cache):
        raise InputError("--precision int8 needs the calibration nvinfer builds from: pass --calib with {} (or "
                         "--calib-cache with a TensorRT cache of this model)".format(SOURCE_HELP))
    if calib_cache:
        require_file(calib_cache, "--calib-cache", "pass the calib.cache of an earlier package or bundle")
        return None
    from edgecsp.targets import get_target, list_targets

    trt_targets = [t.name for t in list_targets() if t.trt_version]
    if target is None:
        raise InputError("--precision int8 writes a calibration cache stamped for the device's TensorRT: pass "
                         "--target ({})".format(", ".join(trt_targets)))
    record = get_target(target)
    if not record.trt_version:
        raise InputError("--target {} does not run TensorRT: DeepStream runs on {}".format(
            record.name, ", ".join(trt_targets)))
    return record


def deepstream_cache(path, meta, calib, trt_version, batch=1):
    # type: (str, object, object, str, int) -> str
    """TensorRT calibration cache text for the ONNX at ``path`` (entropy histograms over ONNX Runtime on the
    ``CalibrationConfig`` ``calib``), without the tensors of the decode tail (``edgecsp.onnxio.decode_tail``),
    which TensorRT then runs in float."""
    from edgecsp._lazy import require
    from edgecsp.backends.tensorrt.cache_format import format_cache
    from edgecsp.backends.tensorrt.host.calib_cache import activation_histograms, compute_amaxes
    from edgecsp.calibration import CalibrationSet
    from edgecsp.onnxio import decode_tail

    onnx = require("onnx", "calibrating an ONNX for DeepStream")
    model = onnx.load(path)
    calib_set = CalibrationSet(calib, meta, batch).verify()
    amaxes = compute_amaxes(activation_histograms(model, lambda: iter(calib_set)), "entropy")
    tail = set(decode_tail(model))
    float_tensors = set(out for node in model.graph.node if node.name in tail for out in node.output)
    kept = dict((name, amax) for name, amax in amaxes.items() if name not in float_tensors)
    return format_cache(kept, trt_version, CALIB_ALGORITHM)


def readme_text(name, meta, precision, batch, streams, engine, target=None, calib=None):
    """``README.txt`` of the DeepStream folder: what is in it and the steps on the device."""
    cuda = target.cuda if target is not None and target.cuda else "<the device's CUDA version, e.g. 10.2, 11.4, 12.2>"
    lines = ["DeepStream folder for {} ({} classes, {}, batch {}, {} stream(s)), written by edgecsp.".format(
        name, meta.num_classes, precision.upper(), batch, streams), "",
        "Files: config_infer_primary.txt (nvinfer), deepstream_app_config.txt (deepstream-app), labels.txt, {}{}."
        .format(name, ", " + CALIB_FILE + " (INT8 calibration cache, int8-calib-file)" if calib else ""), "",
        "On the device (JetPack with DeepStream), in this folder:", "",
        "1. Build DeepStream-Yolo's bounding-box parser (NvDsInferParseYolo), which reads the decoded output:",
        "     git clone {}".format(PARSER_REPO),
        "     CUDA_VER={} make -C DeepStream-Yolo/nvdsinfer_custom_impl_Yolo".format(cuda),
        "     cp -r DeepStream-Yolo/nvdsinfer_custom_impl_Yolo .",
        "   (or point custom-lib-path in config_infer_primary.txt at the .so)", ""]
    step = 2
    if engine:
        lines += ["{}. {} is a TensorRT engine: it runs only on the GPU and TensorRT version that built it.".format(
            step, name), ""]
    else:
        lines += ["{}. The first run builds the {} engine from {} ({}: minutes on a Jetson) and keeps it as "
                  "model-engine-file; later runs load it.".format(step, precision.upper(), name,
                                                                   "INT8 from " + CALIB_FILE if calib else "no "
                                                                   "calibration needed"), ""]
        if calib:
            stamp = "TensorRT {} ({})".format(target.trt_version[0], target.name) if target is not None else \
                "the TensorRT that wrote it"
            lines += ["   {} is stamped for {}. TensorRT ignores a cache stamped for another version; on another"
                      .format(CALIB_FILE, stamp),
                      "   TensorRT, restamp its first line (the scales do not depend on the version):",
                      "     V=$(python3 -c \"import tensorrt as t; v=[int(x) for x in t.__version__.split('.')[:3]]; "
                      "print(v[0]*(10000 if v[0]>=10 else 1000)+v[1]*100+v[2])\")",
                      "     sed -i \"1s/^TRT-[0-9]*-/TRT-$V-/\" {}".format(CALIB_FILE),
                      "   The decode at the end of the graph and the head convolutions have no scale in it: TensorRT "
                      "keeps them in float.", ""]
    lines += ["{}. Run: deepstream-app -c deepstream_app_config.txt".format(step + 1), ""]
    return "\n".join(lines)


def package_deepstream(folder, model, streams=1, uri=SAMPLE_URI, precision=None, custom_lib=CUSTOM_LIB,
                       conf=0.25, iou=0.45, max_det=300, mux_size=(1080, 1920), force=False, calib=None,
                       calib_cache=None, target=None):
    # type: (...) -> DeepStreamPackage
    """Write the DeepStream folder for ``model`` (an ONNX exported with --decode-in-graph, or a TensorRT engine
    built from one); InputError/MetadataError before anything is written. ``force`` replaces an existing folder
    whole, atomically. INT8 from an ONNX needs ``calib`` (a ``CalibrationConfig`` or a source spec) and ``target``
    (a TensorRT target: the cache's version stamp), or ``calib_cache`` (a TensorRT cache copied as it is)."""
    from edgecsp.validate import fraction, iou_threshold

    path = require_file(model, "model", "pass an ONNX exported with `edgecsp export --decode-in-graph` or its engine")
    streams = positive_int(streams, "--streams")
    fraction(conf, "--conf")
    iou_threshold(iou, "--iou")
    positive_int(max_det, "--max-det")
    backend = backend_for_path(path)
    if backend not in ("onnxruntime", "tensorrt"):
        raise InputError("DeepStream runs an ONNX or a TensorRT engine, not {}: pass the .onnx exported with "
                         "--decode-in-graph".format(os.path.basename(path)))
    meta = read_artefact_meta(path)
    problem = meta.spec.deepstream_problem(meta)
    if not problem and len(set(float(s) for s in meta.std)) > 1:
        problem = ("its per-channel std {} has no nvinfer setting (net-scale-factor is one number): DeepStream "
                   "cannot feed it".format(list(meta.std)))
    if problem:
        raise MetadataError("{}: {}".format(os.path.basename(path), problem))
    built = meta.extra.get("precision")
    precision = precision or built or "fp16"
    if precision not in NETWORK_MODES:
        raise InputError("--precision must be one of fp32, fp16, int8, got {!r}".format(precision))
    if backend == "tensorrt" and built and precision != built:
        raise InputError("{} is a {} engine: drop --precision or pass {}".format(os.path.basename(path), built, built))
    if isinstance(calib, str):
        from edgecsp.calibration import CalibrationConfig

        calib = CalibrationConfig(source=calib)
    trt_target = check_int8_calibration(path, backend, precision, calib, calib_cache, target)
    if calib is not None:
        calib.checked()
    interface = artefact_interface(path)
    batch = interface.inputs[0].shape[0]  # None: dynamic
    limit = interface.max_batch if batch is None else batch
    if limit is not None and streams > limit:
        raise InputError("{} streams need a batch of {} but {} takes {}: {}".format(
            streams, streams, os.path.basename(path), limit,
            "export with --dynamic-batch" if backend == "onnxruntime" else "rebuild the engine with --max-batch {}"
            .format(streams)))
    folder = str(folder) if force else check_new_folder(str(folder), "pass a new folder, --force to replace it, "
                                                                     "or remove it")
    name = os.path.basename(path)
    cache_text = None
    if trt_target is not None:  # computed before the folder is staged: a bad calibration source writes nothing
        cache_text = deepstream_cache(path, meta, calib, trt_target.trt_version[0], batch or 1)
    elif calib_cache and precision == "int8" and backend != "tensorrt":
        from edgecsp.backends.tensorrt.cache_format import parse_cache

        with open(calib_cache) as handle:
            cache_text = handle.read()
        parse_cache(cache_text)  # InputError when it is not a TensorRT cache
    batch_size = streams if batch is None else batch
    prop, classes = infer_config(name, meta, precision, batch_size, custom_lib, conf, iou, max_det,
                                 engine_file=name if backend == "tensorrt" else None,
                                 calib_file=CALIB_FILE if cache_text else None)
    app = app_config(streams, uri, mux_size[1], mux_size[0])
    files = FILES + ((CALIB_FILE,) if cache_text else ()) + (name,)
    with atomic_folder(folder) as staging:
        with open(os.path.join(staging, "config_infer_primary.txt"), "w") as handle:
            handle.write(to_keyfile({"property": prop, "class-attrs-all": classes}))
        with open(os.path.join(staging, "labels.txt"), "w") as handle:
            handle.write("".join(n + "\n" for n in meta.names))
        with open(os.path.join(staging, "deepstream_app_config.txt"), "w") as handle:
            handle.write(to_keyfile(app))
        if cache_text:
            with open(os.path.join(staging, CALIB_FILE), "w") as handle:
                handle.write(cache_text)
        with open(os.path.join(staging, "README.txt"), "w") as handle:
            handle.write(readme_text(name, meta, precision, batch_size, streams, backend == "tensorrt",
                                     trt_target, bool(cache_text)))
        shutil.copyfile(path, os.path.join(staging, name))
    return DeepStreamPackage(folder, files, prop, app)
