"""The runner interface every backend implements, and the checks they share.

A runner is a context manager: ``__enter__`` loads the artefact, ``__exit__`` releases it. The base class checks
state and inputs once for all backends; a backend implements ``_activate``, ``_deactivate`` and ``_infer``.
Python 3.6 compatible: runners go to the Jetson.
"""
import os
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edgecsp._files import require_file
from edgecsp.errors import InputError
from edgecsp.runtime.meta import FLOAT_NCHW, UINT8_NHWC_BGR, ModelMeta, check_interface
from edgecsp.validate import optional, positive_int


def check_threads(threads):
    # type: (Optional[int]) -> Optional[int]
    """``threads`` if it is None (the engine decides) or a positive int; InputError otherwise."""
    return optional(positive_int, threads, "threads")


class InferHandle(object):
    """One request started by ``runner.submit(batch)``: ``result()`` waits for its outputs or raises its error.

    Backends complete it from any thread with ``set_result`` or ``set_error``, or return their own object with
    the same ``result(timeout=None)`` and ``done()``.
    """

    __slots__ = ("_event", "_outputs", "_error")

    def __init__(self):
        self._event = threading.Event()
        self._outputs = None
        self._error = None

    def set_result(self, outputs):
        self._outputs = outputs
        self._event.set()

    def set_error(self, error):
        self._error = error
        self._event.set()

    def done(self):
        # type: () -> bool
        return self._event.is_set()

    def result(self, timeout=None):
        # type: (Optional[float]) -> List[np.ndarray]
        """The outputs, in ``output_names`` order, once the request is done (TimeoutError after ``timeout`` s)."""
        if not self._event.wait(timeout):
            raise TimeoutError("inference request not done after {} s".format(timeout))
        if self._error is not None:
            raise self._error
        return self._outputs


