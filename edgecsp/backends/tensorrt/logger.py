"""TensorRT's log, kept: a ``trt.ILogger`` whose last errors go into edgecsp's one-line failure messages.

The logger class is made at run time (its base class comes from the tensorrt module); the message is a pure
function, tested without TensorRT. Python 3.6.
"""
from typing import Sequence


def build_failure_message(trt_version, errors):
    # type: (str, Sequence[str]) -> str
    """The one line for a failed ``build_serialized_network``: TensorRT's own last errors, and the workspace
    hint only when they point at memory."""
    said = " | ".join(" ".join(str(e).split()) for e in errors)[-600:]
    memory = any(word in said.lower() for word in ("memory", "workspace", "insufficient", "out of"))
    return "TensorRT {} failed to build the engine: {}{}".format(
        trt_version, said or "TensorRT reported no error (run with a VERBOSE logger for its build log)",
        "; on a Jetson raise --workspace (the GPU shares the CPU's memory)" if memory else "")


def make_logger(trt, echo=None, echo_errors=True):
    """A ``trt.ILogger`` that keeps TensorRT's last error messages (``errors``) for the one-line failure, and
    prints warnings and errors to stderr as TensorRT's own Logger(WARNING) would (warnings only with
    ``echo_errors=False``, for a caller whose one line quotes the errors)."""
    import collections
    import sys

    severity = trt.ILogger.Severity
    errors_at = (int(severity.INTERNAL_ERROR), int(severity.ERROR))
    shown_at = (errors_at if echo_errors else ()) + (int(severity.WARNING),)
    echo = echo or (lambda text: sys.stderr.write(text + "\n"))

    class CapturingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = collections.deque(maxlen=4)

        def log(self, level, msg):
            if int(level) in errors_at:
                self.errors.append(str(msg))
            if int(level) in shown_at:
                echo("[TensorRT] " + str(msg))

    return CapturingLogger()
