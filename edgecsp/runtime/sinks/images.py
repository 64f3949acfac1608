"""Sinks writing annotated images: one per input image into a folder (``--save out_dir`` for image and folder
sources), or the one annotated image of an image source (``--save out.png``)."""
import os

from edgecsp._files import atomic_output
from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.sinks.base import Sink
from edgecsp.runtime.sources import IMAGE_EXTENSIONS


def _write_image(path, image):
    cv2 = require("cv2", "writing images")
    with atomic_output(path) as tmp:
        if not cv2.imwrite(tmp, image):
            raise InputError("cannot write {}: check the folder is writable and that OpenCV writes {} "
                             "files".format(path, os.path.splitext(path)[1] or "such"))


class ImageFolderSink(Sink):
    """``<folder>/<input name>`` per frame (same name and format as the input), each written atomically; for
    image and folder sources."""

    option = "--save"
    role = "annotated output"
    draws = True
    SOURCE_KINDS = ("image", "folder")

    @classmethod
    def accepts(cls, path):
        return not os.path.splitext(str(path))[1]

    @classmethod
    def describe(cls):
        return "a folder (no extension) for annotated images of image or folder sources"

    def open(self, sources, names):
        Sink.open(self, sources, names)
        for source in sources:
            if source.kind not in self.SOURCE_KINDS:
                raise InputError("--save {} is a folder but the source is a {}: give a video path such as "
                                 "out.mp4".format(self.path, source.kind))
        for folder in self.paths:
            if os.path.isfile(folder):
                raise InputError("--save {} is an existing file: give a folder for annotated images".format(folder))
        self._written = [0] * len(sources)

    def write(self, stream, frame, det, drawn=None):
        base, ext = os.path.splitext(os.path.basename(frame.name))
        ext = ext if ext.lower() in IMAGE_EXTENSIONS else ".jpg"
        _write_image(os.path.join(self.paths[stream], (base or "frame") + ext), drawn)
        self._written[stream] += 1

    def close(self):
        return [(self.role, p) for p, n in zip(self.paths, self._written) if n]


class ImageFileSink(Sink):
    """The annotated image of an image source, written atomically to the path given, in the format its extension
    names (``--save out.png``)."""

    option = "--save"
    role = "annotated output"
    draws = True

    @classmethod
    def accepts(cls, path):
        return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS

    @classmethod
    def describe(cls):
        return "an image path ({}) for the annotated image of an image source".format(", ".join(IMAGE_EXTENSIONS))

    def open(self, sources, names):
        Sink.open(self, sources, names)
        for source in sources:
            if source.kind == "folder":
                raise InputError("--save {} is an image but the source {} is a folder: give a folder (a path "
                                 "without extension) for its annotated images".format(self.path, source.name))
            if source.kind != "image":
                raise InputError("--save {} is an image but the source is a {}: give a video path such as "
                                 "out.mp4".format(self.path, source.kind))
        for path in self.paths:
            if os.path.isdir(path):
                raise InputError("--save {} is an existing folder: give a file path or another name".format(path))
        self._written = []

    def write(self, stream, frame, det, drawn=None):
        _write_image(self.paths[stream], drawn)
        self._written.append(self.paths[stream])

    def close(self):
        return [(self.role, p) for p in self._written]
