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

Sources are open :class:`~edgecsp.runtime.sources.Source` objects (``edgecsp.runtime.inputs.open_sources`` opens
specs of any registered kind); results go to a list of sinks (``edgecsp.runtime.sinks``: JSON lines, annotated
video, image folder, a callback), each writing every frame in order and committing its outputs atomically.
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

from edgecsp.errors import InputError, UnsupportedError
from edgecsp.runtime.draw import draw_result
from edgecsp.runtime.layouts.classify import Classification, top_classes
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxBuffer, preprocess
from edgecsp.runtime.progress import Progress
from edgecsp.runtime.runner import BaseRunner
from edgecsp.runtime.sinks import CallbackSink
from edgecsp.runtime.sources import Source
from edgecsp.runtime.timing import StageTimer, thread_cpu_seconds
from edgecsp.validate import optional, positive_int

DEFAULT_IN_FLIGHT = 3  # on 2 cores: one request per OpenVINO stream plus one queued, so the engine never waits
_POLL_S = 0.05  # how often a blocked thread looks whether another one failed
_END = object()  # end of a stream (reader queues) / of the results (writer queue)


DEFAULT_IOU = 0.45


class DetectOptions(NamedTuple):
    conf: float = 0.25
    iou: Optional[float] = None  # None: the model's family's (ModelMeta.nms), else DEFAULT_IOU
    max_det: int = 300
    class_agnostic: bool = False
    multi_label: Optional[bool] = None  # every (box, class) pair above conf (darknet, mmdet); False: each box's
    # best class (Ultralytics, YOLOX, YOLOv7); None: the model's family's rule (ModelMeta.nms), else True
    classes: Optional[tuple] = None  # class ids to keep (edgecsp.runtime.postprocess.class_ids_of); None: all
    top_k: int = 5  # a classifier's classes per frame


def resolved(options, meta):
    # type: (DetectOptions, ...) -> DetectOptions
    """``options`` with the NMS settings the user left unset taken from the model's family (``meta.nms``)."""
    iou = options.iou if options.iou is not None else meta.nms.get("iou") or DEFAULT_IOU
    multi = options.multi_label if options.multi_label is not None else meta.nms.get("multi_label", True)
    return options._replace(iou=iou, multi_label=True if multi is None else bool(multi))


class PipelineResult(NamedTuple):
    frames: int
    detections: int
    summary: dict  # StageTimer.summary() plus mode, in_flight, streams, batch, task, skipped (unreadable images)
    saved: Optional[str]
    json: Optional[str]
    text: str
    outputs: tuple = ()  # (what, path) of every output: 'annotated output' / 'detections', per stream


def detect(runner, frames_bgr, options=DetectOptions(), timer=None):
    """Detections (original-frame pixels) for a list of BGR frames with one runner call. Detectors only: a
    classifier's frames go through ``run_pipeline`` or ``edgecsp.runtime.layouts.classify.top_classes``."""
    timer = timer or StageTimer()
    meta = runner.meta
    if meta.task != "detect":  # evaluation and comparisons read boxes: a classifier has none
        raise UnsupportedError("postprocess handles detectors; this model's task is {!r}".format(meta.task))
    with timer.stage("preprocess"):
        batch, infos = preprocess(frames_bgr, meta)
    with timer.stage("infer"):
        outputs = runner.infer(batch)
    with timer.stage("postprocess"):
        dets = _postprocess(outputs, meta, infos, options)
    return dets


def _postprocess(outputs, meta, infos, options):
    if meta.task == "classify":
        return top_classes(outputs[0], meta, options.top_k, options.classes)
    options = resolved(options, meta)
    return postprocess(outputs, meta, infos, [info.orig_shape for info in infos], conf=options.conf,
                       iou=options.iou, max_det=options.max_det, class_agnostic=options.class_agnostic,
                       multi_label=options.multi_label, classes=options.classes)


def frames_in_memory(streams=1, in_flight=DEFAULT_IN_FLIGHT, batch=1, queue_size=None):
    """The most frames a pipelined run holds at once (read but not yet written): it does not grow with length."""
    queue_size = queue_size or default_queue_size(in_flight, batch)
    per_stream = queue_size + 1  # its queue, and the frame its reader holds while the queue is full
    return streams * per_stream + batch * (in_flight + 1) + queue_size + 1


def default_queue_size(in_flight, batch=1):
    # enough frames ready to refill every request at once, and no more
    return max(2, in_flight * batch)


