"""The detection loop: frames from a source → preprocess → runner → postprocess → draw / write.

It takes an already-active runner (anything with ``meta`` and ``infer(batch) -> [outputs]``), so it works with
every backend without importing any of them. Python 3.6 compatible; numpy and OpenCV only.
"""
import os
from typing import NamedTuple, Optional

from edgecsp.errors import InputError
from edgecsp.runtime.draw import draw_detections
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import preprocess
from edgecsp.runtime.progress import Progress
from edgecsp.runtime.sources import open_source
from edgecsp.runtime.timing import StageTimer
from edgecsp.runtime.writers import JsonlWriter, VideoWriter

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")


class DetectOptions(NamedTuple):
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    class_agnostic: bool = False


class PipelineResult(NamedTuple):
    frames: int
    detections: int
    summary: dict  # StageTimer.summary(): frames, seconds, fps, ms per stage
    saved: Optional[str]
    json: Optional[str]
    text: str


def detect(runner, frames_bgr, options=DetectOptions(), timer=None):
    """Detections (original-frame pixels) for a list of BGR frames with one runner call."""
    timer = timer or StageTimer()
    meta = runner.meta
    with timer.stage("preprocess"):
        batch, infos = preprocess(frames_bgr, meta)
    with timer.stage("infer"):
        outputs = runner.infer(batch)
    with timer.stage("postprocess"):
        dets = postprocess(outputs, meta, infos, [f.shape[:2] for f in frames_bgr], conf=options.conf,
                           iou=options.iou, max_det=options.max_det, class_agnostic=options.class_agnostic)
    return dets


class _ImageFolderWriter(object):
    """Annotated images into a folder, one file per input frame (for image and folder sources)."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    def write(self, image, name):
        from edgecsp._lazy import require

        cv2 = require("cv2", "writing images")
        base = os.path.splitext(os.path.basename(name))[0] or "frame"
        path = os.path.join(self.folder, base + ".jpg")
        tmp = path + ".tmp.jpg"
        if not cv2.imwrite(tmp, image):
            raise InputError("cannot write {}: check the folder is writable".format(path))
        os.replace(tmp, path)


def _check_save_path(save, source):
    ext = os.path.splitext(save)[1].lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext:
        raise InputError("--save {}: use a video path ({}) or a folder for annotated images".format(
            save, ", ".join(VIDEO_EXTENSIONS)))
    if source.kind not in ("image", "folder"):
        raise InputError("--save {} is a folder but the source is a {}: give a video path such as out.mp4".format(
            save, source.kind))
    return "folder"


def run_pipeline(runner, source_spec, options=DetectOptions(), save=None, json_path=None, max_frames=None,
                 progress=None, log=None):
    """Run ``runner`` over every frame of ``source_spec``; optionally write an annotated video and JSON lines.

    Outputs are written atomically: an error or Ctrl-C leaves neither a partial video nor a partial JSON file.
    """
    names = runner.meta.names
    timer = StageTimer()
    detections = 0
    with open_source(source_spec) as source:
        save_kind = _check_save_path(save, source) if save else None
        total = source.length
        if max_frames:
            total = min(total, max_frames) if total else max_frames
        video = VideoWriter(save, fps=source.fps) if save_kind == "video" else None
        folder = _ImageFolderWriter(save) if save_kind == "folder" else None
        jsonl = JsonlWriter(json_path) if json_path else None
        try:
            with Progress(total=total, desc="infer", enabled=progress) as bar:
                frames = iter(source)
                timer.start()
                while not max_frames or timer.frames < max_frames:
                    with timer.stage("read"):
                        frame = next(frames, None)
                    if frame is None:
                        break
                    det = detect(runner, [frame.image_bgr], options, timer)[0]
                    detections += len(det.scores)
                    if video is not None or folder is not None or jsonl is not None:
                        with timer.stage("write"):
                            if video is not None or folder is not None:
                                drawn = draw_detections(frame.image_bgr.copy(), det, names)
                                if video is not None:
                                    video.write(drawn)
                                else:
                                    folder.write(drawn, frame.name)
                            if jsonl is not None:
                                jsonl.write(frame.index, frame.name, det, names)
                    timer.count_frames()
                    bar.update()
            if timer.frames == 0:
                raise InputError("source {} yielded no frames: check that the file is a readable video".format(
                    source_spec))
            for writer in (video, jsonl):
                if writer is not None:
                    writer.close()
        except BaseException:
            for writer in (video, jsonl):
                if writer is not None:
                    writer.abort()
            raise
    text = timer.text()
    if log:
        log(text)
    return PipelineResult(timer.frames, detections, timer.summary(), save, json_path, text)
