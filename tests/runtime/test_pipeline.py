"""The pipelined loop with fake runners and sources: order, bounded memory, errors, streams, batching."""
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgecsp.runtime.runner import BaseRunner, InferHandle
from edgecsp.errors import InputError
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.pipeline import DetectOptions, frames_in_memory, run_pipeline
from edgecsp.runtime.sinks import JsonlSink, Sink, VideoSink, sink_for, stream_path
from edgecsp.runtime.sources import Frame, Source

pytestmark = [pytest.mark.opencv]


META = yolo_meta(names=["a", "b"], input_size=(32, 32), heads=[HeadMeta(stride=8, anchors=[(8.0, 8.0)])])
OPTIONS = DetectOptions(conf=0.3, iou=0.5)


class CountingSource(Source):
    """``count`` random frames (a pure function of the index); ``produced`` counts frames handed out."""

    kind = "video"

    def __init__(self, count, fail_at=None, shape=(48, 64), name="synthetic"):
        Source.__init__(self, name, length=count, fps=25.0)
        self.count, self.fail_at, self.shape = count, fail_at, shape
        self.produced = 0

    def __iter__(self):
        for i in range(self.count):
            if i == self.fail_at:
                raise InputError("camera unplugged at frame {}".format(i))
            image = np.random.RandomState(i).randint(0, 255, self.shape + (3,)).astype(np.uint8)
            self.produced += 1
            yield Frame(i, image, "{}-{}".format(self.name, i))


class FakeRunner(BaseRunner):
    """Detections that depend on each input image; ``batch`` None means a dynamic batch. Entered on creation
    (the pipeline gets open runners)."""

    ARTEFACT_IS_FILE = False

    def __init__(self, batch=1, fail_at_call=None, workers=None):
        super(FakeRunner, self).__init__("fake")
        self.batch_dim = batch
        self.calls = 0
        self.fail_at_call = fail_at_call
        self.batches = []
        if workers:
            self.set_in_flight(workers)
        self.__enter__()

    def _activate(self):
        self._bind(META, "images", (self.batch_dim, 3, 32, 32), ["out"])

    def _deactivate(self):
        pass

    def _infer(self, batch):
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise RuntimeError("engine exploded")
        self.batches.append(batch.shape[0])
        x = batch[:, :, ::8, ::8]
        return [np.concatenate([x, x[:, :2], x[:, :2]], axis=1) * 8.0 - 3.0]


class AsyncFakeRunner(FakeRunner):
    """``submit`` on worker threads with random delays: requests finish out of order."""

    def __init__(self, workers=3, **kw):
        self.pool = ThreadPoolExecutor(workers)
        self.lock = threading.Lock()
        self.rng = random.Random(0)
        FakeRunner.__init__(self, workers=workers, **kw)

    def _in_flight(self):
        return self._requested_in_flight

    def _submit(self, batch):
        handle = InferHandle()
        with self.lock:
            delay = self.rng.uniform(0, 0.004)

        def work():
            time.sleep(delay)
            try:
                with self.lock:
                    outputs = self._infer(batch)
                handle.set_result(outputs)
            except Exception as exc:
                handle.set_error(exc)

        self.pool.submit(work)
        return handle


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _run(runner, source, tmp_path, tag, **kw):
    out = str(tmp_path / "{}.jsonl".format(tag))
    result = run_pipeline(runner, source, OPTIONS, sinks=[JsonlSink(out)], progress=False, **kw)
    return result, _lines(out)


def test_pipelined_equals_sync_in_order_with_out_of_order_completion(tmp_path):
    _, sync_lines = _run(FakeRunner(), CountingSource(80), tmp_path, "sync", sync=True)
    result, piped = _run(AsyncFakeRunner(), CountingSource(80), tmp_path, "piped", in_flight=3)
    assert [line["frame"] for line in piped] == list(range(80))
    assert piped == sync_lines
    assert sum(len(line["detections"]) for line in piped) == result.detections > 0
    assert result.summary["mode"] == "pipelined" and result.summary["in_flight"] == 3