class _Stages(object):
    """A StageTimer several threads add to (one lock; a stage costs microseconds against milliseconds).

    CPU time per stage is that of the thread that ran it, in both schedules: work a library hands to its own
    threads (FFmpeg's decoder, the engine's pool, which also spins between requests) shows only in the process
    total (``process_cpu_ms_per_frame``), never charged to a stage it merely overlapped.
    """

    def __init__(self):
        self.timer = StageTimer()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name):
        t, cpu = time.perf_counter(), thread_cpu_seconds()
        yield
        self.add(name, (time.perf_counter() - t) * 1000.0, (thread_cpu_seconds() - cpu) * 1000.0)

    def add(self, name, ms, cpu_ms=0.0):
        with self._lock:
            self.timer.add(name, ms, cpu_ms)

    def count_frames(self, n=1):
        with self._lock:
            self.timer.count_frames(n)


class _Stream(object):
    """One source; ``read()`` gives the next (frame, preprocessed 1-frame batch, info) or None."""

    def __init__(self, index, source, max_frames):
        self.index, self.source = index, source
        self.max_frames = max_frames
        self.frames_in = 0
        self.ended = False
        self.queue = None
        self._frames = iter(source)
        self._canvas = LetterboxBuffer()  # this stream's letterbox, reused frame after frame

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
            batch, infos = preprocess([frame.image_bgr], meta, buffers=[self._canvas])
        self.frames_in += 1
        return frame, batch, infos[0]


class _Run(object):
    """The state of one run_pipeline call: streams, timings, outputs, and the first error of any thread."""

    def __init__(self, runner, streams, options, names, progress, sinks, queue_size):
        self.runner, self.streams, self.options, self.names = runner, streams, options, names
        self.meta = runner.meta
        self.stages = _Stages()
        # sinks that take the frame as read run before the drawing (in place) and those that want it drawn
        self.plain = [s for s in sinks if not s.draws]
        self.drawing = [s for s in sinks if s.draws]
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
            if self.meta.spec.batch_first(self.meta) and outputs[0].shape[0] != len(infos):
                outputs = [o[:len(infos)] for o in outputs]  # padding of a static batch
            return _postprocess(outputs, self.meta, infos, self.options)

    def emit(self, stream, frame, det):
        """Every sink's write of one frame, in frame order per stream; drawn only when a sink wants it."""
        if not isinstance(det, Classification):
            self.detections += len(det.scores)
        for sink in self.plain:
            self._write(sink, stream, frame, det, None)
        if self.drawing:
            with self.stages.stage("draw"):
                drawn = draw_result(frame.image_bgr, det, self.names)  # in place: the frame is done
            for sink in self.drawing:
                self._write(sink, stream, frame, det, drawn)
        self.stages.count_frames()
        self.bar.update()

    def _write(self, sink, stream, frame, det, drawn):
        if sink.stage is None:
            sink.write(stream.index, frame, det, drawn)
        else:
            with self.stages.stage(sink.stage):
                sink.write(stream.index, frame, det, drawn)

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
                # "wait": this thread's time with the runner, for the oldest result when every slot is busy and
                # to hand it the next batch; the network also runs while this thread works, so it is not the
                # network's own time (a runner without an asynchronous path runs it here, inside "wait")
                with self.stages.stage("wait"):
                    if len(pending) >= in_flight:
                        done = pending.popleft()
                        done = (done[0], done[1].result())
                    # refill the runner before post-processing, so it never idles while this thread works
                    pending.append((group, self.runner.submit(self.batch_of(group, batch_size))))
                if done is not None:
                    self._deliver(done[0], done[1], results)
            while pending and not self.stop.is_set():
                group, handle = pending.popleft()
                with self.stages.stage("wait"):
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


def _wait_quietly(handle):
    try:
        handle.result()
    except Exception:  # the run already failed; its first error is the one to report
        pass


def batch_size_for(runner, streams):
    """Frames per request: the artefact's static batch, else one per stream (dynamic batch) up to the runner's
    ``max_batch`` (a TensorRT profile, a server's max_batch_size), else 1."""
    shape = runner.input_shape or (1,)
    if shape[0] is not None:
        return int(shape[0])
    limit = runner.max_batch
    return max(1, min(streams, int(limit)) if limit else streams)


