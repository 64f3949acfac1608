"""The detection loop: sources → read → preprocess → runner → postprocess → draw / write.

Two schedules, same detections in the same order:

* **pipelined** (default): one thread per source reads and preprocesses into a bounded queue, the calling
  thread keeps ``in_flight`` requests running on the runner (``runner.submit``) and post-processes each as it
  completes, in submission order, and one thread draws and writes. Every queue is bounded, so a slow stage
  holds the others back instead of filling memory: at most :func:`frames_in_memory` frames are alive at once,
  whatever the length of the video.
* **synchronous** (``sync=True``): everything in the calling thread, one frame after the other: the
  reference, and what per-stage timings mean literally.

Several sources are several *streams*: frames are taken round-robin, one from each stream per batch where the
artefact takes a batch of that size (dynamic batch, or a static batch filled by padding), else one request per
frame. Each stream has its own outputs.

It takes an already-active runner (anything with ``meta`` and ``infer(batch)``; ``submit``/``in_flight`` when it
has them), so it works with every backend without importing any of them. Python 3.6 compatible; numpy and
OpenCV only.
"""
import contextlib
import os
import queue
import threading
import time
from collections import deque
from typing import NamedTuple, Optional

import numpy as np

from edgecsp.errors import InputError
from edgecsp.runtime.draw import draw_detections
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import preprocess
from edgecsp.runtime.progress import Progress
from edgecsp.runtime.sources import Source, open_source
from edgecsp.runtime.timing import StageTimer
from edgecsp.runtime.writers import JsonlWriter, VideoWriter

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")
DEFAULT_IN_FLIGHT = 3  # on 2 cores: one request per OpenVINO stream plus one queued, so the engine never waits
_POLL_S = 0.05  # how often a blocked thread looks whether another one failed
_END = object()  # end of a stream (reader queues) / of the results (writer queue)


class DetectOptions(NamedTuple):
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    class_agnostic: bool = False


class PipelineResult(NamedTuple):
    frames: int
    detections: int
    summary: dict  # StageTimer.summary() plus mode, in_flight, streams, batch
    saved: Optional[str]
    json: Optional[str]
    text: str
    outputs: tuple = ()  # (what, path) of every output: 'annotated output' / 'detections', per stream


def detect(runner, frames_bgr, options=DetectOptions(), timer=None):
    """Detections (original-frame pixels) for a list of BGR frames with one runner call."""
    timer = timer or StageTimer()
    meta = runner.meta
    with timer.stage("preprocess"):
        batch, infos = preprocess(frames_bgr, meta)
    with timer.stage("infer"):
        outputs = runner.infer(batch)
    with timer.stage("postprocess"):
        dets = _postprocess(outputs, meta, infos, options)
    return dets


def _postprocess(outputs, meta, infos, options):
    return postprocess(outputs, meta, infos, [info.orig_shape for info in infos], conf=options.conf,
                       iou=options.iou, max_det=options.max_det, class_agnostic=options.class_agnostic)


def frames_in_memory(streams=1, in_flight=DEFAULT_IN_FLIGHT, batch=1, queue_size=None):
    """The most frames a pipelined run holds at once (read but not yet written): it does not grow with length."""
    queue_size = queue_size or default_queue_size(in_flight, batch)
    per_stream = queue_size + 1  # its queue, and the frame its reader holds while the queue is full
    return streams * per_stream + batch * (in_flight + 1) + queue_size + 1


def default_queue_size(in_flight, batch=1):
    # enough frames ready to refill every request at once, and no more
    return max(2, in_flight * batch)


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


def stream_path(path, index, streams):
    """The output path of stream ``index``: ``path`` itself for one stream, ``stem-<index>.ext`` for several."""
    if not path or streams == 1:
        return path
    stem, ext = os.path.splitext(path)
    return "{}-{}{}".format(stem, index, ext)


