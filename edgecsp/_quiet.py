"""Keep other libraries' chatter out of edgecsp's output, where edgecsp drives them.

A command prints its own lines, and a failing one its one error line (STYLE.md §12); FFmpeg's messages about a
broken video (through OpenCV), NNCF's INFO lines and progress bars, ONNX Runtime's advice to pre-process a model
edgecsp has pre-processed are not the user's to act on. Each is turned down only around the call edgecsp makes
or, for OpenCV's FFmpeg, through the environment variable it reads (set only where the user has not set it:
export ``OPENCV_FFMPEG_LOGLEVEL=16`` to see FFmpeg's errors again). Standard library only, Python 3.6.
"""
import contextlib
import logging
import os

# the FFmpeg log level of OpenCV's video backend (read when that backend is first used; -8 = AV_LOG_QUIET):
# edgecsp checks every read and reports a video it cannot open or that ends early in its own words. OpenCV's own
# log keeps its level: its GStreamer warnings are where edgecsp.runtime.gstreamer finds why a pipeline failed
OPENCV_ENVIRONMENT = (("OPENCV_FFMPEG_LOGLEVEL", "-8"),)


def quiet_opencv_environment(environ=None):
    """Set the log level of OpenCV's FFmpeg backend in ``environ`` (default ``os.environ``) where unset."""
    environ = os.environ if environ is None else environ
    for key, value in OPENCV_ENVIRONMENT:
        environ.setdefault(key, value)


@contextlib.contextmanager
def quiet_logger(name, level=logging.ERROR):
    """Raise logger ``name`` and its handlers to ``level`` for the block; their levels are restored after."""
    logger = logging.getLogger(name)
    saved = (logger.level, [(handler, handler.level) for handler in logger.handlers])
    logger.setLevel(max(level, logger.level))
    for handler in logger.handlers:
        handler.setLevel(max(level, handler.level))
    try:
        yield logger
    finally:
        logger.setLevel(saved[0])
        for handler, handler_level in saved[1]:
            handler.setLevel(handler_level)


@contextlib.contextmanager
def quiet_rich_console():
    """Silence rich's shared console in the block: the progress bars of libraries built on rich (NNCF) that draw
    on it; anything else printed still shows. Nothing to do without rich."""
    try:
        import rich
    except ImportError:
        yield
        return
    console = rich.get_console()
    saved = console.quiet
    console.quiet = True
    try:
        yield
    finally:
        console.quiet = saved


class _Drop(logging.Filter):
    def __init__(self, prefixes):
        logging.Filter.__init__(self)
        self.prefixes = tuple(prefixes)

    def filter(self, record):
        return not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def dropped_root_warnings(*prefixes):
    """Drop the root logger's records whose message starts with one of ``prefixes`` (``logging.warning(...)``
    calls in a library), and keep such calls from installing a stderr handler on a root logger without any
    (``logging.basicConfig``, which ``logging.warning`` runs then, would print every later warning too)."""
    root = logging.getLogger()
    drop, guard = _Drop(prefixes), None
    root.addFilter(drop)
    if not root.handlers:
        guard = logging.NullHandler()
        root.addHandler(guard)
    try:
        yield
    finally:
        root.removeFilter(drop)
        if guard is not None:
            root.removeHandler(guard)
