"""The sink protocol (see ``edgecsp.runtime.sinks``) and the per-stream path rule. Python 3.6 compatible."""
import os


class Sink(object):
    """Base of every sink (see the module docstring for the protocol)."""

    option = None  # the `edgecsp infer` flag whose value this sink writes ("--save", "--save-json"), None for none
    role = "output"  # how the summary names what it wrote
    draws = False  # wants the annotated frame
    stage = "write"  # the StageTimer stage its writes count in (None: not timed)

    def __init__(self, path=None):
        self.path = str(path) if path is not None else None
        self.paths = []  # one per stream, set by open()

    @classmethod
    def accepts(cls, path):
        # type: (str) -> bool
        """True when this sink writes ``path`` (for ``sink_for``)."""
        return False

    @classmethod
    def describe(cls):
        # type: () -> str
        """What ``path`` this sink takes, for the error that lists the choices."""
        return cls.__name__

    def open(self, sources, names):
        """Prepare the outputs of ``sources`` (a list, one per stream) of a model with class ``names``; InputError
        when they cannot be written."""
        self.paths = [stream_path(self.path, i, len(sources)) for i in range(len(sources))]

    def write(self, stream, frame, det, drawn=None):
        """One frame of stream ``stream``: its Frame, Detections and (``draws``) the annotated BGR image."""
        raise NotImplementedError

    def close(self):
        """Finish: the outputs appear now, complete. Returns ``[(role, path)]`` of what was written."""
        return []

    def abort(self):
        """Drop whatever was written; the destinations stay as they were. Safe after close(), and after an
        ``open`` that failed half-way (the pipeline aborts a sink whose open raised)."""


def stream_path(path, index, streams):
    """The output path of stream ``index``: ``path`` itself for one stream, ``stem-<index>.ext`` for several."""
    if not path or streams == 1:
        return path
    stem, ext = os.path.splitext(path)
    return "{}-{}{}".format(stem, index, ext)