def test_slow_consumer_bounds_how_far_the_reader_runs_ahead(tmp_path):
    source = CountingSource(120)
    ahead = []

    def slow(stream, frame, det):
        ahead.append(source.produced - frame.index)
        time.sleep(0.003)

    run_pipeline(AsyncFakeRunner(workers=2), source, OPTIONS, progress=False, in_flight=2, queue_size=2,
                 callback=slow)
    bound = frames_in_memory(streams=1, in_flight=2, batch=1, queue_size=2)
    assert len(ahead) == 120
    assert max(ahead) <= bound < 20  # would reach ~120 with unbounded queues: the reader is much faster
    assert max(ahead) >= 3  # the reader does run ahead: the stages really overlap


@pytest.mark.parametrize("sync", [True, False])
def test_source_error_propagates_and_leaves_no_partial_output(tmp_path, sync):
    out, video = str(tmp_path / "d.jsonl"), str(tmp_path / "a.mp4")
    with pytest.raises(InputError, match="camera unplugged at frame 30"):
        run_pipeline(AsyncFakeRunner(), CountingSource(60, fail_at=30), OPTIONS, sinks=[VideoSink(video), JsonlSink(out)],
                     progress=False, sync=sync)
    assert os.listdir(str(tmp_path)) == []  # neither the outputs nor their temporary files


def test_runner_error_propagates_and_leaves_no_partial_output(tmp_path):
    out = str(tmp_path / "d.jsonl")
    with pytest.raises(RuntimeError, match="engine exploded"):
        run_pipeline(AsyncFakeRunner(fail_at_call=20), CountingSource(60), OPTIONS, sinks=[JsonlSink(out)], progress=False)
    assert os.listdir(str(tmp_path)) == []


def test_writer_stage_error_propagates(tmp_path):
    threads_before = threading.active_count()

    def broken(stream, frame, det):
        if frame.index == 10:
            raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        run_pipeline(FakeRunner(), CountingSource(40), OPTIONS, sinks=[JsonlSink(str(tmp_path / "d.jsonl"))],
                     progress=False, callback=broken)
    assert os.listdir(str(tmp_path)) == []
    assert threading.active_count() <= threads_before  # every pipeline thread has ended


def test_streams_are_batched_with_a_dynamic_batch_and_keep_their_order(tmp_path):
    runner = FakeRunner(batch=None)
    sources = [CountingSource(30, name="left"), CountingSource(20, name="right", shape=(40, 40))]
    result = run_pipeline(runner, sources, OPTIONS, sinks=[JsonlSink(str(tmp_path / "d.jsonl"))], progress=False)
    left, right = _lines(str(tmp_path / "d-0.jsonl")), _lines(str(tmp_path / "d-1.jsonl"))
    assert [line["frame"] for line in left] == list(range(30)) and [line["frame"] for line in right] == list(range(20))
    assert result.frames == 50 and result.summary["streams"] == 2 and result.summary["batch"] == 2
    assert max(runner.batches) == 2  # one frame of each stream per request while both run
    alone = run_pipeline(FakeRunner(), CountingSource(20, name="right", shape=(40, 40)), OPTIONS,
                         sinks=[JsonlSink(str(tmp_path / "alone.jsonl"))], progress=False, sync=True)
    assert _lines(str(tmp_path / "alone.jsonl")) == right and alone.frames == 20
    assert [p for _, p in result.outputs] == [str(tmp_path / "d-0.jsonl"), str(tmp_path / "d-1.jsonl")]


def test_static_batch_is_padded_at_the_end(tmp_path):
    runner = FakeRunner(batch=4)
    _, batched = _run(runner, CountingSource(10), tmp_path, "b4")
    _, single = _run(FakeRunner(), CountingSource(10), tmp_path, "b1", sync=True)
    assert batched == single and set(runner.batches) == {4}


def test_max_frames_and_stream_paths(tmp_path):
    result, lines = _run(AsyncFakeRunner(), CountingSource(50), tmp_path, "m", max_frames=7)
    assert result.frames == 7 and len(lines) == 7
    assert stream_path("out/x.mp4", 1, 2) == "out/x-1.mp4" and stream_path("x.mp4", 0, 1) == "x.mp4"


def test_empty_source_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match="yielded no frames"):
        run_pipeline(FakeRunner(), CountingSource(0), OPTIONS, sinks=[JsonlSink(str(tmp_path / "d.jsonl"))], progress=False)
    assert os.listdir(str(tmp_path)) == []


