"""Where the pipeline's results go: sinks, one file each, registered in ``SINKS``.

A sink receives every frame of every stream in frame order (per stream) and owns its outputs: it opens them
in ``open(sources)`` (before the first frame, so a bad path fails before inference), writes in ``write`` and
makes them appear atomically in ``close()``; ``abort()`` leaves nothing behind. ``draws = True`` asks for the
annotated frame (drawn once per frame, only when some sink wants it). Python 3.6 compatible; numpy + OpenCV.

Adding a sink: a new module here with a :class:`Sink` subclass, and its class in ``SINKS``. ``sink_for(option,
path)`` picks the first registered sink that takes ``option`` (the CLI flag) and ``accepts(path)``.
"""
from edgecsp.errors import InputError
from edgecsp.runtime.sinks.base import Sink, stream_path
from edgecsp.runtime.sinks.callback import CallbackSink
from edgecsp.runtime.sinks.images import ImageFileSink, ImageFolderSink
from edgecsp.runtime.sinks.jsonl import JsonlSink
from edgecsp.runtime.sinks.labels import LabelFolderSink
from edgecsp.runtime.sinks.video import VIDEO_EXTENSIONS, VideoSink
from edgecsp.runtime.sinks.window import WindowSink, display_problem

# the registry: sink_for tries them in this order (WindowSink takes no path: ``--show`` makes one directly)
SINKS = (VideoSink, ImageFileSink, ImageFolderSink, JsonlSink, LabelFolderSink)


def sink_for(option, path):
    """The registered sink that writes ``path`` given with ``option`` (e.g. "--save", "out.mp4")."""
    for cls in SINKS:
        if cls.option == option and cls.accepts(path):
            return cls(path)
    takes = [cls for cls in SINKS if cls.option == option]
    if not takes:
        raise InputError("no output writes {} values: known options are {}".format(
            option, ", ".join(sorted(set(c.option for c in SINKS if c.option)))))
    raise InputError("{} {}: {}".format(option, path, "; or ".join(c.describe() for c in takes)))


__all__ = ["CallbackSink", "ImageFileSink", "ImageFolderSink", "JsonlSink", "LabelFolderSink", "SINKS", "Sink",
           "VIDEO_EXTENSIONS", "VideoSink", "WindowSink", "display_problem", "sink_for", "stream_path"]
