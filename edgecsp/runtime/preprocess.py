"""Image pre-processing: the one letterbox/resize used by training, calibration, inference and evaluation.

A calibration set or a training pipeline that resizes differently from inference is a silent accuracy bug, so
every consumer calls :func:`letterbox` / :func:`preprocess` from here. Both are deterministic: the same image and
the same target shape always give bit-identical output (integer sizes, ``cv2.INTER_LINEAR``, fixed padding
split), on the host and on a Jetson.

Geometry conventions (shared with :func:`scale_boxes_back`):

* ``scale = min(H / h0, W / w0)``; the resized size is ``round_half_up(w0 * scale) x round_half_up(h0 * scale)``
  (at least 1 pixel); images are scaled up as well as down.
* the padding is split symmetrically with the extra pixel on the right/bottom: ``left = (W - new_w) // 2``,
  ``top = (H - new_h) // 2``.
* a box in network-input pixels maps back with ``x0 = (x - pad_x) / scale_x`` (``scale_x == scale_y == scale``
  for a letterbox; a plain resize has ``pad == 0`` and separate scales).

Python 3.6 compatible; numpy only at import time, OpenCV on first use.
"""
import math
from typing import NamedTuple, Optional, Tuple

import numpy as np

from edgecsp._lazy import require
from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.meta import PAD_CENTER, PAD_TOP_LEFT, UINT8_NHWC_BGR


class LetterboxInfo(NamedTuple):
    """How one frame was mapped into the network input; enough to map boxes back.

    ``scale`` is the uniform letterbox scale (for a plain resize: ``min(scale_x, scale_y)``, informative only);
    ``scale_x``/``scale_y`` are what :func:`scale_boxes_back` uses. Shapes are ``(height, width)``.
    """

    scale: float
    pad_x: int
    pad_y: int
    scale_x: float
    scale_y: float
    orig_shape: Tuple[int, int]
    input_shape: Tuple[int, int]


def _round_half_up(v):
    # Python's round() is banker's rounding and numpy's differs from C's; a fixed rule keeps the resized size
    # identical across Python/numpy versions and the C++ ports of this function.
    return int(math.floor(v + 0.5))


