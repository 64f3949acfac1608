"""DeepStream configs for a model exported with ``--decode-in-graph`` (``edgecsp package --deepstream DIR MODEL``).

Writes ``DIR/config_infer_primary.txt`` (nvinfer: the model, its scaling and letterbox, the class count, NMS),
``DIR/labels.txt`` and ``DIR/deepstream_app_config.txt`` (deepstream-app with N streams tiled), and copies the
model into DIR. The bounding-box parser is DeepStream-Yolo's ``NvDsInferParseYolo``
(``libnvdsinfer_custom_impl_Yolo.so``, built on the device from marcoslucianops/DeepStream-Yolo), which reads
exactly the ``(N, M, 6)`` output the decode in the graph writes. Nothing here ran DeepStream: the files are
checked by parsing them back (tests), not by nvinfer.
"""
import math
import os
import shutil
from typing import NamedTuple, Optional

from edgecsp._files import atomic_folder, require_file
from edgecsp.backends import backend_for_path, read_artefact_meta
from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.meta import PAD_CENTER
from edgecsp.serving.repository import artefact_interface, check_new_folder
from edgecsp.validate import positive_int

CUSTOM_LIB = "nvdsinfer_custom_impl_Yolo/libnvdsinfer_custom_impl_Yolo.so"
ENGINE_CREATE = "NvDsInferYoloCudaEngineGet"
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode
SAMPLE_URI = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"
FILES = ("config_infer_primary.txt", "labels.txt", "deepstream_app_config.txt")


class DeepStreamPackage(NamedTuple):
    folder: str
    files: tuple  # names written inside folder
    infer_config: dict  # [property] of config_infer_primary.txt
    app_config: dict  # {section: {key: value}} of deepstream_app_config.txt


def infer_config(model_file, meta, precision, batch, custom_lib, conf, iou, max_det, engine_file=None):
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


def package_deepstream(folder, model, streams=1, uri=SAMPLE_URI, precision=None, custom_lib=CUSTOM_LIB,
                       conf=0.25, iou=0.45, max_det=300, mux_size=(1080, 1920)):
    # type: (str, str, int, str, Optional[str], str, float, float, int, tuple) -> DeepStreamPackage
    """Write the DeepStream folder for ``model`` (an ONNX exported with --decode-in-graph, or a TensorRT engine
    built from one); InputError/MetadataError before anything is written."""
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
    interface = artefact_interface(path)
    batch = interface.inputs[0].shape[0]  # None: dynamic
    limit = interface.max_batch if batch is None else batch
    if limit is not None and streams > limit:
        raise InputError("{} streams need a batch of {} but {} takes {}: {}".format(
            streams, streams, os.path.basename(path), limit,
            "export with --dynamic-batch" if backend == "onnxruntime" else "rebuild the engine with --max-batch {}"
            .format(streams)))
    folder = check_new_folder(str(folder), "pass a new folder or remove it")
    name = os.path.basename(path)
    prop, classes = infer_config(name, meta, precision, streams if batch is None else batch, custom_lib,
                                 conf, iou, max_det, engine_file=name if backend == "tensorrt" else None)
    app = app_config(streams, uri, mux_size[1], mux_size[0])
    with atomic_folder(folder) as staging:
        with open(os.path.join(staging, "config_infer_primary.txt"), "w") as handle:
            handle.write(to_keyfile({"property": prop, "class-attrs-all": classes}))
        with open(os.path.join(staging, "labels.txt"), "w") as handle:
            handle.write("".join(n + "\n" for n in meta.names))
        with open(os.path.join(staging, "deepstream_app_config.txt"), "w") as handle:
            handle.write(to_keyfile(app))
        shutil.copyfile(path, os.path.join(staging, name))
    return DeepStreamPackage(folder, FILES + (name,), prop, app)
