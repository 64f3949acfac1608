"""A sink showing the annotated frames in a window (``--show``), one window per stream, as Ultralytics' ``show``.

It needs a display and an OpenCV built with a GUI backend (``opencv-python``, not ``opencv-python-headless``);
``open`` checks both before the first frame and raises a one-line InputError otherwise. Images stay on screen
for 300 ms, video frames for 1 ms. Python 3.6 compatible; OpenCV.
"""
import os
import re
import sys

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.sinks.base import Sink

_IMAGE_WAIT_MS, _VIDEO_WAIT_MS = 300, 1


def display_problem(build_info=None, environ=None, platform=None):
    """Why windows cannot be shown here (a sentence), or None when they can. ``build_info``: OpenCV's
    ``getBuildInformation()`` (default: this OpenCV's), ``environ`` and ``platform`` those of this process."""
    if build_info is None:
        build_info = require("cv2", "showing frames").getBuildInformation()
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if _gui_backend(build_info) is False:
        return ("this OpenCV has no GUI backend (opencv-python-headless?): pip install opencv-python, or drop --show "
                "and use --save")
    if platform.startswith("linux") and not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return ("there is no display (DISPLAY is not set: a headless machine or an SSH session without -X): drop "
                "--show and use --save, or run it on the device's desktop")
    return None


def _gui_backend(build_info):
    """Whether OpenCV's build information lists a GUI backend (None: it has no GUI section). OpenCV 4.5+ names it
    on the ``GUI:`` line (NONE when headless); 4.1 (JetPack 4.6) leaves that line empty and lists each backend
    below it with YES or NO."""
    lines = build_info.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^([ \t]*)GUI:[ \t]*(\S*)", line)
        if not match:
            continue
        if match.group(2):
            return match.group(2).upper() != "NONE"
        indent, found = len(match.group(1)), False
        for below in lines[i + 1:]:
            if below.strip() and len(below) - len(below.lstrip()) <= indent:
                break
            found = found or bool(re.search(r":\s*YES\b", below))
        return found
    return None


class WindowSink(Sink):
    """``cv2.imshow`` of every annotated frame, in a window named after its source."""

    option = "--show"
    role = "window"
    draws = True
    stage = None  # waiting on the window (300 ms per image) is not work the per-stage times should show

    def open(self, sources, names):
        self.paths = [None] * len(sources)
        self._cv2 = require("cv2", "showing frames")
        problem = display_problem(self._cv2.getBuildInformation())
        if problem:
            raise InputError("--show: " + problem)
        self._titles = ["edgecsp: {}".format(source.name) for source in sources]
        self._waits = [_IMAGE_WAIT_MS if s.kind in ("image", "folder") else _VIDEO_WAIT_MS for s in sources]
        self._opened = set()

    def write(self, stream, frame, det, drawn=None):
        title = self._titles[stream]
        if title not in self._opened:
            try:
                self._cv2.namedWindow(title, self._cv2.WINDOW_NORMAL)  # resizable: 4K frames fit a laptop screen
            except self._cv2.error as exc:  # a GUI backend the build information did not reveal as missing
                raise InputError("--show: OpenCV cannot open a window ({}): drop --show and use --save".format(
                    str(exc).strip().splitlines()[-1] if str(exc).strip() else "no GUI backend"))
            self._opened.add(title)
        self._cv2.imshow(title, drawn)
        self._cv2.waitKey(self._waits[stream])

    def close(self):
        self.abort()
        return []

    def abort(self):
        cv2 = getattr(self, "_cv2", None)
        for title in getattr(self, "_opened", ()):
            try:
                cv2.destroyWindow(title)
            except Exception:  # noqa: BLE001 -- a window the user closed already
                pass
        self._opened = set()