def _as_bgr(image):
    """Return a 3-channel uint8 view/copy of ``image`` (grayscale and BGRA are accepted)."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise InputError("expected an image as a non-empty HxW or HxWxC numpy array, got {}: read frames with "
                         "edgecsp.runtime.sources.open_source or cv2.imread".format(_describe(image)))
    if image.dtype != np.uint8:
        raise InputError("expected a uint8 image, got dtype {}: convert it with image.astype(np.uint8) after "
                         "scaling to 0..255".format(image.dtype))
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    channels = image.shape[2]
    if channels == 3:
        return image
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 4:
        return image[:, :, :3]  # BGRA: drop alpha as cv2.IMREAD_COLOR would
    raise InputError("expected 1, 3 or 4 image channels, got {}: pass a BGR image".format(channels))


def _describe(obj):
    if isinstance(obj, np.ndarray):
        return "array of shape {}".format(obj.shape)
    return type(obj).__name__


def _check_shape(new_shape):
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    try:
        h, w = int(new_shape[0]), int(new_shape[1])
    except (TypeError, ValueError, IndexError):
        raise InputError("target shape must be (height, width), got {!r}".format(new_shape))
    if h <= 0 or w <= 0:
        raise InputError("target shape must be positive (height, width), got {!r}".format(new_shape))
    return h, w


def _resize(image, w, h):
    if image.shape[1] == w and image.shape[0] == h:
        return image
    cv2 = require("cv2", "resizing images")
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def _letterbox_geometry(image, new_shape, pad_position=PAD_CENTER):
    """``(h, w, h0, w0, scale, new_w, new_h, pad_x, pad_y)``: the one place the letterbox rounding is decided
    (``pad_position`` top_left: the image at the origin, all padding right and below)."""
    h, w = _check_shape(new_shape)
    h0, w0 = image.shape[:2]
    scale = min(float(h) / h0, float(w) / w0)
    new_w = min(w, max(1, _round_half_up(w0 * scale)))
    new_h = min(h, max(1, _round_half_up(h0 * scale)))
    if pad_position == PAD_TOP_LEFT:
        return h, w, h0, w0, scale, new_w, new_h, 0, 0
    return h, w, h0, w0, scale, new_w, new_h, (w - new_w) // 2, (h - new_h) // 2


def letterbox(image, new_shape=(640, 640), pad_value=114, pad_position=PAD_CENTER):
    """Resize ``image`` keeping its aspect ratio and pad it to ``new_shape`` = (height, width).

    Returns ``(padded uint8 HxWx3, LetterboxInfo)``. See the module docstring for the exact rounding and
    padding rules; they are part of the contract with training and calibration.
    """
    image = _as_bgr(image)
    h, w, h0, w0, scale, new_w, new_h, pad_x, pad_y = _letterbox_geometry(image, new_shape, pad_position)
    resized = _resize(image, new_w, new_h)
    if new_w == w and new_h == h:
        out = np.ascontiguousarray(resized)
    else:
        # numpy fill + copy instead of cv2.copyMakeBorder: same result, no rounding of the pad value, no cv2.
        out = np.empty((h, w, 3), dtype=np.uint8)
        out[...] = np.asarray(pad_value, dtype=np.uint8)
        out[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    return out, LetterboxInfo(scale, pad_x, pad_y, scale, scale, (h0, w0), (h, w))


class LetterboxBuffer(object):
    """A stream's reusable letterbox canvas: each frame is resized straight into it (no intermediate image, no
    per-frame allocation), and the padding is written only when the geometry changes. Not thread-safe: one per
    stream (reader thread)."""

    def __init__(self):
        self.canvas = None  # type: Optional[np.ndarray]
        self._geometry = None

    def letterbox(self, image, new_shape=(640, 640), pad_value=114, pad_position=PAD_CENTER):
        """What ``letterbox`` returns, written into this buffer's canvas (valid until the next call)."""
        image = _as_bgr(image)
        h, w, h0, w0, scale, new_w, new_h, pad_x, pad_y = _letterbox_geometry(image, new_shape, pad_position)
        if self.canvas is None or self.canvas.shape != (h, w, 3):
            self.canvas, self._geometry = np.empty((h, w, 3), dtype=np.uint8), None
        geometry = (new_w, new_h, pad_x, pad_y, int(pad_value))
        if geometry != self._geometry:
            self.canvas[...] = np.asarray(pad_value, dtype=np.uint8)
            self._geometry = geometry
        inner = self.canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w]
        if (w0, h0) == (new_w, new_h):
            inner[...] = image
        else:
            cv2 = require("cv2", "resizing images")
            written = cv2.resize(image, (new_w, new_h), dst=inner, interpolation=cv2.INTER_LINEAR)
            if written is not None and not np.shares_memory(written, self.canvas):
                inner[...] = written  # an OpenCV that could not write into the view returned a new image
        return self.canvas, LetterboxInfo(scale, pad_x, pad_y, scale, scale, (h0, w0), (h, w))


def resize_plain(image, new_shape=(640, 640)):
    """Stretch ``image`` to ``new_shape`` = (height, width) without keeping aspect ratio (``meta.letterbox`` False).

    Returns ``(resized uint8 HxWx3, LetterboxInfo)`` with zero padding and separate x/y scales.
    """
    image = _as_bgr(image)
    h, w = _check_shape(new_shape)
    h0, w0 = image.shape[:2]
    sx, sy = float(w) / w0, float(h) / h0
    out = np.ascontiguousarray(_resize(image, w, h))
    return out, LetterboxInfo(min(sx, sy), 0, 0, sx, sy, (h0, w0), (h, w))


