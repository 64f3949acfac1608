"""A sink writing the detections of every frame as JSON lines (``--save-json out.jsonl``), one file per stream."""
from edgecsp.runtime.layouts.classify import class_records
from edgecsp.runtime.sinks.base import Sink
from edgecsp.runtime.writers import JsonlWriter


class JsonlSink(Sink):
    """``{"frame", "source", "detections": [{"class_id", "name", "score", "box"}]}`` per line (see JsonlWriter); a
    classifier's lines have ``"classes": [{"class_id", "name", "score"}]`` instead, best first."""

    option = "--save-json"
    role = "detections"

    def __init__(self, path):
        Sink.__init__(self, path)
        self.names = None
        self._writers = []

    @classmethod
    def accepts(cls, path):
        return bool(path)

    @classmethod
    def describe(cls):
        return "give a file path such as detections.jsonl"

    def open(self, sources, names):
        Sink.open(self, sources, names)
        self.names = list(names)
        self._writers = []
        for path in self.paths:
            self._writers.append(JsonlWriter(path))  # opens the staged file now: a bad path fails here

    def write(self, stream, frame, det, drawn=None):
        if hasattr(det, "boxes"):
            self._writers[stream].write(frame.index, frame.name, det, self.names)
        else:  # a classifier's Classification
            self._writers[stream].write_record({"frame": int(frame.index), "source": str(frame.name),
                                                "classes": class_records(det, self.names)})

    def close(self):
        for writer in self._writers:
            writer.close()
        return [(self.role, p) for p in self.paths]

    def abort(self):
        for writer in self._writers:
            writer.abort()
