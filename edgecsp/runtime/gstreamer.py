"""Jetson video sources as GStreamer pipelines for OpenCV: hardware decoding and the CSI camera.

On a Jetson, ``cv2.VideoCapture("video.mp4")`` decodes on the CPU (FFmpeg) and cannot open a CSI camera at
all. These pure functions build the pipelines NVIDIA's hardware needs: ``nvv4l2decoder`` for files and RTSP
streams, ``nvarguscamerasrc`` for CSI cameras, each ending in ``appsink`` with BGR frames as OpenCV expects.
``gst_source_for(spec)`` picks one from a source spec; a raw pipeline (``--gst``) passes through checked.
``software_pipeline`` swaps the Jetson elements for software ones (``SOFTWARE_STANDINS``) so that the same
pipelines play on any PC with GStreamer; the tests play them so under Debian's GStreamer-enabled OpenCV.
Opening one needs OpenCV built with GStreamer (JetPack's python3-opencv is; pip's opencv-python is not).
Python 3.6; OpenCV is imported only by ``open_gst_source``/``GstSource``, libgstreamer (ctypes) only by
``missing_elements``.
"""
import ctypes
import ctypes.util
import os
import re
import sys
import tempfile
from typing import List, Optional

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.sources import VideoSource

# container extension -> demuxer; codec -> (RTP depayloader, parser)
DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".m4v": "qtdemux", ".mkv": "matroskademux",
            ".avi": "avidemux", ".ts": "tsdemux", ".mts": "tsdemux"}
# containers that never hold H.264/H.265 (WebM: VP8, VP9, AV1 only)
NOT_DECODED = {".webm": "WebM holds VP8, VP9 or AV1, not H.264 or H.265"}
CODECS = {"h264": ("rtph264depay", "h264parse"), "h265": ("rtph265depay", "h265parse")}
# NVMM (GPU) frames -> BGRx in system memory (nvvidconv) -> BGR (videoconvert), which OpenCV reads
TO_BGR = "nvvidconv{flip} ! video/x-raw, format=BGRx{size} ! videoconvert ! video/x-raw, format=BGR"
CSI_PREFIX = re.compile(r"^csi(?::|://)(\d+)$", re.I)

# The Jetson-only elements, and what does their job on any GStreamer with plugins base, good, bad and libav:
# software_pipeline() puts these in their place (frames alike in size, order and format, not in speed). The
# Jetson pipelines themselves never change.
SOFTWARE_STANDINS = {
    "nvarguscamerasrc": "videotestsrc is-live=true",  # a live source at the caps that follow (sensor-id dropped)
    "nvv4l2decoder": "avdec_{codec}",  # the codec of the last parser before it; decodebin without one
    "nvvidconv": "{flip}videoconvert ! videoscale",  # format and size; a flip-method becomes a videoflip
}
NVMM = "(memory:NVMM)"  # the caps feature of GPU buffers, which only the nv elements make and take
PARSER_CODECS = {"h264parse": "h264", "h265parse": "h265"}
# nvvidconv's flip-method 0..7 (by its names) -> videoflip's video-direction: the two order the turns differently
# (and videoflip's older ``method`` property did not turn frames in GStreamer 1.22)
FLIP_METHODS = ("none", "counterclockwise", "rotate-180", "clockwise", "horizontal-flip", "upper-right-diagonal",
                "vertical-flip", "upper-left-diagonal")