class _Stages(object):
    """A StageTimer several threads add to (one lock; a stage costs microseconds against milliseconds)."""

    def __init__(self):
        self.timer = StageTimer()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name):
        t = time.perf_counter()
        yield
        self.add(name, (time.perf_counter() - t) * 1000.0)

    def add(self, name, ms):
        with self._lock:
            self.timer.add(name, ms)

    def count_frames(self, n=1):
        with self._lock:
            self.timer.count_frames(n)


class _Stream(object):
    """One source and its outputs; ``read()`` gives the next (frame, preprocessed 1-frame batch, info) or None."""

    def __init__(self, index, spec, source, save, json_path, streams, max_frames):
        self.index, self.spec, self.source = index, spec, source
        self.max_frames = max_frames
        self.frames_in = 0
        self.ended = False
        self.queue = None
        self.save = stream_path(save, index, streams)
        self.json = stream_path(json_path, index, streams)
        save_kind = _check_save_path(save, source) if save else None
        self.video = VideoWriter(self.save, fps=source.fps) if save_kind == "video" else None
        self.folder = _ImageFolderWriter(self.save) if save_kind == "folder" else None
        self.jsonl = JsonlWriter(self.json) if self.json else None
        self._frames = iter(source)

    @property
    def total(self):
        total = self.source.length
        if self.max_frames:
            total = min(total, self.max_frames) if total else self.max_frames
        return total

    def read(self, stages, meta):
        if self.max_frames and self.frames_in >= self.max_frames:
            return None
        with stages.stage("read"):
            frame = next(self._frames, None)
        if frame is None:
            return None
        with stages.stage("preprocess"):
            batch, infos = preprocess([frame.image_bgr], meta)
        self.frames_in += 1
        return frame, batch, infos[0]

    def writers(self):
        return [w for w in (self.video, self.jsonl) if w is not None]


