"""A sink writing YOLO label files (``--save-txt DIR``), as Ultralytics' ``save_txt`` with ``save_conf`` does.

One ``.txt`` per image (``<image stem>.txt``) or per video frame (``<video stem>_<frame>.txt``, ``frame`` 0-based as
in the JSON lines), each written atomically; a frame with nothing found gets an empty file. A detector's line is
``class cx cy w h score`` with the box normalised by the frame's width and height; a classifier's lines are
``score name``, best first. Python 3.6 compatible; numpy only.
"""
import os
import re

from edgecsp._files import atomic_output
from edgecsp.errors import InputError
from edgecsp.runtime.sinks.base import Sink

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def yolo_lines(det, width, height):
    """A Detections (pixels of a ``width`` x ``height`` frame) as YOLO lines ``class cx cy w h score``."""
    lines = []
    for (x1, y1, x2, y2), score, cid in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist()):
        row = (int(cid), (x1 + x2) / 2.0 / width, (y1 + y2) / 2.0 / height, (x2 - x1) / float(width),
               (y2 - y1) / float(height), score)
        lines.append(("%g " * len(row)).rstrip() % row)
    return lines


def class_lines(result, names):
    """A Classification as ``score name`` lines, best first (Ultralytics' classify ``save_txt``)."""
    names = list(names)
    return ["{:.2f} {}".format(score, names[cid] if 0 <= cid < len(names) else cid)
            for cid, score in zip(result.class_ids.tolist(), result.scores.tolist())]


class LabelFolderSink(Sink):
    """YOLO ``.txt`` files in a folder (see the module docstring); several streams: ``DIR-0``, ``DIR-1`` ..."""

    option = "--save-txt"
    role = "labels"

    @classmethod
    def accepts(cls, path):
        return bool(path)

    @classmethod
    def describe(cls):
        return "give a folder for the label files"

    def open(self, sources, names):
        Sink.open(self, sources, names)
        self.names = list(names)
        for folder in self.paths:
            if os.path.isfile(folder):
                raise InputError("--save-txt {} is an existing file: give a folder for the label files".format(
                    folder))
        self._per_image = [source.kind in ("image", "folder") for source in sources]
        self._stems = [self._stem_of(source) for source in sources]
        self._used = [set() for _ in sources]
        self._written = [0] * len(sources)

    @staticmethod
    def _stem_of(source):
        if source.kind == "camera":
            return "camera" + str(source.name)
        stem = os.path.splitext(os.path.basename(str(source.name).rstrip("/")))[0]
        return _UNSAFE.sub("_", stem).strip("_") or source.kind

    def _name(self, stream, frame):
        if not self._per_image[stream]:
            return "{}_{}.txt".format(self._stems[stream], frame.index)
        stem, ext = os.path.splitext(os.path.basename(frame.name))
        name = (stem or "frame") + ".txt"
        if name in self._used[stream]:  # a.jpg and a.png in one folder: the second keeps its extension
            name = "{}_{}.txt".format(stem, ext.lstrip("."))
        self._used[stream].add(name)
        return name

    def write(self, stream, frame, det, drawn=None):
        height, width = frame.image_bgr.shape[:2]
        lines = yolo_lines(det, width, height) if hasattr(det, "boxes") else class_lines(det, self.names)
        path = os.path.join(self.paths[stream], self._name(stream, frame))
        with atomic_output(path) as tmp:
            with open(tmp, "w") as handle:
                handle.write("".join(line + "\n" for line in lines))
        self._written[stream] += 1

    def close(self):
        return [(self.role, p) for p, n in zip(self.paths, self._written) if n]
