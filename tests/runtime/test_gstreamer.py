"""Jetson GStreamer pipeline strings (pure functions; no GStreamer needed)."""
import pytest

from tests.gates import needs_import

from edgecsp.errors import InputError
from edgecsp.runtime.gstreamer import (check_pipeline, csi_pipeline, file_pipeline, gst_source_for,
                                       hide_credentials, opencv_has_gstreamer, rtsp_pipeline)

BGR_TAIL = "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink"


def test_file_pipeline_decodes_in_hardware():
    assert file_pipeline("video.mp4") == ("filesrc location=video.mp4 ! qtdemux ! h264parse ! nvv4l2decoder ! "
                                          + BGR_TAIL + " sync=false")
    assert "matroskademux ! h265parse ! nvv4l2decoder" in file_pipeline("clip.MKV", codec="hevc")
    assert 'filesrc location="/data/my clip.mp4"' in file_pipeline("/data/my clip.mp4")
    assert "format=BGRx, width=640, height=360 !" in file_pipeline("a.mp4", width=640, height=360)
    with pytest.raises(InputError, match="no demuxer known for .flv"):
        file_pipeline("a.flv")
    with pytest.raises(InputError, match="unsupported codec 'vp9'"):
        file_pipeline("a.mp4", codec="vp9")


def test_rtsp_pipeline_keeps_only_the_newest_frame():
    assert rtsp_pipeline("rtsp://cam/stream", latency=100) == (
        "rtspsrc location=rtsp://cam/stream latency=100 ! rtph264depay ! h264parse ! nvv4l2decoder ! " + BGR_TAIL
        + " drop=true max-buffers=1 sync=false")
    assert "rtph265depay ! h265parse" in rtsp_pipeline("rtsp://cam/s", codec="h265")


def test_csi_pipeline_uses_nvarguscamerasrc():
    assert csi_pipeline(1, 1920, 1080, 60, flip=2) == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=1920, height=1080, format=NV12, "
        "framerate=60/1 ! nvvidconv flip-method=2 ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, "
        "format=BGR ! appsink drop=true max-buffers=1")
    with pytest.raises(InputError, match="flip-method must be 0..7"):
        csi_pipeline(flip=9)


def test_gst_source_for_picks_the_pipeline_from_the_spec():
    assert gst_source_for("csi://0") == csi_pipeline(0, 1280, 720, 30, 0)
    assert gst_source_for("csi:1", width=640, height=480) == csi_pipeline(1, 640, 480, 30, 0)
    assert gst_source_for("rtsp://user:pw@camera.example/live") == rtsp_pipeline("rtsp://user:pw@camera.example/live")
    assert gst_source_for("runs/video.mp4") == file_pipeline("runs/video.mp4")
    raw = "videotestsrc !  videoconvert ! video/x-raw, format=BGR ! appsink"
    assert gst_source_for(raw) == "videotestsrc ! videoconvert ! video/x-raw, format=BGR ! appsink"
    with pytest.raises(InputError, match="has no Jetson GStreamer pipeline"):
        gst_source_for("images/")


def test_raw_pipelines_must_feed_appsink():
    with pytest.raises(InputError, match="must end in appsink.*'autovideosink'"):
        check_pipeline("videotestsrc ! autovideosink")
    with pytest.raises(InputError, match="is not a GStreamer pipeline"):
        check_pipeline("appsink")


def test_opencv_build_information_and_credentials():
    assert opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.14.5)\n")
    assert not opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")
    assert not opencv_has_gstreamer("Video I/O:\n  FFMPEG: YES\n")
    assert hide_credentials("rtspsrc location=rtsp://admin:secret@cam/s ! x") == "rtspsrc location=rtsp://***@cam/s ! x"


def test_opening_a_pipeline_needs_opencv_with_gstreamer(monkeypatch):
    cv2 = needs_import("cv2")
    from edgecsp.errors import InputError
    from edgecsp.runtime.gstreamer import open_gst_source

    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  Video I/O:\n    GStreamer:   NO\n")  # pip's build
    with pytest.raises(InputError, match="was built without GStreamer: on a Jetson use JetPack's python3-opencv"):
        open_gst_source("csi://0")


def test_gst_source_that_cannot_start_is_a_one_line_error():
    needs_import("cv2")
    from edgecsp.errors import InputError
    from edgecsp.runtime.gstreamer import GstSource

    # without GStreamer in OpenCV, or with it and an element that does not exist: the capture does not open
    with pytest.raises(InputError, match="could not start the GStreamer pipeline for cam") as info:
        GstSource("rtspsrc location=rtsp://user:secret@127.0.0.1/s ! fakeelement ! appsink", "cam")
    assert "secret" not in str(info.value) and "rtsp://***@" in str(info.value)
