"""Jetson GStreamer pipeline strings and their software stand-ins (pure functions; no GStreamer needed).

tests/runtime/test_gstreamer_play.py plays these pipelines for real.
"""
import json
import os
import re

import pytest

from tests.gates import GST_APT, ROOT, needs_import

from edgecsp.errors import InputError
from edgecsp.runtime import gstreamer
from edgecsp.runtime.gstreamer import (ELEMENT_PACKAGES, SOFTWARE_STANDINS, check_pipeline, csi_pipeline,
                                       file_pipeline, gst_source_for, hide_credentials, opencv_gstreamer_reason,
                                       opencv_has_gstreamer, rtsp_pipeline, software_pipeline, split_pipeline)

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
    # WebM never holds H.264/H.265 (PyAV refuses to write it): no pipeline that would fail at the demuxer
    with pytest.raises(InputError, match=r"a.webm cannot be decoded .*WebM holds VP8, VP9 or AV1.*-c:v libx264"):
        gst_source_for("a.webm")


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


def test_raw_pipelines_must_feed_an_appsink_opencv_finds():
    with pytest.raises(InputError, match="must end in appsink.*'autovideosink'"):
        check_pipeline("videotestsrc ! autovideosink")
    with pytest.raises(InputError, match="is not a GStreamer pipeline"):
        check_pipeline("appsink")
    # OpenCV looks for its sink by name ("appsink"/"opencvsink" in it): another name fails to open, found by playing
    with pytest.raises(InputError, match="finds the appsink by its name, and name=sink .*call it opencvsink"):
        check_pipeline("videotestsrc ! videoconvert ! appsink name=sink")
    assert check_pipeline("videotestsrc ! appsink name=opencvsink sync=false").endswith("name=opencvsink sync=false")
    # quoted values keep their spaces and their '!'
    assert check_pipeline('filesrc  location="/v/a  b!.mp4" ! decodebin ! appsink') == (
        'filesrc location="/v/a  b!.mp4" ! decodebin ! appsink')


def test_split_pipeline_splits_outside_quotes_only():
    assert split_pipeline('filesrc location="x ! \\"y\\" .mp4" !qtdemux!  h264parse ') == [
        'filesrc location="x ! \\"y\\" .mp4"', "qtdemux", "h264parse"]
    assert split_pipeline(file_pipeline("/d/my clip!.mp4"))[0] == 'filesrc location="/d/my clip!.mp4"'


def test_software_pipelines_replace_exactly_the_jetson_elements():
    assert software_pipeline(file_pipeline("a.mkv", codec="h265", width=640, height=360)) == (
        "filesrc location=a.mkv ! matroskademux ! h265parse ! avdec_h265 ! videoconvert ! videoscale ! video/x-raw, "
        "format=BGRx, width=640, height=360 ! videoconvert ! video/x-raw, format=BGR ! appsink sync=false")
    assert software_pipeline(rtsp_pipeline("rtsp://u:p@cam/s", latency=0)) == (
        "rtspsrc location=rtsp://u:p@cam/s latency=0 ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! "
        "videoscale ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true "
        "max-buffers=1 sync=false")
    assert software_pipeline(csi_pipeline(1, 640, 480, 15, flip=1)) == (
        "videotestsrc is-live=true ! video/x-raw, width=640, height=480, format=NV12, framerate=15/1 ! videoflip "
        "video-direction=90l ! videoconvert ! videoscale ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, "
        "format=BGR ! appsink drop=true max-buffers=1")
    # nvvidconv's flip-method numbers and names -> videoflip's directions (which order the turns differently)
    assert [software_pipeline("a ! nvvidconv flip-method={} ! appsink".format(m)).split(" ! ")[1]
            for m in (3, 5, "upper-left-diagonal")] == [
        "videoflip video-direction=90r", "videoflip video-direction=ur-ll", "videoflip video-direction=ul-lr"]
    with pytest.raises(InputError, match="nvvidconv flip-method must be 0..7 .* got '8'"):
        software_pipeline("a ! nvvidconv flip-method=8 ! appsink")
    # a raw --gst pipeline: the decoder after a queue still decodes the parser's codec; without a parser, decodebin
    assert "h265parse ! queue ! avdec_h265 !" in software_pipeline("x ! h265parse ! queue ! nvv4l2decoder ! appsink")
    assert software_pipeline("x ! rtph264depay ! nvv4l2decoder ! appsink") == "x ! rtph264depay ! decodebin ! appsink"
    plain = "videotestsrc ! videoconvert ! video/x-raw, format=BGR ! appsink"
    assert software_pipeline(plain) == plain


def _jetson_pipelines():
    pipelines = [file_pipeline("v" + ext, codec) for ext in gstreamer.DEMUXERS for codec in ("h264", "h265")]
    pipelines += [rtsp_pipeline("rtsp://cam/s", codec) for codec in ("h264", "h265")]
    return pipelines + [csi_pipeline(0), csi_pipeline(0, flip=2)]


def test_every_jetson_element_has_a_stand_in_and_every_element_a_package():
    elements = lambda pipeline: {gstreamer._factory(s) for s in split_pipeline(pipeline)} - {None}  # noqa: E731
    jetson = set().union(*map(elements, _jetson_pipelines()))
    software = set().union(*(elements(software_pipeline(p)) for p in _jetson_pipelines()))
    # the Jetson-only elements, as recorded per JetPack from NVIDIA's documentation
    table = json.load(open(os.path.join(ROOT, "tests", "backends", "tensorrt", "surfaces", "gstreamer-jetpack.json")))
    for version, nvidia in table["jetpack"].items():
        assert set(nvidia) == set(SOFTWARE_STANDINS), version
    assert jetson & set(SOFTWARE_STANDINS) == set(SOFTWARE_STANDINS)
    assert not software & set(SOFTWARE_STANDINS) and not any("NVMM" in software_pipeline(p)
                                                             for p in _jetson_pipelines())
    packaged = {name for _, _, names in ELEMENT_PACKAGES for name in names}
    assert (jetson | software) - packaged == set()