class _Run(object):
    """The state of one run_pipeline call: streams, timings, outputs, and the first error of any thread."""

    def __init__(self, runner, streams, options, names, progress, callback, queue_size):
        self.runner, self.streams, self.options, self.names = runner, streams, options, names
        self.meta = runner.meta
        self.stages = _Stages()
        self.callback = callback
        self.queue_size = queue_size
        self.detections = 0
        self.bar = Progress(total=self._total(), desc="infer", enabled=progress)
        self.stop = threading.Event()
        self.errors = []
        self._rotation = 0

    def _total(self):
        totals = [s.total for s in self.streams]
        return sum(totals) if all(totals) else None

    def fail(self, exc):
        if not self.errors:
            self.errors.append(exc)
        self.stop.set()

    # -- queues that give up when another thread failed -------------------------------------------------------
    def put(self, q, item):
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def get(self, q):
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                pass
        return _END

    # -- the stages -----------------------------------------------------------------------------------------
    def next_group(self, size, take):
        """Up to ``size`` read items, round-robin over the streams that have frames left; [] at the end."""
        group = []
        while len(group) < size and not self.stop.is_set():
            alive = [s for s in self.streams if not s.ended]
            if not alive:
                break
            stream = alive[self._rotation % len(alive)]
            item = take(stream)
            if item is None:
                stream.ended = True
                continue
            self._rotation += 1
            group.append((stream,) + tuple(item))
        return group

    def batch_of(self, group, size):
        """The group's preprocessed frames as one batch (padded with its last frame up to a static ``size``)."""
        arrays = [g[2] for g in group]
        if len(arrays) == 1 and size <= 1:
            return arrays[0]
        arrays += [arrays[-1]] * (size - len(arrays))
        return np.concatenate(arrays, axis=0)

    def detections_of(self, group, outputs):
        infos = [g[3] for g in group]
        with self.stages.stage("postprocess"):
            if outputs[0].shape[0] != len(infos):  # padding of a static batch
                outputs = [o[:len(infos)] for o in outputs]
            return _postprocess(outputs, self.meta, infos, self.options)

    def emit(self, stream, frame, det):
        """Callback, drawing and writing of one frame, in frame order per stream."""
        self.detections += len(det.scores)
        if self.callback is not None:
            self.callback(stream.index, frame, det)
        if stream.video is not None or stream.folder is not None:
            with self.stages.stage("draw"):
                drawn = draw_detections(frame.image_bgr, det, self.names)  # in place: the frame is done
            with self.stages.stage("write"):
                if stream.video is not None:
                    stream.video.write(drawn)
                else:
                    stream.folder.write(drawn, frame.name)
        if stream.jsonl is not None:
            with self.stages.stage("write"):
                stream.jsonl.write(frame.index, frame.name, det, self.names)
        self.stages.count_frames()
        self.bar.update()

    # -- schedules ------------------------------------------------------------------------------------------
    def run_sync(self, batch_size):
        meta = self.meta
        while True:
            group = self.next_group(batch_size, lambda s: s.read(self.stages, meta))
            if not group:
                return
            with self.stages.stage("infer"):
                outputs = self.runner.infer(self.batch_of(group, batch_size))
            for (stream, frame, _, _), det in zip(group, self.detections_of(group, outputs)):
                self.emit(stream, frame, det)

    def run_pipelined(self, batch_size, in_flight):
        threads = [self._thread(self._read_loop, s, "edgecsp-read-{}".format(s.index)) for s in self.streams]
        results = queue.Queue(self.queue_size)
        threads.append(self._thread(self._write_loop, results, "edgecsp-write"))
        pending = deque()  # (group, handle) in submission order: results leave in frame order
        try:
            while not self.stop.is_set():
                group = self.next_group(batch_size, self._take)
                if not group:
                    break
                done = None
                if len(pending) >= in_flight:
                    done = pending.popleft()
                    with self.stages.stage("infer"):  # the time this thread waits for the runner
                        done = (done[0], done[1].result())
                # refill the runner before post-processing, so it never idles while this thread works
                with self.stages.stage("infer"):
                    pending.append((group, _submit(self.runner, self.batch_of(group, batch_size))))
                if done is not None:
                    self._deliver(done[0], done[1], results)
            while pending and not self.stop.is_set():
                group, handle = pending.popleft()
                with self.stages.stage("infer"):
                    outputs = handle.result()
                self._deliver(group, outputs, results)
            self.put(results, _END)
        except BaseException as exc:
            self.fail(exc)
        finally:
            for _, handle in pending:  # let the runner finish what it started before it is closed
                _wait_quietly(handle)
            for thread in threads:
                thread.join()

    def _take(self, stream):
        item = self.get(stream.queue)
        return None if item is _END else item

    def _deliver(self, group, outputs, results):
        for (stream, frame, _, _), det in zip(group, self.detections_of(group, outputs)):
            if not self.put(results, (stream, frame, det)):
                return

    def _thread(self, target, arg, name):
        def body():
            try:
                target(arg)
            except BaseException as exc:
                self.fail(exc)

        thread = threading.Thread(target=body, name=name)
        thread.daemon = True  # never keeps the interpreter alive after Ctrl-C
        thread.start()
        return thread

    def _read_loop(self, stream):
        while not self.stop.is_set():
            item = stream.read(self.stages, self.meta)
            if item is None:
                self.put(stream.queue, _END)
                return
            if not self.put(stream.queue, item):
                return

    def _write_loop(self, results):
        while True:
            item = self.get(results)
            if item is _END:
                return
            self.emit(*item)


class _DoneHandle(object):
    """The handle of a runner without ``submit``: the work is done when it is created."""

    def __init__(self, outputs):
        self._outputs = outputs

    def result(self, timeout=None):
        return self._outputs


def _submit(runner, batch):
    if hasattr(runner, "submit"):
        return runner.submit(batch)
    return _DoneHandle(runner.infer(batch))