VIDEO_DIRECTIONS = ("identity", "90l", "180", "90r", "horiz", "ur-ll", "vert", "ul-lr")
# where the elements of these pipelines come from: the fix when this machine's GStreamer lacks one
ELEMENT_PACKAGES = (
    ("JetPack's nvidia-l4t-gstreamer", "in Docker: run with --runtime nvidia; off a Jetson: drop --gst",
     ("nvarguscamerasrc", "nvv4l2decoder", "nvvidconv")),
    ("GStreamer's core, libgstreamer1.0-0", "", ("filesrc",)),
    ("gstreamer1.0-plugins-base", "", ("appsink", "decodebin", "videoconvert", "videoscale", "videotestsrc")),
    ("gstreamer1.0-plugins-good", "", ("avidemux", "matroskademux", "qtdemux", "rtph264depay", "rtph265depay",
                                       "rtspsrc", "videoflip")),
    ("gstreamer1.0-plugins-bad", "", ("h264parse", "h265parse", "tsdemux")),
    ("gstreamer1.0-libav", "", ("avdec_h264", "avdec_h265")),
)
_FACTORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]*$")  # an element name; caps have '/', pad references '.'
# OpenCV tells why a pipeline failed only in WARN lines on stderr: "... GStreamer warning: <what>" (OpenCV 4.2+),
# "GStreamer Plugin: <what> (file:line)" before. The routine ones say nothing to act on.
_OPENCV_GST = re.compile(r"GStreamer (?:warning|Plugin): *(.*?)(?: \(\S+:\d+\))?\s*$")
_ROUTINE = ("unable to start pipeline", "pipeline have not been created", "unable to query", "Cannot query")


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


def split_pipeline(pipeline):
    # type: (str) -> List[str]
    """The elements of a gst-launch pipeline: split at each '!' outside quotes, whitespace outside quotes
    collapsed (a quoted file name keeps its spaces and its '!')."""
    segments, current, quote, escaped = [], [], None, False
    for char in str(pipeline):
        if quote:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
            current.append(char)
        elif char == "!":
            segments.append(current)
            current = []
        elif char.isspace():
            if current and current[-1] != " ":
                current.append(" ")
        else:
            current.append(char)
    segments.append(current)
    return ["".join(segment).strip() for segment in segments]


def _factory(segment):
    """The element a pipeline segment creates; None for caps, pad references (``demux.``) and bins."""
    word = segment.split(" ", 1)[0]
    return word if _FACTORY.match(word) else None