class BaseRunner(object):
    """Runs one artefact. Use as ``with Runner(path) as runner: outputs = runner.infer(batch)``.

    After ``__enter__``: ``meta`` (ModelMeta), ``input_name``, ``input_shape`` (N, C, H, W with None for
    dynamic dimensions) and ``output_names`` (in ``meta.heads`` order, as ``meta.outputs`` lists them).
    ``infer(batch)`` takes a float32 NCHW array and returns one array per output, in ``output_names`` order.

    Several requests in flight (optional): ``set_in_flight(k)`` before ``__enter__``, then ``submit(batch)``
    returns an :class:`InferHandle` at once; ``in_flight`` says how many requests the backend really overlaps.
    A backend that overrides nothing runs each ``submit`` synchronously, so every runner supports the calls.
    """

    ARTEFACT_IS_FILE = True  # False for runners whose "path" names something else (a model on a server)

    def __init__(self, path):
        self.path = require_file(path) if self.ARTEFACT_IS_FILE else str(path)
        self._active = False
        self._requested_in_flight = None  # set_in_flight() not called: synchronous submit
        self._meta = None  # type: Optional[ModelMeta]
        self._input_name = ""
        self._input_shape = ()  # type: Tuple[Optional[int], ...]
        self._output_names = []  # type: List[str]

    # -- what backends implement -------------------------------------------------------------------------------
    def _activate(self):
        """Load the artefact and call ``self._bind(...)`` with what it found."""
        raise NotImplementedError

    def _deactivate(self):
        """Release what ``_activate`` loaded."""
        raise NotImplementedError

    def _infer(self, batch):
        """Run a checked, C-contiguous float32 batch; return the outputs in ``self.output_names`` order."""
        raise NotImplementedError

    def _submit(self, batch):
        """Start a checked batch; return its handle (an InferHandle or alike). The base runs it now."""
        handle = InferHandle()
        try:
            handle.set_result(self._checked_outputs(self._infer(batch)))
        except Exception as exc:  # the pipeline re-raises it in order, from handle.result()
            handle.set_error(exc)
        return handle

    def _in_flight(self):
        """How many submitted requests the active backend runs at once (1: one after the other)."""
        return 1

    def _wait_all(self):
        """Block until every submitted request is done (backends with requests in flight)."""

    def _max_batch_limit(self):
        """The largest batch a dynamic-batch model takes (a TensorRT profile, a server's max_batch_size); None: any."""
        return None

    # -- shared ------------------------------------------------------------------------------------------------
    def _bind(self, meta, input_name, input_shape, outputs):
        # type: (ModelMeta, str, Sequence[Optional[int]], Sequence) -> None
        """Record the model's interface and check it against its metadata (``check_interface``: MetadataError on a
        mismatch). ``outputs``: ``(name, shape)`` pairs (None for an unknown size), or bare names."""
        pairs = [(o, None) if isinstance(o, str) else (o[0], o[1]) for o in outputs]
        names = check_interface(meta, input_name, input_shape, pairs, os.path.basename(self.path))
        shape = tuple(int(d) if d is not None and not isinstance(d, str) and int(d) > 0 else None for d in input_shape)
        self._meta, self._input_name, self._input_shape, self._output_names = meta, input_name, shape, names

    def _require_active(self):
        if not self._active:
            raise RuntimeError("{}({}) is not active: use it as `with runner: runner.infer(batch)` "
                               "(open_runner(path) returns it unopened)".format(
                                   type(self).__name__, os.path.basename(self.path)))

    @property
    def active(self):
        # type: () -> bool
        return self._active

    @property
    def meta(self):
        # type: () -> ModelMeta
        self._require_active()
        return self._meta

    @property
    def input_name(self):
        # type: () -> str
        self._require_active()
        return self._input_name

    @property
    def input_shape(self):
        # type: () -> Tuple[Optional[int], ...]
        self._require_active()
        return self._input_shape

    @property
    def max_batch(self):
        # type: () -> Optional[int]
        """The largest batch the model takes: its static batch, a backend's limit, or None (any)."""
        self._require_active()
        return self._input_shape[0] if self._input_shape[0] is not None else self._max_batch_limit()

    @property
    def output_names(self):
        # type: () -> List[str]
        self._require_active()
        return list(self._output_names)

    def __enter__(self):
        if self._active:
            raise RuntimeError("{}({}) is already active: enter it once".format(
                type(self).__name__, os.path.basename(self.path)))
        try:
            self._activate()
        except BaseException:
            self._deactivate()  # drop whatever was half loaded
            raise
        self._active = True
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        try:
            self._deactivate()
        finally:
            self._active = False
        return False

    def check_input(self, batch):
        # type: (np.ndarray) -> np.ndarray
        """``batch`` as a C-contiguous array if it fits the model's input; a one-line InputError otherwise."""
        self._require_active()
        want = "({})".format(", ".join("N" if d is None and i == 0 else "?" if d is None else str(d)
                                       for i, d in enumerate(self._input_shape)))
        where = os.path.basename(self.path)
        uint8 = self._meta.input_form == UINT8_NHWC_BGR
        dtype, layout = (np.uint8, "NHWC") if uint8 else (np.float32, "NCHW")
        if not isinstance(batch, np.ndarray):
            raise InputError("{} takes a numpy {} array shaped {}, got {}".format(
                where, np.dtype(dtype).name, want, type(batch).__name__))
        if batch.dtype != dtype:
            if uint8:
                raise InputError("{} takes the letterboxed uint8 NHWC BGR frames (input form {}), got {}: pass "
                                 "edgecsp.runtime.preprocess.preprocess(frames, runner.meta), which gives that "
                                 "form, or build with --input float".format(where, UINT8_NHWC_BGR, batch.dtype))
            raise InputError("{} takes float32 NCHW input shaped {} (input form {}), got {}: preprocess frames with "
                             "the runtime (pixels * meta.scale as float32)".format(where, want, FLOAT_NCHW,
                                                                                  batch.dtype))
        if batch.ndim != 4:
            raise InputError("{} takes a 4-D {} batch shaped {}, got shape {}: add the batch axis "
                             "(batch[None])".format(where, layout, want, batch.shape))
        axes = ((1, "height"), (2, "width"), (3, "channels")) if uint8 else (
            (1, "channels"), (2, "height"), (3, "width"))
        for axis, label in axes:
            expected = self._input_shape[axis]
            if expected is not None and batch.shape[axis] != expected:
                raise InputError("{} takes input shaped {}, got {} ({} {} != {}): letterbox to the model's "
                                 "input size and use {}".format(where, want, batch.shape, label,
                                                                batch.shape[axis], expected, layout))
        if batch.shape[0] < 1:
            raise InputError("{} got an empty batch {}".format(where, batch.shape))
        static_batch = self._input_shape[0]
        if static_batch is not None and batch.shape[0] != static_batch:
            raise InputError("{} has a static batch of {} but got {} images: run them in batches of {}, "
                             "or re-export with `edgecsp export --dynamic-batch`".format(
                                 where, static_batch, batch.shape[0], static_batch))
        return np.ascontiguousarray(batch)

    def infer(self, batch):
        # type: (np.ndarray) -> List[np.ndarray]
        """Run ``batch`` (what ``preprocess`` gives for ``meta``: float32 NCHW, or uint8 NHWC BGR frames for a
        uint8-input artefact); one array per output in ``output_names`` order."""
        batch = self.check_input(batch)
        return self._checked_outputs(self._infer(batch))

    def _checked_outputs(self, outputs):
        outputs = list(outputs)
        if len(outputs) != len(self._output_names):
            raise RuntimeError("{} returned {} outputs for {} names".format(
                type(self).__name__, len(outputs), len(self._output_names)))
        return outputs

    # -- several requests in flight ----------------------------------------------------------------------------
    def set_in_flight(self, requests):
        # type: (int) -> BaseRunner
        """Ask for ``requests`` concurrent requests (call before ``__enter__``); backends may run fewer.

        Even 1 makes ``submit`` asynchronous where the backend can: the caller works while the request runs.
        """
        if self._active:
            raise RuntimeError("{}: set_in_flight() must come before entering the runner".format(
                type(self).__name__))
        self._requested_in_flight = positive_int(requests, "requests in flight")
        return self

    @property
    def in_flight(self):
        # type: () -> int
        """How many requests this runner overlaps (1 for backends without an asynchronous path)."""
        self._require_active()
        return max(1, int(self._in_flight()))

    def submit(self, batch):
        # type: (np.ndarray) -> InferHandle
        """Start ``batch``; returns an :class:`InferHandle` (``result()`` gives what ``infer`` would).

        Blocks while ``in_flight`` requests are already running; results may finish out of order, so keep the
        handles in submission order to keep frames in order.
        """
        return self._submit(self.check_input(batch))

    def wait_all(self):
        """Wait until every submitted request is done (their handles hold the outputs or errors)."""
        self._require_active()
        self._wait_all()

    def __repr__(self):
        return "{}({!r}{})".format(type(self).__name__, self.path, ", active" if self._active else "")