def _wait_quietly(handle):
    try:
        handle.result()
    except Exception:  # the run already failed; its first error is the one to report
        pass


def batch_size_for(runner, streams):
    """Frames per request: the artefact's static batch, else one per stream (dynamic batch), else 1."""
    shape = getattr(runner, "input_shape", None) or (1,)
    if shape[0] is not None:
        return int(shape[0])
    return max(1, streams)


def run_pipeline(runner, source_spec, options=DetectOptions(), save=None, json_path=None, max_frames=None,
                 progress=None, log=None, sync=False, in_flight=None, queue_size=None, callback=None):
    """Run ``runner`` over every frame of ``source_spec``; optionally write an annotated video and JSON lines.

    ``source_spec``: what ``open_source`` takes, an open :class:`~edgecsp.runtime.sources.Source`, or a list of
    either for several streams (outputs then go to ``stem-<i>.ext`` per stream; ``max_frames`` is per stream).
    ``sync``: the single-threaded loop; otherwise pipelined with ``in_flight`` requests (default: the runner's
    ``in_flight``, at least 2 when it has ``submit``). ``callback(stream_index, frame, detections)`` is called for
    every frame in order, before drawing. Outputs are written atomically: an error or Ctrl-C in any stage leaves
    neither a partial video nor a partial JSON file, and the error is raised here.
    """
    specs = list(source_spec) if isinstance(source_spec, (list, tuple)) else [source_spec]
    if not specs:
        raise InputError("no source given: pass a video file, an image, a folder, a camera index or a URL")
    if in_flight is None:
        in_flight = max(getattr(runner, "in_flight", 1), DEFAULT_IN_FLIGHT if hasattr(runner, "submit") else 1)
    in_flight = int(in_flight)
    if in_flight < 1:
        raise InputError("in_flight must be at least 1, got {}".format(in_flight))
    with contextlib.ExitStack() as stack:
        sources = [s if isinstance(s, Source) else stack.enter_context(open_source(s)) for s in specs]
        batch = batch_size_for(runner, len(sources))
        queue_size = int(queue_size or default_queue_size(in_flight, batch))
        streams = []
        try:
            for i, (spec, source) in enumerate(zip(specs, sources)):
                streams.append(_Stream(i, spec, source, save, json_path, len(specs), max_frames))
            for stream in streams:
                stream.queue = queue.Queue(queue_size)
            run = _Run(runner, streams, options, runner.meta.names, progress, callback, queue_size)
            run.stages.timer.start()
            with run.bar:
                if sync:
                    run.run_sync(batch)
                else:
                    run.run_pipelined(batch, in_flight)
            if run.errors:
                raise run.errors[0]
            for stream in streams:
                if stream.frames_in == 0:
                    raise InputError("source {} yielded no frames: check that the file is a readable video".format(
                        stream.spec if not isinstance(stream.spec, Source) else stream.source.name))
            for stream in streams:
                for writer in stream.writers():
                    writer.close()
        except BaseException:
            for stream in streams:
                for writer in stream.writers():
                    writer.abort()
            raise
    summary = run.stages.timer.summary()
    summary.update(mode="sync" if sync else "pipelined", in_flight=1 if sync else in_flight,
                   streams=len(streams), batch=batch)
    text = run.stages.timer.text()
    if not sync:
        text += (" Pipelined, {} request(s) in flight{}: stages overlap, so their times add up to more than the time "
                 "per frame.".format(in_flight, ", {} streams".format(len(streams)) if len(streams) > 1 else ""))
    if log:
        log(text)
    outputs = tuple((what, p) for s in streams for what, p in (("annotated output", s.save), ("detections", s.json))
                    if p)
    first = streams[0]
    return PipelineResult(run.stages.timer.frames, run.detections, summary,
                          save if len(streams) > 1 else first.save,
                          json_path if len(streams) > 1 else first.json, text, outputs)