def run_pipeline(runner, sources, options=DetectOptions(), sinks=(), max_frames=None, progress=None, log=None,
                 sync=False, in_flight=None, queue_size=None, callback=None):
    """Run ``runner`` over every frame of ``sources``, handing the results to ``sinks``; a PipelineResult.

    ``sources``: an open :class:`~edgecsp.runtime.sources.Source` or a list of them, one per stream
    (``max_frames`` is per stream); ``sinks``: :mod:`edgecsp.runtime.sinks` objects (per-stream outputs are
    ``stem-<i>.ext``). ``sync``: the single-threaded loop; otherwise pipelined with ``in_flight`` requests
    (default: the runner's ``in_flight``, at least DEFAULT_IN_FLIGHT).
    ``callback(stream_index, frame, detections)``, a shorthand for a CallbackSink, is called for every frame in
    order, before drawing. An error or Ctrl-C in any stage (opening the sinks included) aborts every sink,
    so no partial output is left, and is raised.
    """
    sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
    if not sources:
        raise InputError("no source given: pass a video file, an image, a folder, a camera index or a URL")
    strays = [s for s in sources if not isinstance(s, Source)]
    if strays:
        raise TypeError("run_pipeline takes open Source objects, got {!r}: open specs with "
                        "edgecsp.runtime.inputs.open_sources(specs)".format(strays[0]))
    if not isinstance(runner, BaseRunner):
        raise TypeError("run_pipeline takes a runner (edgecsp.runtime.runner.BaseRunner), got {}: open artefacts "
                        "with edgecsp.backends.open_runner(path)".format(type(runner).__name__))
    if runner.meta.task not in ("detect", "classify"):  # before any frame
        raise UnsupportedError("{} is a {} model: edgecsp infer runs detectors and classifiers".format(
            os.path.basename(str(runner.path)), runner.meta.task))
    positive_int(options.top_k, "--top-k")
    sinks = ([CallbackSink(callback)] if callback is not None else []) + list(sinks)
    if in_flight is None:
        in_flight = max(runner.in_flight, DEFAULT_IN_FLIGHT)
    in_flight = positive_int(in_flight, "in_flight")
    max_frames = optional(positive_int, max_frames, "--max-frames")
    batch = batch_size_for(runner, len(sources))
    queue_size = int(queue_size or default_queue_size(in_flight, batch))
    streams = [_Stream(i, source, max_frames) for i, source in enumerate(sources)]
    for stream in streams:
        stream.queue = queue.Queue(queue_size)
    opened, outputs = [], []
    try:
        for sink in sinks:
            opened.append(sink)  # before open: a sink that fails half-way through opening is aborted too
            sink.open(sources, runner.meta.names)
        run = _Run(runner, streams, options, runner.meta.names, progress, sinks, queue_size)
        run.stages.timer.start()
        with run.bar:
            if sync:
                run.run_sync(batch)
            else:
                run.run_pipelined(batch, in_flight)
        if run.errors:
            raise run.errors[0]
        for stream in streams:
            if stream.frames_in == 0 and getattr(stream.source, "skipped", 0):
                raise InputError("none of the {} images of {} could be decoded: check the folder".format(
                    stream.source.skipped, stream.source.name))
            if stream.frames_in == 0:
                raise InputError("source {} yielded no frames: check that the file is a readable video".format(
                    stream.source.name))
        for sink in sinks:
            outputs += sink.close()
    except BaseException:
        for sink in opened:
            sink.abort()
        raise
    summary = run.stages.timer.summary()
    summary.update(mode="sync" if sync else "pipelined", in_flight=1 if sync else in_flight,
                   streams=len(streams), batch=batch, cpu_clock="thread", task=runner.meta.task,
                   skipped=sum(int(getattr(s, "skipped", 0)) for s in sources))  # unreadable images passed over
    text = run.stages.timer.text()
    if not sync:
        text += (" Pipelined, {} request(s) in flight{}: 'wait' is the time spent handing frames to the network and "
                 "waiting for its results; the network also runs while the other stages work, so its own time per "
                 "frame can be longer (`edgecsp bench --engine` measures it alone); stages overlap, so their times "
                 "add up to more than the time per frame.".format(
                     in_flight, ", {} streams".format(len(streams)) if len(streams) > 1 else ""))
    if log:
        log(text)
    saved = next((s.path for s in sinks if s.draws), None)
    json_path = next((s.path for s in sinks if s.role == "detections"), None)
    return PipelineResult(run.stages.timer.frames, run.detections, summary, saved, json_path, text, tuple(outputs))
