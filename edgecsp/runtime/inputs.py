"""The source kinds ``edgecsp infer`` can open, registered in ``SOURCE_KINDS`` (one line per kind).

A kind is a module with ``open_spec(spec, **options) -> Source`` and ``check_spec(spec, **options)`` (the checks that can
fail before any model is loaded); it is imported on first use. ``opencv`` (files, images, folders, cameras,
URLs through OpenCV) is the default; ``gst`` opens Jetson GStreamer pipelines. Adding a source kind (say RTSP
with reconnect): a module under ``edgecsp/runtime`` with those two functions, and its line here.
Python 3.6 compatible.
"""
import contextlib
import importlib
from collections import OrderedDict

from edgecsp.validate import choice

SOURCE_KINDS = OrderedDict([
    ("opencv", "edgecsp.runtime.sources"),
    ("gst", "edgecsp.runtime.gstreamer"),
])
DEFAULT_KIND = "opencv"


def source_kind(kind):
    """The module implementing source kind ``kind``; InputError listing the kinds otherwise."""
    return importlib.import_module(SOURCE_KINDS[choice(kind, "the source kind", tuple(SOURCE_KINDS))])


def check_sources(specs, kind=DEFAULT_KIND, **options):
    """Run the kind's early checks on every spec (a spec that cannot work fails before the model loads)."""
    module = source_kind(kind)
    for spec in specs:
        module.check_spec(spec, **options)


@contextlib.contextmanager
def open_sources(specs, kind=DEFAULT_KIND, **options):
    """``with open_sources(specs) as sources:`` one open Source per spec (Source objects pass through), all
    closed on exit."""
    from edgecsp.runtime.sources import Source

    module = source_kind(kind)
    with contextlib.ExitStack() as stack:
        yield [spec if isinstance(spec, Source) else stack.enter_context(module.open_spec(spec, **options))
               for spec in specs]