def file_pipeline(path, codec="h264", width=None, height=None):
    # type: (str, str, Optional[int], Optional[int]) -> str
    """Hardware-decode a video file: filesrc ! demux ! parse ! nvv4l2decoder ! nvvidconv ! BGR appsink."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in NOT_DECODED:
        raise InputError("{} cannot be decoded by these pipelines ({}): re-encode it (ffmpeg -i IN -c:v libx264 "
                         "OUT.mp4) or drop --gst (OpenCV decodes it on the CPU)".format(path, NOT_DECODED[ext]))
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
    """A raw pipeline (``--gst``) normalised, if it can feed OpenCV: elements joined by '!', ending in an appsink
    that OpenCV finds (by its name: the default ``appsink0``, or one containing "appsink" or "opencvsink")."""
    segments = split_pipeline(pipeline)
    text = " ! ".join(segments)
    if len(segments) < 2:
        raise InputError("{!r} is not a GStreamer pipeline: elements are joined by '!' (gst-launch-1.0 syntax)".format(
            text))
    last = segments[-1].split(" ")[0]
    if last != "appsink":
        raise InputError("a pipeline for OpenCV must end in appsink (it ends in {!r}): append "
                         "'! videoconvert ! video/x-raw, format=BGR ! appsink'".format(last))
    name = re.search(r" name=(\"[^\"]*\"|'[^']*'|\S+)", segments[-1])
    if name and "appsink" not in name.group(1) and "opencvsink" not in name.group(1):
        raise InputError("OpenCV finds the appsink by its name, and name={} is not one it looks for: drop the name "
                         "(appsink0) or call it opencvsink".format(name.group(1)))
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
    ext = os.path.splitext(text)[1].lower()
    if ext in DEMUXERS or ext in NOT_DECODED:
        return file_pipeline(text, codec, width, height)
    raise InputError("{} has no Jetson GStreamer pipeline: use csi://N for a CSI camera, rtsp://... for a stream, "
                     "a video file ({}), or a raw pipeline".format(text, ", ".join(sorted(DEMUXERS))))


def _flip_direction(segment):
    """videoflip's video-direction for nvvidconv's flip-method in ``segment`` (a number or its name)."""
    found = re.search(r"(?:^| )flip-method=(\S+)", segment)
    value = found.group(1).strip("\"'") if found else "0"
    if value.isdigit() and int(value) < len(FLIP_METHODS):
        return VIDEO_DIRECTIONS[int(value)]
    if value in FLIP_METHODS:
        return VIDEO_DIRECTIONS[FLIP_METHODS.index(value)]
    raise InputError("nvvidconv flip-method must be 0..7 or one of {}, got {!r}".format(", ".join(FLIP_METHODS),
                                                                                        value))


def software_pipeline(pipeline):
    # type: (str) -> str
    """``pipeline`` with its Jetson elements replaced by software ones (``SOFTWARE_STANDINS``) and NVMM caps made
    plain: it plays on any PC with GStreamer, to try a Jetson pipeline (or a --gst one) before the Jetson."""
    out, codec = [], None
    for segment in split_pipeline(pipeline):
        factory = _factory(segment)
        codec = PARSER_CODECS.get(factory, codec)
        if factory == "nvv4l2decoder":
            out.append(SOFTWARE_STANDINS[factory].format(codec=codec) if codec else "decodebin")
        elif factory == "nvvidconv":
            direction = _flip_direction(segment)
            flip = "videoflip video-direction={} ! ".format(direction) if direction != "identity" else ""
            out.append(SOFTWARE_STANDINS[factory].format(flip=flip))
        elif factory in SOFTWARE_STANDINS:
            out.append(SOFTWARE_STANDINS[factory])
        else:
            out.append(segment.replace(NVMM, ""))
    return " ! ".join(out)


_GST = []  # [libgstreamer or None] once loaded


def _libgstreamer():
    """libgstreamer-1.0, initialised, through ctypes; None where it is not installed."""
    if not _GST:
        lib = None
        for name in ("libgstreamer-1.0.so.0", ctypes.util.find_library("gstreamer-1.0")):
            try:
                lib = ctypes.CDLL(name) if name else None
            except OSError:
                continue
            if lib is not None:
                break
        if lib is not None:
            lib.gst_init_check.restype = ctypes.c_int
            lib.gst_init_check.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            lib.gst_element_factory_find.restype = ctypes.c_void_p
            lib.gst_element_factory_find.argtypes = [ctypes.c_char_p]
            lib.gst_object_unref.argtypes = [ctypes.c_void_p]
            if not lib.gst_init_check(None, None, None):
                lib = None
        _GST.append(lib)
    return _GST[0]


def missing_elements(pipeline):
    # type: (str) -> Optional[List[str]]
    """The elements of ``pipeline`` this machine's GStreamer lacks, in pipeline order; None where libgstreamer
    cannot be asked. OpenCV starts a pipeline without them anyway, and waits forever when the source is missing."""
    gst = _libgstreamer()
    if gst is None:
        return None
    missing = []
    for factory in (_factory(segment) for segment in split_pipeline(pipeline)):
        if factory and factory not in missing:
            found = gst.gst_element_factory_find(factory.encode("ascii"))
            if found:
                gst.gst_object_unref(found)
            else:
                missing.append(factory)
    return missing


def _missing_fix(missing):
    """What to install for the missing elements, from ELEMENT_PACKAGES."""
    fixes = []
    for package, note, elements in ELEMENT_PACKAGES:
        here = [name for name in missing if name in elements]
        if here:
            fixes.append("install {} for {}{}".format(package, ", ".join(here), " ({})".format(note) if note else ""))
    known = set(name for _, _, elements in ELEMENT_PACKAGES for name in elements)
    unknown = [name for name in missing if name not in known]
    if unknown:
        fixes.append("check the name of {} (gst-inspect-1.0 lists the elements) and install its plugin".format(
            ", ".join(unknown)))
    return "; ".join(fixes)


def opencv_has_gstreamer(build_information):
    # type: (str) -> bool
    """True when ``cv2.getBuildInformation()`` text says GStreamer support was built in."""
    match = re.search(r"^\s*GStreamer:\s*(\S+)", build_information, re.M)
    return bool(match) and match.group(1).upper() not in ("NO", "OFF")


def opencv_gstreamer_reason(output):
    # type: (str) -> Optional[str]
    """What OpenCV's GStreamer warnings in ``output`` blame (``module filesrc0 reported: Resource not found.``)."""
    for line in output.splitlines():
        match = _OPENCV_GST.search(line)
        if match and not any(routine in match.group(1) for routine in _ROUTINE):
            return match.group(1).replace("Embedded video playback halted; ", "")
    return None


