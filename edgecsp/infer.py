"""Library entry point of ``edgecsp infer``: open the artefact's runner and run the pipeline (detectors and
classifiers)."""
import os
from typing import NamedTuple, Optional

from edgecsp._files import READS, READS_SPEC, WRITES, check_paths
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.inputs import check_sources, open_sources
from edgecsp.runtime.pipeline import DEFAULT_IN_FLIGHT, DetectOptions, run_pipeline
from edgecsp.runtime.postprocess import class_ids_of
from edgecsp.runtime.sinks import WindowSink, sink_for, stream_path
from edgecsp.validate import fraction, iou_threshold, optional, positive_int


class InferConfig(NamedTuple):
    engine: Optional[str]  # .onnx (ONNX Runtime), .xml (OpenVINO IR), TensorRT engine; or None with server
    source: object  # video file, image, folder of images, camera index or URL; or a list of them (streams)
    conf: float = 0.25
    iou: Optional[float] = None  # None: the model family's NMS IoU (ModelMeta.nms), else 0.45
    max_det: int = 300
    class_agnostic: bool = False
    multi_label: Optional[bool] = None  # None: the model family's rule (ModelMeta.nms), else multi-label
    save: Optional[str] = None  # annotated video (.mp4), image (.png/.jpg: an image source) or a folder for images
    json: Optional[str] = None  # detections per frame as JSON lines
    max_frames: Optional[int] = None
    threads: Optional[int] = None
    progress: Optional[bool] = None  # None: when stderr is a terminal
    streams: Optional[int] = None  # run this many streams at once, cycling through the sources (default: one each)
    sync: bool = False  # the single-threaded loop instead of the pipeline
    in_flight: Optional[int] = None  # requests running at once (default DEFAULT_IN_FLIGHT)
    gst: bool = False  # open sources as Jetson GStreamer pipelines (csi://N, rtsp://, files, raw pipelines)
    gst_codec: str = "h264"  # codec of files / RTSP streams decoded by nvv4l2decoder
    server: Optional[str] = None  # grpc://HOST:PORT of a Triton server running the network (instead of engine)
    model: Optional[str] = None  # the model's name on the server
    classes: Optional[tuple] = None  # class names or ids to keep (None: all)
    top_k: int = 5  # a classifier's classes per frame
    save_txt: Optional[str] = None  # a folder for YOLO label files (edgecsp.runtime.sinks.labels)
    show: bool = False  # show the annotated frames in a window (needs a display)


# what infer reads and writes: no output may replace or sit inside an input (edgecsp._files.check_paths)
PATHS = (("engine", "--engine", READS), ("source", "source", READS_SPEC), ("save", "--save", WRITES),
         ("json", "--save-json", WRITES), ("save_txt", "--save-txt", WRITES))
OUTPUTS = (("save", "--save"), ("json", "--save-json"), ("save_txt", "--save-txt"))  # one sink each (sink_for)


def check_options(config):
    """Raise InputError for bad thresholds, counts, sources or output paths (before any model is loaded)."""
    fraction(config.conf, "--conf")
    optional(iou_threshold, config.iou, "--iou")
    positive_int(config.max_det, "--max-det")
    positive_int(config.top_k, "--top-k")
    optional(positive_int, config.max_frames, "--max-frames")
    optional(positive_int, config.in_flight, "--in-flight")
    if config.show:
        from edgecsp.runtime.sinks import display_problem

        problem = display_problem()
        if problem:
            raise InputError("--show: " + problem)
    if config.sync and config.in_flight is not None:
        raise InputError("--sync runs one request at a time: drop --in-flight or --sync")
    if (config.engine is None) == (config.server is None):
        raise InputError("pass either --engine ARTEFACT or --server grpc://HOST:PORT --model NAME")
    if config.engine is not None and os.path.isdir(str(config.engine)):
        from edgecsp.backends.tensorrt.manifest import bundle_given_as_engine

        problem = bundle_given_as_engine(config.engine)  # a device bundle: its engine is built on the device first
        if problem:
            raise InputError("--engine " + problem)
    if config.server is None and config.model is not None:
        raise InputError("--model names a model on a server: pass --server grpc://HOST:PORT too")
    if config.server is not None:
        from edgecsp.serving.client import server_spec

        server_spec(config.server, config.model)  # a bad URL or no --model fails before any source opens
    streams = len(stream_sources(config))  # one output per stream: d.jsonl -> d-0.jsonl, d-1.jsonl...
    check_paths(config, PATHS, **dict((field, [stream_path(getattr(config, field), i, streams)
                                               for i in range(streams)])
                                      for field, _ in OUTPUTS if getattr(config, field)))
    kind, source_options = _source_kind(config)
    check_sources(stream_sources(config), kind, **source_options)
    return make_sinks(config)


def _source_kind(config):
    """(kind, options) of ``edgecsp.runtime.inputs`` for the config's sources: a folder's unreadable images are
    skipped with a warning (counted in the summary's ``skipped``), not the end of the run."""
    return ("gst", {"codec": config.gst_codec}) if config.gst else ("opencv", {"skip_unreadable": True})


def make_sinks(config):
    """The sinks ``config.save``, ``config.json``, ``config.save_txt`` and ``config.show`` ask for
    (``edgecsp.runtime.sinks.sink_for``)."""
    sinks = [sink_for(option, getattr(config, field)) for field, option in OUTPUTS if getattr(config, field)]
    return sinks + ([WindowSink()] if config.show else [])


def stream_sources(config):
    """The source of every stream: the sources given, cycled to ``config.streams`` when that is larger."""
    sources = list(config.source) if isinstance(config.source, (list, tuple)) else [config.source]
    if not sources:
        raise InputError("no source given: pass a video file, an image, a folder, a camera index or a URL")
    count = len(sources) if config.streams is None else positive_int(config.streams, "--streams")
    if count < len(sources):
        raise InputError("--streams {} is fewer than the {} sources given: drop --streams or pass fewer "
                         "sources".format(count, len(sources)))
    return [sources[i % len(sources)] for i in range(count)]


def infer(config, log=None):
    """Run ``config.engine`` over ``config.source``; returns the runtime's PipelineResult."""
    from edgecsp._lazy import check_numpy

    check_numpy()  # this runs on the device: a JetPack numpy older than the floor fails here, in one line
    sinks = check_options(config)
    kind, source_options = _source_kind(config)
    if config.server is None:  # a local artefact: its backend's runner (the serving package is not imported)
        from edgecsp.backends import open_runner

        runner = open_runner(config.engine, **({"threads": config.threads} if config.threads else {}))
    else:
        from edgecsp.serving.client import open_server_runner, server_spec

        runner = open_server_runner(server_spec(config.server, config.model), threads=config.threads)
    in_flight = None if config.sync else (config.in_flight or DEFAULT_IN_FLIGHT)
    if in_flight:
        runner.set_in_flight(in_flight)  # before entering: backends size their request pools when loading
    with runner, open_sources(stream_sources(config), kind, **source_options) as sources:
        if runner.meta.task not in ("detect", "classify"):
            raise UnsupportedError("{} is a {} model: `edgecsp infer` runs detectors and classifiers".format(
                config.engine or runner.path, runner.meta.task))
        classes = class_ids_of(config.classes, runner.meta.names)  # before any frame: names come with the model
        return run_pipeline(runner, sources, DetectOptions(config.conf, config.iou, config.max_det,
                                                           config.class_agnostic, config.multi_label, classes,
                                                           config.top_k),
                            sinks=sinks, max_frames=config.max_frames, progress=config.progress, log=log,
                            sync=config.sync, in_flight=in_flight)
