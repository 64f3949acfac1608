"""Frame sources: a video file, one image, a folder of images, a camera or a network stream.

``open_source(spec)`` picks the kind from the spec and returns a :class:`Source`: iterate it for
:class:`Frame` records (BGR uint8 images, as OpenCV decodes them), use it as a context manager to release the
capture. ``length`` (frames, when known) feeds a progress bar and ``fps`` a video writer.

Problems the user can fix raise :class:`~edgecsp.errors.InputError` with a one-line message, as early as
possible: a video that cannot be opened or yields no first frame fails in ``open_source``, before any model is
loaded. Python 3.6 compatible; OpenCV is imported on first use.
"""
import logging
import os
import re
from typing import NamedTuple

import numpy as np

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.validate import ascii_digits

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# videos a folder source passes over, naming them in a warning (a folder is a sequence of images)
VIDEO_FILE_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
_NAMED = 5  # videos a warning names before "and N more"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOW = ("pass a video file, an image, a folder of images, a camera index such as 0, or an rtsp:// or http:// URL")


class Frame(NamedTuple):
    """One frame: its 0-based position in the source, the BGR uint8 image and a display name."""

    index: int
    image_bgr: np.ndarray
    name: str


def _cv2():
    return require("cv2", "reading images and videos")


def _natural_key(name):
    # frame_2.png before frame_10.png: numbered image sequences are the common case for folders.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_image(path):
    """Read an image file as BGR uint8; InputError when it is missing or not decodable."""
    cv2 = _cv2()
    try:
        # np.fromfile + imdecode instead of imread: works with non-ASCII paths on every platform.
        data = np.fromfile(path, dtype=np.uint8)
    except (IOError, OSError) as exc:
        raise InputError("cannot read image {}: {}; check the path and its permissions".format(path, exc))
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError("cannot decode image {}: it is empty, corrupt or not an image OpenCV reads; "
                         "re-save it as JPEG or PNG or remove it".format(path))
    return image


