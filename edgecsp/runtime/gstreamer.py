"""Jetson video sources as GStreamer pipelines for OpenCV: hardware decoding and the CSI camera.

On a Jetson, ``cv2.VideoCapture("video.mp4")`` decodes on the CPU (FFmpeg) and cannot open a CSI camera at
all. These pure functions build the pipelines NVIDIA's hardware needs: ``nvv4l2decoder`` for files and RTSP
streams, ``nvarguscamerasrc`` for CSI cameras, each ending in ``appsink`` with BGR frames as OpenCV expects.
``gst_source_for(spec)`` picks one from a source spec; a raw pipeline (``--gst``) passes through checked.
Opening one needs OpenCV built with GStreamer (JetPack's python3-opencv is; pip's opencv-python is not).
Python 3.6; OpenCV is imported only by ``open_gst_source``.
"""
import os
import re
from typing import Optional

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.sources import VideoSource

# container extension -> demuxer; codec -> (RTP depayloader, parser)
DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".m4v": "qtdemux", ".mkv": "matroskademux",
            ".webm": "matroskademux", ".avi": "avidemux", ".ts": "tsdemux", ".mts": "tsdemux"}
CODECS = {"h264": ("rtph264depay", "h264parse"), "h265": ("rtph265depay", "h265parse")}
# NVMM (GPU) frames -> BGRx in system memory (nvvidconv) -> BGR (videoconvert), which OpenCV reads
TO_BGR = "nvvidconv{flip} ! video/x-raw, format=BGRx{size} ! videoconvert ! video/x-raw, format=BGR"
CSI_PREFIX = re.compile(r"^csi(?::|://)(\d+)$", re.I)


def _codec(codec):
    key = str(codec).lower().replace(".", "").replace("hevc", "h265").replace("avc", "h264")
    if key not in CODECS:
        raise InputError("unsupported codec {!r} for hardware decoding: use h264 or h265".format(codec))
    return key


def _to_bgr(width=None, height=None, flip=0):
    size = ", width={}, height={}".format(int(width), int(height)) if width and height else ""
    return TO_BGR.format(flip=" flip-method={}".format(int(flip)) if flip else "", size=size)


def hide_credentials(text):
    # type: (str) -> str
    """``rtsp://user:password@host`` -> ``rtsp://***@host``: pipelines end up in logs and error messages."""
    return re.sub(r"//[^/@\s]*@", "//***@", str(text))


def _quote(value):
    """A GStreamer property value, quoted when it holds spaces or separators."""
    text = str(value)
    if re.search(r"[\s!\"']", text):
        return '"{}"'.format(text.replace('"', '\\"'))
    return text


def file_pipeline(path, codec="h264", width=None, height=None):
    # type: (str, str, Optional[int], Optional[int]) -> str
    """Hardware-decode a video file: filesrc ! demux ! parse ! nvv4l2decoder ! nvvidconv ! BGR appsink."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in DEMUXERS:
        raise InputError("no demuxer known for {} files ({}): re-mux to .mp4 (ffmpeg -i IN -c copy OUT.mp4) or "
                         "pass a pipeline with --gst".format(ext or "extension-less", ", ".join(sorted(DEMUXERS))))
    parser = CODECS[_codec(codec)][1]
    return ("filesrc location={} ! {} ! {} ! nvv4l2decoder ! {} ! appsink sync=false".format(
        _quote(path), DEMUXERS[ext], parser, _to_bgr(width, height)))


def rtsp_pipeline(url, codec="h264", latency=200, width=None, height=None):
    # type: (str, str, int, Optional[int], Optional[int]) -> str
    """Hardware-decode an RTSP stream; the appsink keeps only the newest frame (live sources must not lag)."""
    depay, parser = CODECS[_codec(codec)]
    return ("rtspsrc location={} latency={} ! {} ! {} ! nvv4l2decoder ! {} ! appsink drop=true max-buffers=1 "
            "sync=false".format(_quote(url), int(latency), depay, parser, _to_bgr(width, height)))


def csi_pipeline(sensor_id=0, width=1280, height=720, fps=30, flip=0):
    # type: (int, int, int, int, int) -> str
    """A CSI camera through nvarguscamerasrc (the ISP), NV12 in NVMM -> BGR; ``flip`` is nvvidconv's flip-method."""
    if not 0 <= int(flip) <= 7:
        raise InputError("flip-method must be 0..7, got {}".format(flip))
    return ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM), width={}, height={}, format=NV12, "
            "framerate={}/1 ! {} ! appsink drop=true max-buffers=1".format(
                int(sensor_id), int(width), int(height), int(fps), _to_bgr(flip=flip)))