def test_opencv_reasons_are_read_from_its_warnings():
    opencv46 = ("[ WARN:0@0.1] global ./modules/videoio/src/cap_gstreamer.cpp (2401) handleMessage OpenCV | GStreamer "
                "warning: Embedded video playback halted; module filesrc0 reported: Resource not found.\n"
                "[ WARN:0@0.1] global cap_gstreamer.cpp (1356) open OpenCV | GStreamer warning: unable to start "
                "pipeline\n")
    assert opencv_gstreamer_reason(opencv46) == "module filesrc0 reported: Resource not found."
    opencv34 = "GStreamer Plugin: Embedded video playback halted; module rtspsrc0 reported: Unauthorized (x.cpp:12)\n"
    assert opencv_gstreamer_reason(opencv34) == "module rtspsrc0 reported: Unauthorized"
    assert opencv_gstreamer_reason("OpenCV | GStreamer warning: GStreamer: pipeline have not been created\n") is None


def test_stderr_capture_drops_opencvs_routine_warnings_and_keeps_the_rest(capfd):
    routine = b"[ WARN:0] OpenCV | GStreamer warning: unable to query duration of stream\n"
    reason = b"[ WARN:0] OpenCV | GStreamer warning: Embedded video playback halted; module x reported: Boom\n"
    with gstreamer._StderrCapture() as capture:
        os.write(2, routine + b"a GStreamer-CRITICAL line of its own\n")
        assert "unable to query duration" in capture.read()
    assert capfd.readouterr().err == "a GStreamer-CRITICAL line of its own\n"
    with pytest.raises(InputError):
        with gstreamer._StderrCapture() as capture:
            os.write(2, reason + routine)
            raise InputError("could not start ({})".format(opencv_gstreamer_reason(capture.read())))
    assert capfd.readouterr().err == ""  # after a failure the error carries the reason: no OpenCV lines


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


def test_gst_source_that_cannot_start_is_a_one_line_error(monkeypatch):
    needs_import("cv2")
    from edgecsp.runtime.gstreamer import GstSource

    # without GStreamer in OpenCV (pip's), or with it and a pipeline that fails: the capture does not open
    monkeypatch.setattr(gstreamer, "_GST", [None])  # libgstreamer not asked (see the next test)
    with pytest.raises(InputError, match="could not start the GStreamer pipeline for cam") as info:
        GstSource("rtspsrc location=rtsp://user:secret@127.0.0.1/s ! fakeelement ! appsink", "cam")
    assert "secret" not in str(info.value) and "rtsp://***@" in str(info.value)
    assert "\n" not in str(info.value)


class _FakeGst(object):
    """libgstreamer's two calls missing_elements makes, over a set of installed elements."""

    def __init__(self, installed):
        self.installed, self.unref = set(installed), []

    def gst_element_factory_find(self, name):
        return id(name) if name.decode() in self.installed else None

    def gst_object_unref(self, factory):
        self.unref.append(factory)


def test_missing_elements_are_refused_before_opencv_would_wait_forever(monkeypatch):
    needs_import("cv2")
    from edgecsp.runtime.gstreamer import GstSource, missing_elements

    fake = _FakeGst({"rtspsrc", "rtph264depay", "h264parse", "videoconvert", "appsink", "fakeelement"})
    monkeypatch.setattr(gstreamer, "_GST", [fake])
    pipeline = rtsp_pipeline("rtsp://user:secret@cam/s") + " ! fakeelement"
    assert missing_elements(pipeline) == ["nvv4l2decoder", "nvvidconv"]
    assert len(fake.unref) == 6  # every factory found is released (videoconvert once)
    with pytest.raises(InputError) as info:
        GstSource(pipeline, hide_credentials("rtsp://user:secret@cam/s"))
    message = str(info.value)
    assert message.startswith("cannot start the GStreamer pipeline for rtsp://***@cam/s: this machine's GStreamer "
                              "has no nvv4l2decoder, nvvidconv: install JetPack's nvidia-l4t-gstreamer for "
                              "nvv4l2decoder, nvvidconv (in Docker: run with --runtime nvidia; off a Jetson: drop "
                              "--gst); the pipeline: rtspsrc location=rtsp://***@cam/s latency=200 ! ")
    assert "secret" not in message and "\n" not in message
    fake.installed = (fake.installed | {"filesrc"}) - {"h264parse", "qtdemux"}
    assert gstreamer._missing_fix(missing_elements(file_pipeline("a.mp4") + " ! nosuchsink")) == (
        "install JetPack's nvidia-l4t-gstreamer for nvv4l2decoder, nvvidconv (in Docker: run with --runtime nvidia; "
        "off a Jetson: drop --gst); install gstreamer1.0-plugins-good for qtdemux; install gstreamer1.0-plugins-bad "
        "for h264parse; check the name of nosuchsink (gst-inspect-1.0 lists the elements) and install its plugin")


def test_the_makefile_installs_what_the_gstreamer_gate_asks_for():
    # the play tests (test_gstreamer_play.py) skip, or fail in CI, by this list
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    listed = re.search(r"^GST_APT := ((?:.*\\\n)*.*)$", makefile, re.M).group(1)
    assert listed.replace("\\\n", " ").split() == GST_APT.split()
