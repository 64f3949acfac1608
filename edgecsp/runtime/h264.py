"""H.264 video output through PyAV (its wheels bundle FFmpeg and libx264), encoded on a thread of its own.

OpenCV's pip wheels write mp4v (MPEG-4 part 2), which browsers do not play; ``--save out.mp4`` should. The
encoder runs on its own thread behind a small bounded queue, so the pipeline's writer thread only hands frames
over; the file appears atomically on ``close()`` like every edgecsp output. ``open_video_writer`` picks H.264
where PyAV has an H.264 encoder and the container takes it, else OpenCV's mp4v with a one-line notice.
Python 3.6 compatible; av is imported on first use (a Jetson without it gets mp4v).
"""
import logging
import os
import queue
import threading

import numpy as np

from edgecsp._lazy import available
from edgecsp.errors import InputError
from edgecsp.runtime.writers import DEFAULT_FPS, AtomicArtefact, VideoWriter

log = logging.getLogger(__name__)

H264_CONTAINERS = (".mp4", ".mkv", ".mov")
H264_ENCODERS = ("libx264", "libopenh264", "h264")  # PyAV encoder names, best first
QUEUE_FRAMES = 8  # frames waiting for the encoder at most: bounded memory, and a little slack for bursts
_END = object()


def h264_encoder():
    """The name of an H.264 encoder PyAV has here, or None (no PyAV, or an FFmpeg built without one)."""
    if not available("av"):
        return None
    import av

    found = set(getattr(getattr(av, "codec", None), "codecs_available", ()) or ())
    for name in H264_ENCODERS:
        if name in found:
            try:
                if av.codec.Codec(name, "w").type == "video":
                    return name
            except Exception:  # noqa: BLE001 -- a decoder-only name, or a codec PyAV cannot open for writing
                continue
    return None


class H264Writer(AtomicArtefact):
    """BGR frames to an H.264 video (yuv420p, browser-playable), encoded on a background thread.

    The first frame fixes the size (later frames are resized to it). Errors of the encoder thread are raised by
    the next ``write`` or by ``close``; ``abort`` stops the thread and deletes the staged file.
    """

    def __init__(self, path, fps=None, encoder=None, preset="ultrafast", crf=23):
        AtomicArtefact.__init__(self, path)
        import av

        self._av = av
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS
        self.encoder = encoder or h264_encoder()
        if self.encoder is None:
            self._staged.abort()
            raise InputError("no H.264 encoder in PyAV here: pip install av (its wheels bundle libx264)")
        self.options = {"preset": preset, "crf": str(crf), "threads": "1"} if self.encoder == "libx264" else {}
        try:
            self._container = av.open(self.tmp_path, mode="w")  # fails now, before any frame, on a bad path
        except Exception as exc:  # noqa: BLE001 -- PyAV raises its own error classes per FFmpeg error
            failure = self._staged.failure(exc)
            self._staged.abort()
            if failure is not None:
                raise failure
            raise InputError("cannot write video {} with PyAV ({}): use a .mp4, .mkv or .mov path".format(
                path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        self._stream = None
        self.frame_size = None
        self.frames_written = 0
        self._queue = queue.Queue(QUEUE_FRAMES)
        self._error = None
        self._thread = threading.Thread(target=self._encode_loop, name="edgecsp-h264")
        self._thread.daemon = True
        self._thread.start()

    def _start_stream(self, width, height):
        from fractions import Fraction

        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(self.encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(self.options)
        self._stream = stream

    def _encode_loop(self):
        try:
            while True:
                image = self._queue.get()
                if image is _END:
                    if self._stream is not None:
                        for packet in self._stream.encode():  # flush the encoder's delayed frames
                            self._container.mux(packet)
                    return
                frame = self._av.VideoFrame.from_ndarray(image, format="bgr24")
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
        except BaseException as exc:  # noqa: B902 -- kept for the pipeline's thread, raised by write/close
            self._error = exc
            while True:  # drain so a blocked write() returns
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _raise_error(self):
        if self._error is not None:
            failure = self._staged.failure(self._error)  # PyAV's errors are OSErrors: ENOSPC, EFBIG...
            if failure is not None:
                raise failure
            raise RuntimeError("H.264 encoding of {} failed: {}".format(self.path, self._error))

    def write(self, image):
        """Append one BGR uint8 frame (H.264 needs even sizes: an odd size is cropped by one pixel).

        The encoder thread reads ``image`` later: the writer owns it from here (the pipeline hands over each
        drawn frame and never touches it again), so do not modify it after the call.
        """
        if self.closed:
            raise ValueError("write() on a closed H264Writer")
        self._raise_error()
        if self.frame_size is None:
            width, height = int(image.shape[1]) // 2 * 2, int(image.shape[0]) // 2 * 2
            self.frame_size = (width, height)
            self._start_stream(width, height)
        width, height = self.frame_size
        if (image.shape[1], image.shape[0]) != self.frame_size:
            if image.shape[1] >= width and image.shape[0] >= height and (
                    image.shape[1] - width < 2 and image.shape[0] - height < 2):
                image = image[:height, :width]
            else:
                from edgecsp._lazy import require

                cv2 = require("cv2", "writing videos")
                image = cv2.resize(image, self.frame_size, interpolation=cv2.INTER_LINEAR)
        image = np.ascontiguousarray(image)  # a copy only for the cropped (odd-size) view
        while True:
            try:
                self._queue.put(image, timeout=0.1)
                break
            except queue.Full:
                self._raise_error()
                if not self._thread.is_alive():
                    raise RuntimeError("the H.264 encoder thread of {} stopped".format(self.path))
        self.frames_written += 1

    def _release(self):
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 -- a container that never got a stream (no frame) may refuse to close
            if self.frames_written:
                raise
        self._raise_error()

    def _has_content(self):
        return self.frames_written > 0


def open_video_writer(path, fps=None, codec="auto"):
    """A video writer for ``path``: H.264 (PyAV) for .mp4/.mkv/.mov where available (``codec`` "auto" or
    "h264"), else OpenCV's mp4v, with a one-line notice when H.264 was wanted but is missing."""
    ext = os.path.splitext(str(path))[1].lower()
    if codec not in ("auto", "h264", "mp4v"):
        raise InputError("video codec must be auto, h264 or mp4v, got {!r}".format(codec))
    if codec != "mp4v" and ext in H264_CONTAINERS:
        encoder = h264_encoder()
        if encoder is not None:
            return H264Writer(path, fps, encoder)
        log.warning("no H.264 encoder (pip install av, whose wheels bundle FFmpeg): writing %s as mp4v, which "
                    "browsers do not play", os.path.basename(str(path)))
    elif codec == "h264":
        raise InputError("H.264 needs a .mp4, .mkv or .mov path, not {}".format(path))
    return VideoWriter(path, fps=fps)
