"""Output side of the runtime: atomic writers, drawing, progress bar and stage timing."""
import io
import json
import os

import numpy as np
import pytest

from tests.gates import needs, needs_import

from edgecsp.errors import InputError
from edgecsp.runtime.nms import Detections
from edgecsp.runtime.progress import Progress
from edgecsp.runtime.timing import StageTimer
from edgecsp.runtime.writers import JsonlWriter, VideoWriter


def _det(n=1):
    return Detections(np.array([[10, 10, 40, 30]] * n, np.float32), np.array([0.9] * n, np.float32),
                      np.array([1] * n, np.int64))


def test_jsonl_is_renamed_into_place_on_close(tmp_path):
    path = tmp_path / "out" / "dets.jsonl"  # the folder is created
    with JsonlWriter(str(path)) as writer:
        writer.write(0, "a.jpg", _det(), ["cat", "dog"])
        writer.write(1, "b.jpg", _det(0), ["cat", "dog"])
        assert not path.exists()  # nothing that looks complete while writing
        assert len(os.listdir(str(path.parent))) == 1
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"frame": 0, "source": "a.jpg", "detections": [
        {"class_id": 1, "name": "dog", "score": 0.9, "box": [10.0, 10.0, 40.0, 30.0]}]}
    assert lines[1]["detections"] == [] and lines[1]["frame"] == 1
    assert os.listdir(str(path.parent)) == ["dets.jsonl"]  # no temp file left behind


def test_jsonl_exception_leaves_nothing_and_keeps_old_file(tmp_path):
    path = tmp_path / "dets.jsonl"
    with pytest.raises(RuntimeError):
        with JsonlWriter(str(path)) as writer:
            writer.write(0, "a.jpg", _det())
            raise RuntimeError("interrupted")
    assert os.listdir(str(tmp_path)) == []
    path.write_text("previous run\n")
    with pytest.raises(KeyboardInterrupt):
        with JsonlWriter(str(path)) as writer:
            writer.write(0, "a.jpg", _det())
            raise KeyboardInterrupt
    assert path.read_text() == "previous run\n" and os.listdir(str(tmp_path)) == ["dets.jsonl"]


def test_output_path_that_is_a_folder(tmp_path):
    with pytest.raises(InputError):
        JsonlWriter(str(tmp_path))


def _count_frames(path):
    cv2 = needs_import("cv2")
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_writer_atomic_and_readable(tmp_path):
    needs("opencv")
    path = tmp_path / "annotated.mp4"
    with VideoWriter(str(path), fps=12) as writer:
        for i in range(4):
            writer.write(np.full((48, 64, 3), i * 40, np.uint8))
        writer.write(np.zeros((96, 128, 3), np.uint8))  # another size: resized, not silently dropped
        assert not path.exists()
    assert os.listdir(str(tmp_path)) == ["annotated.mp4"]
    assert _count_frames(path) == 5


def test_video_writer_exception_and_empty(tmp_path):
    needs("opencv")
    with pytest.raises(ValueError):
        with VideoWriter(str(tmp_path / "v.mp4"), fps=10) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise ValueError("boom")
    assert os.listdir(str(tmp_path)) == []
    assert VideoWriter(str(tmp_path / "none.mp4")).close() is None  # no frames: no file
    assert os.listdir(str(tmp_path)) == []


def test_draw_detections_colours_the_box():
    needs("opencv")
    from edgecsp.runtime.draw import class_color, draw_detections
    image = np.zeros((60, 80, 3), np.uint8)
    out = draw_detections(image, _det(), ["cat", "dog"])
    assert out is image
    assert tuple(int(v) for v in image[20, 10]) == class_color(1)  # left edge of the box
    assert image[27, 30].tolist() == [0, 0, 0]  # inside the box, below the label tag: untouched
    assert (image[11:20, 11:30] != 0).any()  # the label tag (inside the box: it touches the top edge)
    assert class_color(1) == class_color(1) and class_color(0) != class_color(1)


class _Clock(object):
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_silent_when_not_a_tty():
    stream = io.StringIO()
    with Progress(total=10, stream=stream) as bar:
        bar.update(5)
    assert stream.getvalue() == "" and bar.count == 5


def test_progress_known_and_unknown_total_rate_limited():
    clock, stream = _Clock(), io.StringIO()
    bar = Progress(total=10, stream=stream, enabled=True, clock=clock, min_interval=0.1)
    clock.t = 1.0
    bar.update(5)
    assert "50%" in stream.getvalue() and "5/10" in stream.getvalue() and "5.0 it/s" in stream.getvalue()
    before = stream.getvalue()
    clock.t = 1.05
    bar.update(1)
    assert stream.getvalue() == before  # within min_interval: no redraw
    bar.close()
    assert stream.getvalue().endswith("\n") and "60%" in stream.getvalue()
    clock2, stream2 = _Clock(), io.StringIO()
    open_ended = Progress(stream=stream2, enabled=True, clock=clock2)
    clock2.t = 2.0
    open_ended.update(7)
    assert "7 frames 3.5 it/s" in stream2.getvalue() and "%" not in stream2.getvalue()


def test_stage_timer_summary():
    clock = _Clock()
    timer = StageTimer(clock=clock)
    for _ in range(2):
        with timer.stage("preprocess"):
            clock.t += 0.002
        with timer.stage("infer"):
            clock.t += 0.010
        timer.count_frames()
    timer.add("postprocess", 3.0)
    s = timer.summary()
    assert s["frames"] == 2 and list(s["ms"]) == ["preprocess", "infer", "postprocess"]
    assert s["ms"]["infer"] == pytest.approx(10.0) and s["ms_per_frame"]["postprocess"] == pytest.approx(1.5)
    assert s["seconds"] == pytest.approx(0.024) and s["fps"] == pytest.approx(2 / 0.024)
    assert "2 frames" in timer.text() and "infer 10.00 ms" in timer.text()
