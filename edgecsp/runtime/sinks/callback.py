"""A sink that calls a function for every frame: ``callback(stream_index, frame, detections)``, in order."""
from edgecsp.runtime.sinks.base import Sink


class CallbackSink(Sink):
    """Calls ``callback`` with each frame before it is drawn on (the frame is the source's, untouched)."""

    role = "callback"
    stage = None

    def __init__(self, callback):
        Sink.__init__(self)
        self.callback = callback

    def write(self, stream, frame, det, drawn=None):
        self.callback(stream, frame, det)
