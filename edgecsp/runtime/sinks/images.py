"""A sink writing one annotated image per input frame into a folder (``--save out_dir`` for image sources)."""
import os

from edgecsp._files import atomic_output
from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.sinks.base import Sink


class ImageFolderSink(Sink):
    """``<folder>/<input stem>.jpg`` per frame, each written atomically; for image and folder sources."""

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
        cv2 = require("cv2", "writing images")
        base = os.path.splitext(os.path.basename(frame.name))[0] or "frame"
        path = os.path.join(self.paths[stream], base + ".jpg")
        with atomic_output(path) as tmp:
            if not cv2.imwrite(tmp, drawn):
                raise InputError("cannot write {}: check the folder is writable".format(path))
        self._written[stream] += 1

    def close(self):
        return [(self.role, p) for p, n in zip(self.paths, self._written) if n]