class _StderrCapture(object):
    """Holds the process's stderr (fd 2, where OpenCV logs) in a file while a pipeline opens, for the reason a
    pipeline failed; on exit it writes back what was captured except OpenCV's GStreamer warnings that are routine,
    or, after a failure, all of them (the error carries their reason)."""

    def __enter__(self):
        self._saved, self._file = None, None
        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no fd 2 (a daemon) or no temp dir: nothing is captured
            if self._file is not None:
                self._file.close()
            self._saved, self._file = None, None
        return self

    def read(self):
        """What was written to stderr since ``__enter__`` (the file offset stays at its end for later writes)."""
        if self._file is None:
            return ""
        self._file.seek(0)
        return self._file.read().decode("utf-8", "replace")

    def __exit__(self, exc_type, exc, tb):
        if self._saved is None:
            return False
        output = self.read()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.close()
        kept = [line for line in output.splitlines(True) if not _OPENCV_GST.search(line)
                or (exc_type is None and not any(routine in line for routine in _ROUTINE))]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
        return False


class GstSource(VideoSource):
    """A VideoSource over a GStreamer pipeline, opened with OpenCV's GStreamer backend (CAP_GSTREAMER).

    Iteration and closing are VideoSource's (the iteration ends at end of stream); only the opening differs (the
    default backend may pick FFmpeg): elements this machine lacks are refused before OpenCV would start the
    pipeline (and, for a missing source, wait forever), and a pipeline that fails to start says why in one line.
    """

    def __init__(self, pipeline, name, kind="gstreamer"):
        cv2 = require("cv2", "reading GStreamer pipelines")
        self.pipeline = pipeline  # before opening: the errors name it
        missing = missing_elements(pipeline)
        if missing:
            raise InputError("cannot start the GStreamer pipeline for {}: this machine's GStreamer has no {}: {}; "
                             "the pipeline: {}".format(name, ", ".join(missing), _missing_fix(missing),
                                                       hide_credentials(pipeline)))
        self._output = _StderrCapture()
        with self._output:
            VideoSource.__init__(self, pipeline, name, kind, api=cv2.CAP_GSTREAMER)

    def _reason(self):
        reason = opencv_gstreamer_reason(self._output.read())
        return " ({})".format(hide_credentials(reason)) if reason else ""

    def _open_error(self):
        return ("OpenCV could not start the GStreamer pipeline for {}{}: check the file, the stream's URL and "
                "credentials or the camera, and the codec (--gst-codec h264|h265; ffprobe shows it), then test the "
                "pipeline with gst-launch-1.0, appsink replaced by fakesink: {}".format(
                    self.name, self._reason(), hide_credentials(self.pipeline)))

    def _empty_error(self):
        return ("the GStreamer pipeline for {} started but delivered no frame{}: test it with gst-launch-1.0, "
                "appsink replaced by fakesink: {}".format(self.name, self._reason(), hide_credentials(self.pipeline)))


def open_gst_source(spec, software=False, **options):
    """Open ``spec`` (see ``gst_source_for``; options go there) as a frame source through GStreamer;
    ``software=True`` plays it with the software stand-ins (``software_pipeline``), on any PC."""
    cv2 = require("cv2", "reading GStreamer pipelines")
    if not opencv_has_gstreamer(cv2.getBuildInformation()):
        raise InputError("this OpenCV ({}) was built without GStreamer: on a Jetson use JetPack's python3-opencv "
                         "(apt), not pip's opencv-python".format(cv2.__version__))
    text = str(spec).strip()
    pipeline = gst_source_for(text, **options)
    return GstSource(software_pipeline(pipeline) if software else pipeline,
                     "gstreamer pipeline" if "!" in text else hide_credentials(text))


# the source-kind contract of edgecsp.runtime.inputs
open_spec = open_gst_source


def check_spec(spec, software=False, **options):
    """A spec with no Jetson pipeline fails here, before the model is loaded."""
    gst_source_for(spec, **options)
