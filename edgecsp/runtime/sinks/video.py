"""A sink writing the annotated frames as a video (``--save out.mp4``), one file per stream."""
import os

from edgecsp.runtime.h264 import open_video_writer
from edgecsp.runtime.sinks.base import Sink

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")


class VideoSink(Sink):
    """Annotated BGR frames at the source's frame rate: H.264 through PyAV (browser-playable) where it is
    installed, else OpenCV's mp4v; the file is renamed into place on close."""

    option = "--save"
    role = "annotated output"
    draws = True

    def __init__(self, path, codec="auto"):
        Sink.__init__(self, path)
        self.codec = codec
        self._writers = []

    @classmethod
    def accepts(cls, path):
        return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS

    @classmethod
    def describe(cls):
        return "use a video path ({})".format(", ".join(VIDEO_EXTENSIONS))

    def open(self, sources, names):
        Sink.open(self, sources, names)
        self._writers = []
        for path, source in zip(self.paths, sources):  # opened now: a path that cannot be written fails here
            self._writers.append(open_video_writer(path, fps=source.fps, codec=self.codec))

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
