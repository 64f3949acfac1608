"""Library entry point of ``edgecsp infer``: open the artefact's runner and run the detection pipeline."""
from typing import NamedTuple, Optional

from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.pipeline import DEFAULT_IN_FLIGHT, DetectOptions, run_pipeline


class InferConfig(NamedTuple):
    engine: str  # .onnx (ONNX Runtime) or .xml (OpenVINO IR)
    source: object  # video file, image, folder of images, camera index or URL; or a list of them (streams)
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    class_agnostic: bool = False
    save: Optional[str] = None  # annotated video (.mp4) or a folder for annotated images
    json: Optional[str] = None  # detections per frame as JSON lines
    max_frames: Optional[int] = None
    threads: Optional[int] = None
    progress: Optional[bool] = None  # None: when stderr is a terminal
    streams: Optional[int] = None  # run this many streams at once, cycling through the sources (default: one each)
    sync: bool = False  # the single-threaded loop instead of the pipeline
    in_flight: Optional[int] = None  # requests running at once (default DEFAULT_IN_FLIGHT)
    gst: bool = False  # open sources as Jetson GStreamer pipelines (csi://N, rtsp://, files, raw pipelines)
    gst_codec: str = "h264"  # codec of files / RTSP streams decoded by nvv4l2decoder


def check_options(config):
    """Raise InputError for thresholds outside their range (before any model is loaded)."""
    if not 0.0 <= config.conf <= 1.0:
        raise InputError("--conf {} must be between 0 and 1".format(config.conf))
    if not 0.0 < config.iou <= 1.0:
        raise InputError("--iou {} must be in (0, 1]".format(config.iou))
    if config.max_det < 1:
        raise InputError("--max-det {} must be at least 1".format(config.max_det))
    if config.max_frames is not None and config.max_frames < 1:
        raise InputError("--max-frames {} must be at least 1".format(config.max_frames))
    if config.in_flight is not None and config.in_flight < 1:
        raise InputError("--in-flight {} must be at least 1".format(config.in_flight))
    if config.sync and config.in_flight is not None:
        raise InputError("--sync runs one request at a time: drop --in-flight or --sync")
    sources = stream_sources(config)
    if config.gst:
        from edgecsp.runtime.gstreamer import gst_source_for

        for spec in sources:
            gst_source_for(spec, codec=config.gst_codec)  # a spec with no Jetson pipeline fails before loading


def stream_sources(config):
    """The source of every stream: the sources given, cycled to ``config.streams`` when that is larger."""
    sources = list(config.source) if isinstance(config.source, (list, tuple)) else [config.source]
    if not sources:
        raise InputError("no source given: pass a video file, an image, a folder, a camera index or a URL")
    count = len(sources) if config.streams is None else config.streams
    if count < len(sources):
        raise InputError("--streams {} is fewer than the {} sources given: drop --streams or pass fewer "
                         "sources".format(count, len(sources)))
    return [sources[i % len(sources)] for i in range(count)]


def infer(config, log=None):
    """Run ``config.engine`` over ``config.source``; returns the runtime's PipelineResult."""
    from edgecsp.backends import open_runner

    check_options(config)
    sources = stream_sources(config)
    if config.gst:
        return _with_gst_sources(config, sources, log)
    options = {"threads": config.threads} if config.threads else {}
    runner = open_runner(config.engine, **options)
    in_flight = None if config.sync else (config.in_flight or DEFAULT_IN_FLIGHT)
    if in_flight:
        runner.set_in_flight(in_flight)  # before entering: backends size their request pools when loading
    with runner:
        if runner.meta.task != "detect":
            raise UnsupportedError("{} is a {} model: `edgecsp infer` runs detectors".format(
                config.engine, runner.meta.task))
        return run_pipeline(runner, sources if len(sources) > 1 else sources[0],
                            DetectOptions(config.conf, config.iou, config.max_det, config.class_agnostic),
                            save=config.save, json_path=config.json, max_frames=config.max_frames,
                            progress=config.progress, log=log, sync=config.sync, in_flight=in_flight)


def _with_gst_sources(config, specs, log):
    """Open every spec as a GStreamer pipeline (closed afterwards) and run with those Source objects."""
    from contextlib import ExitStack

    from edgecsp.runtime.gstreamer import open_gst_source

    with ExitStack() as stack:
        opened = [stack.enter_context(open_gst_source(spec, codec=config.gst_codec)) for spec in specs]
        return infer(config._replace(source=opened, streams=None, gst=False), log)