class Source(object):
    """Base of all sources: iterable of Frame, context manager, with ``kind``, ``name``, ``length``, ``fps``.

    ``length`` is the number of frames when known (files in a folder; the container's count for a video,
    which can be an estimate), else None. ``fps`` is the source frame rate when known, else None.
    """

    kind = "source"

    def __init__(self, name, length=None, fps=None):
        self.name = name
        self.length = length
        self.fps = fps
        self.frames_read = 0
        self.skipped = 0  # images passed over because they could not be decoded (folders, skip_unreadable)
        self.truncated = False  # set when a video ends before the frame count its container reports

    def __iter__(self):
        raise NotImplementedError

    def close(self):
        """Release the underlying capture; safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __repr__(self):
        return "<{} {} {!r} length={} fps={}>".format(self.__class__.__name__, self.kind, self.name, self.length,
                                                      self.fps)


class ImageSource(Source):
    """One image or the images of a folder, in natural order (``img2`` before ``img10``)."""

    def __init__(self, paths, name, kind, skip_unreadable=False, preloaded=None):
        Source.__init__(self, name, length=len(paths))
        self.kind = kind
        self.paths = list(paths)
        self.skip_unreadable = skip_unreadable
        self._preloaded = dict(preloaded or {})  # path -> image already decoded while opening

    def __iter__(self):
        index = 0
        for path in self.paths:
            try:
                image = self._preloaded.pop(path, None)
                if image is None:
                    image = read_image(path)
            except InputError as exc:
                if not self.skip_unreadable:
                    raise
                log.warning("skipping %s", exc)
                self.skipped += 1
                continue
            self.frames_read += 1
            yield Frame(index, image, os.path.basename(path))
            index += 1


class VideoSource(Source):
    """A video file, camera or stream read with cv2.VideoCapture; the first frame is read when opening.

    Iterate it once. A file that stops before its reported frame count (truncated recording) ends the
    iteration early with a warning rather than an error: the frames before the damage are still useful.
    """

    def __init__(self, target, name, kind, api=None):
        cv2 = _cv2()
        Source.__init__(self, name)
        self.kind = kind
        # api: an OpenCV backend such as cv2.CAP_GSTREAMER (None lets OpenCV pick, usually FFmpeg)
        self._cap = cv2.VideoCapture(target) if api is None else cv2.VideoCapture(target, api)
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(self._open_error())
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        # Cameras and streams report 0, -1 or garbage for the count; only a file has a length.
        self.length = int(count) if kind == "video" and np.isfinite(count) and count > 0 else None
        self.fps = float(fps) if np.isfinite(fps) and 0 < fps < 1000 else None
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self._cap.release()
            raise InputError(self._empty_error())
        self._first = frame

    def _open_error(self):
        if self.kind == "camera":
            return ("cannot open camera {}: check that it is connected, not used by another program and that "
                    "you may access /dev/video*; try another index".format(self.name))
        if self.kind == "stream":
            return ("cannot open stream {}: check the URL, the network and the credentials (test it with "
                    "ffplay or VLC)".format(self.name))
        return ("OpenCV cannot open {} as a video: it is not a video, it is truncated (an interrupted recording) "
                "or its codec is unsupported; check it with ffprobe or re-encode it with "
                "ffmpeg -i IN -c:v libx264 OUT.mp4".format(self.name))

    def _empty_error(self):
        if self.kind == "video":
            return ("video {} yields no frames (the container reports {}): it is empty, truncated or its codec is "
                    "unsupported; re-encode it with ffmpeg -i IN -c:v libx264 OUT.mp4".format(
                        self.name, self.length or 0))
        return "{} {} opened but delivered no frame: check the device or the stream".format(self.kind, self.name)

    def __iter__(self):
        if self._cap is None:
            return
        display = os.path.basename(self.name) if self.kind == "video" else self.name
        index = 0
        frame, self._first = self._first, None
        while frame is not None:
            self.frames_read += 1
            yield Frame(index, frame, display)
            index += 1
            ok, frame = self._cap.read()
            if not ok:
                frame = None
        if self.kind == "video" and self.length and index < self.length:
            self.truncated = True
            log.warning("video %s ended after %d of the %d frames its container reports: the file may be "
                        "truncated", self.name, index, self.length)

    def close(self):
        if self._cap is not None:
            self._cap.release()
            self._cap = None
            self._first = None


def _hide_credentials(url):
    # Stream names end up in logs and JSONL files; rtsp://user:password@host must not.
    return re.sub(r"//[^/@]*@", "//***@", url)


def list_images(folder):
    """Image files directly in ``folder`` (IMAGE_EXTENSIONS, case-insensitive), in natural order."""
    names = [n for n in os.listdir(folder)
             # dot files include macOS "._x.jpg" resource forks, which are not images
             if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    paths = [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]
    return [p for p in paths if os.path.isfile(p)]


def list_videos(folder):
    """Video files directly in ``folder`` (VIDEO_FILE_EXTENSIONS, case-insensitive), in natural order."""
    names = [n for n in os.listdir(folder) if not n.startswith(".")
             and os.path.splitext(n)[1].lower() in VIDEO_FILE_EXTENSIONS]
    return [n for n in sorted(names, key=_natural_key) if os.path.isfile(os.path.join(folder, n))]


def videos_note(folder):
    """"N videos (a.mp4, b.avi)" for the videos in ``folder``, or "" when it has none."""
    videos = list_videos(folder)
    if not videos:
        return ""
    shown = ", ".join(videos[:_NAMED]) + (" and {} more".format(len(videos) - _NAMED) if len(videos) > _NAMED else "")
    return "{} video{} ({})".format(len(videos), "" if len(videos) == 1 else "s", shown)


def open_source(spec, skip_unreadable=False):
    """Open ``spec`` as a frame source and return a :class:`Source` (use it in a ``with`` block).

    ``spec``: a video file, an image file, a folder of images (IMAGE_EXTENSIONS, not recursive), a camera
    index (``0`` or ``"0"``) or a URL (``rtsp://``, ``http://`` ...). With ``skip_unreadable`` a folder skips
    images that fail to decode (with a warning; ``Source.skipped`` counts them) instead of raising InputError.
    A folder is a sequence of images: the videos in it are not read, and a warning names them.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("no source given: " + _HOW)
    spec = spec.strip()
    if ascii_digits(spec) and not os.path.exists(spec):
        return VideoSource(int(spec), spec, "camera")
    if _URL.match(spec):
        return VideoSource(spec, _hide_credentials(spec), "stream")
    path = os.path.expanduser(spec)
    if not os.path.exists(path):
        raise InputError("source {} does not exist: {}".format(spec, _HOW))
    if os.path.isdir(path):
        paths = list_images(path)
        videos = videos_note(path)
        if not paths:
            raise InputError("folder {} contains no images ({}){}: add images or pass a video file".format(
                spec, ", ".join("*" + e for e in IMAGE_EXTENSIONS), ", only " + videos if videos else ""))
        if videos:
            log.warning("folder %s: reading its %d images, not its %s: pass each video as a source of its own",
                        spec, len(paths), videos)
        return ImageSource(paths, path, "folder", skip_unreadable)
    if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS:
        image = read_image(path)  # fail now, not after the model has been loaded
        return ImageSource([path], path, "image", preloaded={path: image})
    if os.path.getsize(path) == 0:
        raise InputError("video {} is an empty file: record or copy it again".format(spec))
    return VideoSource(path, path, "video")


# the source-kind contract of edgecsp.runtime.inputs
open_spec = open_source


def check_spec(spec, **options):
    """Nothing to check ahead: ``open_source`` itself fails early (before the model) on a bad spec."""
