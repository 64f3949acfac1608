"""A sink writing the annotated frames as a video (``--save out.mp4``), one file per stream."""
import os

from edgecsp.runtime.sinks.base import Sink
from edgecsp.runtime.writers import VideoWriter

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")


class VideoSink(Sink):
    """Annotated BGR frames at the source's frame rate (mp4v), renamed into place on close."""

    option = "--save"
    role = "annotated output"
    draws = True

    def __init__(self, path, fourcc="mp4v"):
        Sink.__init__(self, path)
        self.fourcc = fourcc
        self._writers = []

    @classmethod
    def accepts(cls, path):
        return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS

    @classmethod
    def describe(cls):
        return "use a video path ({})".format(", ".join(VIDEO_EXTENSIONS))

    def open(self, sources, names):
        Sink.open(self, sources, names)
        self._writers = [VideoWriter(path, fps=source.fps, fourcc=self.fourcc)
                         for path, source in zip(self.paths, sources)]

    def write(self, stream, frame, det, drawn=None):
        self._writers[stream].write(drawn)

    def close(self):
        outputs = []
        for writer in self._writers:
            path = writer.close()  # None when no frame was written
            if path is not None:
                outputs.append((self.role, path))
        return outputs

    def abort(self):
        for writer in self._writers:
            writer.abort()