class ListSink(Sink):
    """A sink defined outside the package: what the pipeline hands to every sink, in order."""

    def __init__(self):
        Sink.__init__(self, "memory")
        self.opened, self.frames, self.closed, self.aborted = None, [], False, False

    def open(self, sources, names):
        self.opened = ([s.name for s in sources], list(names))

    def write(self, stream, frame, det, drawn=None):
        self.frames.append((stream, frame.index, len(det.scores)))

    def close(self):
        self.closed = True
        return [("frames", "memory")]

    def abort(self):
        self.aborted = True


def test_a_new_sink_is_one_class_and_gets_every_frame_in_order():
    sink = ListSink()
    result = run_pipeline(AsyncFakeRunner(), [CountingSource(12, name="l"), CountingSource(5, name="r")], OPTIONS,
                          sinks=[sink], progress=False)
    assert sink.opened == (["l", "r"], ["a", "b"]) and sink.closed and not sink.aborted
    assert [f[1] for f in sink.frames if f[0] == 0] == list(range(12))
    assert [f[1] for f in sink.frames if f[0] == 1] == list(range(5))
    assert result.outputs == (("frames", "memory"),)
    failing = ListSink()
    with pytest.raises(InputError, match="camera unplugged"):
        run_pipeline(FakeRunner(), CountingSource(9, fail_at=4), OPTIONS, sinks=[failing], progress=False)
    assert failing.aborted and not failing.closed


def test_sinks_are_picked_by_option_and_path_and_bad_ones_fail_before_running(tmp_path):
    assert isinstance(sink_for("--save", "a.mp4"), VideoSink) and isinstance(sink_for("--save-json", "d.jsonl"), JsonlSink)
    with pytest.raises(InputError, match=r"--save a\.txt: use a video path \(\.mp4"):
        sink_for("--save", "a.txt")
    runner = FakeRunner()
    with pytest.raises(InputError, match="is a folder but the source is a video"):
        run_pipeline(runner, CountingSource(5), OPTIONS, sinks=[sink_for("--save", str(tmp_path / "frames"))],
                     progress=False)
    assert runner.calls == 0 and os.listdir(str(tmp_path)) == []


def test_run_pipeline_takes_open_sources_not_specs(tmp_path):
    with pytest.raises(TypeError, match="open_sources"):
        run_pipeline(FakeRunner(), "clip.mp4", OPTIONS, progress=False)


def test_batches_of_streams_respect_the_runners_max_batch():
    """Many streams on a dynamic-batch model: one frame per stream per request, but never more than the runner's
    max_batch (a TensorRT profile, a Triton server's max_batch_size)."""
    from edgecsp.runtime.pipeline import batch_size_for

    class Runner(object):
        def __init__(self, shape, max_batch=None):
            self.input_shape, self.max_batch = shape, max_batch

    assert batch_size_for(Runner((None, 3, 8, 8), 8), 12) == 8
    assert batch_size_for(Runner((None, 3, 8, 8), 8), 3) == 3
    assert batch_size_for(Runner((None, 3, 8, 8)), 12) == 12
    assert batch_size_for(Runner((4, 3, 8, 8), 4), 12) == 4
    assert batch_size_for(Runner((None, 3, 8, 8)), 0) == 1


class SlowNetworkRunner(AsyncFakeRunner):
    """Every request takes ``NETWORK_S`` on one worker: the network's own time per frame is known."""

    NETWORK_S = 0.03

    def __init__(self):
        AsyncFakeRunner.__init__(self, workers=1)

    def _infer(self, batch):
        time.sleep(self.NETWORK_S)
        return AsyncFakeRunner._infer(self, batch)


def test_the_summary_names_the_pipelined_wait_a_wait(tmp_path):
    """Pipelined, the calling thread only waits for results the network computes alongside the other stages: the
    summary calls that "wait", never "infer" (which would read as the network's time); --sync keeps "infer", the
    network's own time."""
    result, _ = _run(SlowNetworkRunner(), CountingSource(12), tmp_path, "piped", in_flight=3)
    ms = result.summary["ms"]
    assert "infer" not in ms and list(ms)[:3] == ["read", "preprocess", "wait"]
    assert "'wait' is the time spent handing frames to the network and waiting" in result.text
    assert "infer " not in result.text
    result, _ = _run(SlowNetworkRunner(), CountingSource(4), tmp_path, "sync", sync=True)
    assert "wait" not in result.summary["ms"] and result.summary["ms"]["infer"] >= 1000 * SlowNetworkRunner.NETWORK_S
