"""H.264 output through PyAV on its own thread, the mp4v fallback, and the failure paths."""
import logging
import os

import numpy as np
import pytest

from edgecsp.errors import InputError
from edgecsp.runtime import h264
from edgecsp.runtime.writers import VideoWriter

pytestmark = [pytest.mark.opencv, pytest.mark.av]


def _frames(count, size=(90, 161)):  # an odd width: H.264 wants even sizes
    for i in range(count):
        image = np.zeros(size + (3,), np.uint8)
        image[:, : 10 + 5 * i] = (40, 120, 220)
        yield image


def test_h264_writes_a_browser_playable_file_atomically(tmp_path):
    import av
    import cv2

    path = str(tmp_path / "out.mp4")
    writer = h264.open_video_writer(path, fps=25)
    assert isinstance(writer, h264.H264Writer) and writer.encoder == h264.h264_encoder()
    for image in _frames(30):
        writer.write(image)
    assert not os.path.exists(path)  # staged until close
    assert writer.close() == path and os.listdir(str(tmp_path)) == ["out.mp4"]
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (160, 90)
        assert stream.codec_context.pix_fmt == "yuv420p"
    capture = cv2.VideoCapture(path)
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 30


def test_an_error_leaves_nothing_and_the_old_file_stays(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with h264.open_video_writer(str(path), fps=25) as writer:
            for image in _frames(5):
                writer.write(image)
            raise KeyboardInterrupt
    assert path.read_bytes() == b"previous" and os.listdir(str(tmp_path)) == ["out.mp4"]


def test_encoder_thread_errors_reach_the_caller(tmp_path, monkeypatch):
    writer = h264.open_video_writer(str(tmp_path / "out.mp4"), fps=25)

    def broken(*args, **kwargs):
        raise ValueError("encoder exploded")

    monkeypatch.setattr(writer._av.VideoFrame, "from_ndarray", broken)
    with pytest.raises(RuntimeError, match="H.264 encoding of .*out.mp4 failed: encoder exploded"):
        for image in _frames(40):
            writer.write(image)
        writer.close()
    writer.abort()
    assert os.listdir(str(tmp_path)) == []


def test_without_an_h264_encoder_mp4v_with_a_notice(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(h264, "h264_encoder", lambda: None)
    with caplog.at_level(logging.WARNING):
        writer = h264.open_video_writer(str(tmp_path / "out.mp4"), fps=25)
    assert isinstance(writer, VideoWriter) and writer.fourcc == "mp4v"
    assert "no H.264 encoder (pip install av" in caplog.text
    writer.abort()
    assert isinstance(h264.open_video_writer(str(tmp_path / "o.avi"), fps=25), VideoWriter)  # avi: OpenCV
    with pytest.raises(InputError, match="H.264 needs a .mp4, .mkv or .mov path"):
        h264.open_video_writer(str(tmp_path / "o.avi"), codec="h264")


def test_a_video_that_cannot_be_written_fails_before_the_first_frame(tmp_path):
    from edgecsp.runtime.sinks import VideoSink
    from edgecsp.runtime.sources import Source

    (tmp_path / "taken.mp4").mkdir()
    sink = VideoSink(str(tmp_path / "taken.mp4"))
    with pytest.raises(InputError, match="is an existing folder"):
        sink.open([Source("clip", fps=25.0)], ["a"])