def resize_for_meta(image, meta, buffer=None):
    """Letterbox or plain-resize one BGR frame to ``meta.input_size`` as the model expects; uint8 HxWx3
    (in ``buffer``, a LetterboxBuffer, when given and the model letterboxes)."""
    if meta.letterbox:
        if buffer is not None:
            return buffer.letterbox(image, meta.input_size, meta.pad_value, meta.pad_position)
        return letterbox(image, meta.input_size, meta.pad_value, meta.pad_position)
    return resize_plain(image, meta.input_size)


def preprocess(frames_bgr, meta, buffers=None):
    """Turn one BGR frame or a list of them into the network input batch.

    Returns ``(batch, infos)``: ``batch`` is a C-contiguous float32 NCHW array in ``meta.channel_order``,
    ``(pixel * meta.scale - meta.mean) / meta.std``, or for an artefact whose ``input_form`` is uint8_nhwc_bgr the letterboxed uint8 NHWC BGR
    frames as they are (always a new array: it may still be in flight when the next one is made); ``infos`` is one
    :class:`LetterboxInfo` per frame (a list even for a single frame). ``buffers``: one LetterboxBuffer per
    frame, reused across calls (a stream's), so the letterboxed frame is never allocated.
    """
    if isinstance(frames_bgr, np.ndarray):
        frames_bgr = [frames_bgr]
    frames_bgr = list(frames_bgr)
    if not frames_bgr:
        raise InputError("preprocess got no frames: pass at least one BGR image")
    order = str(meta.channel_order).upper()
    if order not in ("RGB", "BGR"):
        raise MetadataError("channel_order must be RGB or BGR, not {!r}: re-export the model".format(
            meta.channel_order))
    buffers = list(buffers) if buffers is not None else [None] * len(frames_bgr)
    if len(buffers) != len(frames_bgr):
        raise ValueError("preprocess got {} buffers for {} frames".format(len(buffers), len(frames_bgr)))
    images, infos = [], []
    for frame, buffer in zip(frames_bgr, buffers):
        img, info = resize_for_meta(frame, meta, buffer)
        images.append(img)
        infos.append(info)
    if meta.input_form == UINT8_NHWC_BGR:  # the artefact swaps, scales and transposes in its graph
        return (images[0][None].copy() if len(images) == 1 else np.stack(images)), infos
    batch = images[0][None] if len(images) == 1 else np.stack(images)  # N, H, W, 3 uint8
    if order == "RGB":
        batch = batch[..., ::-1]
    # One pass that converts, reorders to NCHW and makes the memory contiguous (what runtimes bind directly).
    out = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
    divisor = meta.scale_divisor
    if divisor is not None:  # pixel / 255, bit for bit what the families compute
        if divisor != 1.0:
            out /= np.float32(divisor)
    else:
        out *= np.float32(meta.scale)
    if meta.normalized:  # (pixel * scale - mean) / std per channel (RTMDet, PP models): multiply by 1 / std
        out -= np.asarray(meta.mean, np.float32).reshape(1, 3, 1, 1)
        out /= np.asarray(meta.std, np.float32).reshape(1, 3, 1, 1)
    return out, infos


def scale_boxes_back(boxes_xyxy, info, orig_shape=None):
    """Map xyxy boxes from network-input pixels to the original frame and clip them to it.

    ``orig_shape`` (height, width) defaults to ``info.orig_shape``. Returns a new float32 array of the same shape.
    """
    boxes = np.array(boxes_xyxy, dtype=np.float32)  # always a copy: callers keep their network-space boxes
    shape = boxes.shape if boxes.size else (0, 4)
    flat = boxes.reshape(-1, 4)
    if orig_shape is None:
        orig_shape = info.orig_shape
    h0, w0 = int(orig_shape[0]), int(orig_shape[1])
    flat[:, 0::2] -= np.float32(info.pad_x)
    flat[:, 1::2] -= np.float32(info.pad_y)
    flat[:, 0::2] /= np.float32(info.scale_x)
    flat[:, 1::2] /= np.float32(info.scale_y)
    np.clip(flat[:, 0::2], 0, w0, out=flat[:, 0::2])
    np.clip(flat[:, 1::2], 0, h0, out=flat[:, 1::2])
    return flat.reshape(shape)
