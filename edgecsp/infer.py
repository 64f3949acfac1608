"""Library entry point of ``edgecsp infer``: open the artefact's runner and run the detection pipeline."""
from typing import NamedTuple, Optional

from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.pipeline import DetectOptions, run_pipeline


class InferConfig(NamedTuple):
    engine: str  # .onnx (ONNX Runtime) or .xml (OpenVINO IR)
    source: str  # video file, image, folder of images, camera index or URL
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    class_agnostic: bool = False
    save: Optional[str] = None  # annotated video (.mp4) or a folder for annotated images
    json: Optional[str] = None  # detections per frame as JSON lines
    max_frames: Optional[int] = None
    threads: Optional[int] = None
    progress: Optional[bool] = None  # None: when stderr is a terminal


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


def infer(config, log=None):
    """Run ``config.engine`` over ``config.source``; returns the runtime's PipelineResult."""
    from edgecsp.backends import open_runner

    check_options(config)
    options = {"threads": config.threads} if config.threads else {}
    runner = open_runner(config.engine, **options)
    with runner:
        if runner.meta.task != "detect":
            raise UnsupportedError("{} is a {} model: `edgecsp infer` runs detectors".format(
                config.engine, runner.meta.task))
        return run_pipeline(runner, config.source,
                            DetectOptions(config.conf, config.iou, config.max_det, config.class_agnostic),
                            save=config.save, json_path=config.json, max_frames=config.max_frames,
                            progress=config.progress, log=log)