def check_pipeline(pipeline):
    # type: (str) -> str
    """A raw pipeline (``--gst``) stripped, if it can feed OpenCV: elements joined by '!', ending in appsink."""
    text = " ".join(str(pipeline).split())
    if "!" not in text:
        raise InputError("{!r} is not a GStreamer pipeline: elements are joined by '!' (gst-launch-1.0 syntax)".format(
            text))
    last = text.rsplit("!", 1)[1].strip().split()[0] if text.rsplit("!", 1)[1].strip() else ""
    if not last.startswith("appsink"):
        raise InputError("a pipeline for OpenCV must end in appsink (it ends in {!r}): append "
                         "'! videoconvert ! video/x-raw, format=BGR ! appsink'".format(last))
    return text


def gst_source_for(spec, codec="h264", width=None, height=None, fps=30, flip=0, latency=200):
    # type: (str, str, Optional[int], Optional[int], int, int, int) -> str
    """The Jetson pipeline for a source spec.

    ``csi://0`` or ``csi:0``: CSI camera 0 (``width``/``height`` default 1280x720); ``rtsp://...``: RTSP stream;
    a video file path: hardware-decoded file; a string containing '!': a raw pipeline, checked and passed
    through. Anything else (images, folders, USB cameras) is no GStreamer source: InputError.
    """
    text = str(spec).strip()
    csi = CSI_PREFIX.match(text)
    if csi:
        return csi_pipeline(int(csi.group(1)), width or 1280, height or 720, fps, flip)
    if "!" in text:
        return check_pipeline(text)
    if text.lower().startswith(("rtsp://", "rtsps://")):
        return rtsp_pipeline(text, codec, latency, width, height)
    if os.path.splitext(text)[1].lower() in DEMUXERS:
        return file_pipeline(text, codec, width, height)
    raise InputError("{} has no Jetson GStreamer pipeline: use csi://N for a CSI camera, rtsp://... for a stream, "
                     "a video file ({}), or a raw pipeline".format(text, ", ".join(sorted(DEMUXERS))))


def opencv_has_gstreamer(build_information):
    # type: (str) -> bool
    """True when ``cv2.getBuildInformation()`` text says GStreamer support was built in."""
    match = re.search(r"^\s*GStreamer:\s*(\S+)", build_information, re.M)
    return bool(match) and match.group(1).upper() not in ("NO", "OFF")


class GstSource(VideoSource):
    """A VideoSource over a GStreamer pipeline, opened with OpenCV's GStreamer backend (CAP_GSTREAMER).

    Iteration and closing are VideoSource's; only the opening differs (the default backend may pick FFmpeg).
    """

    def __init__(self, pipeline, name, kind="gstreamer"):
        cv2 = require("cv2", "reading GStreamer pipelines")
        self.pipeline = pipeline  # before opening: _open_error names it
        VideoSource.__init__(self, pipeline, name, kind, api=cv2.CAP_GSTREAMER)

    def _open_error(self):
        return ("OpenCV could not start the GStreamer pipeline for {}: test it with gst-launch-1.0 (appsink replaced "
                "by fakesink) and check that the camera or file exists: {}".format(self.name,
                                                                     hide_credentials(self.pipeline)))


def open_gst_source(spec, **options):
    """Open ``spec`` (see ``gst_source_for``; options go there) as a frame source through GStreamer."""
    cv2 = require("cv2", "reading GStreamer pipelines")
    if not opencv_has_gstreamer(cv2.getBuildInformation()):
        raise InputError("this OpenCV ({}) was built without GStreamer: on a Jetson use JetPack's python3-opencv "
                         "(apt), not pip's opencv-python".format(cv2.__version__))
    text = str(spec).strip()
    return GstSource(gst_source_for(text, **options), "gstreamer pipeline" if "!" in text else hide_credentials(text))


# the source-kind contract of edgecsp.runtime.inputs
open_spec = open_gst_source


def check_spec(spec, **options):
    """A spec with no Jetson pipeline fails here, before the model is loaded."""
    gst_source_for(spec, **options)
