"""Result writers: an annotated video and a JSON-lines detection log, both written atomically.

Each writer writes to a staged file in a hidden folder next to its destination (``edgecsp._files.Staged``) and
renames it over the destination only on a successful ``close()``; leaving a ``with`` block through an exception (Ctrl-C included) deletes the
temporary file. A file at the destination path is therefore always complete. Python 3.6 compatible.
"""
import io
import json
import logging
import os

from edgecsp._files import Staged, check_space
from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.nms import to_records

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0


class AtomicArtefact(object):
    """Base: owns ``tmp_path`` (staged by ``edgecsp._files.Staged``); ``close()`` commits, ``abort()`` deletes."""

    def __init__(self, path):
        # the staged file keeps the destination's name, extension included: OpenCV picks the container from it
        self._staged = Staged([path])
        self.path = self._staged.paths[0]
        self.tmp_path = self._staged.staged[0]
        self.closed = False

    def _release(self):
        """Close the underlying handle (subclasses)."""

    def _has_content(self):
        return True

    def close(self):
        """Finish writing and move the file into place; returns the final path (None when nothing was written)."""
        if self.closed:
            return self.path if os.path.exists(self.path) else None
        self.closed = True
        try:
            self._release()
        except BaseException as exc:
            failure = self._staged.failure(exc)  # a full or unwritable destination: one line, not a traceback
            self._staged.abort()
            if failure is not None:
                raise failure
            raise
        if not self._has_content():
            self._staged.abort()
            log.warning("nothing was written to %s; no file created", self.path)
            return None
        self._staged.commit()
        return self.path

    def abort(self):
        """Discard everything written so far; the destination is left untouched. Never raises over the error
        that made the caller abort (a writer failing to release is part of that failure)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._release()
        except Exception:  # noqa: BLE001 -- the run already failed; its own error is the one to report
            log.debug("releasing %s while aborting failed", self.path, exc_info=True)
        finally:
            self._staged.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


class VideoWriter(AtomicArtefact):
    """Write BGR frames to a video (``mp4v`` FourCC by default) with an atomic rename on ``close()``.

    The frame size is fixed by ``frame_size`` (width, height) or by the first frame; later frames of another
    size are resized to it, because cv2.VideoWriter silently drops frames whose size differs.
    """

    def __init__(self, path, fps=None, frame_size=None, fourcc="mp4v"):
        AtomicArtefact.__init__(self, path)
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS
        self.fourcc = fourcc
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size else None
        self.frames_written = 0
        self._writer = None

    def _open(self, size):
        cv2 = require("cv2", "writing videos")
        writer = cv2.VideoWriter(self.tmp_path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size)
        if not writer.isOpened():
            writer.release()
            self._staged.abort()
            self.closed = True
            raise InputError("cannot write video {} with codec {}: this OpenCV build has no such encoder for that "
                             "container; use a .mp4 path with mp4v or a .avi path with MJPG".format(self.path,
                                                                                                 self.fourcc))
        self._writer = writer

    def write(self, image):
        """Append one BGR uint8 frame."""
        if self.closed:
            raise ValueError("write() on a closed VideoWriter")
        if self._writer is None:
            if self.frame_size is None:
                self.frame_size = (int(image.shape[1]), int(image.shape[0]))
            self._open(self.frame_size)
        if (image.shape[1], image.shape[0]) != self.frame_size:
            cv2 = require("cv2", "writing videos")
            image = cv2.resize(image, self.frame_size, interpolation=cv2.INTER_LINEAR)
        check_space(self._staged.folder, self.path)  # OpenCV's writer only warns, frame after frame, on a full disk
        self._writer.write(image)
        self.frames_written += 1

    def _release(self):
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            check_space(self._staged.folder, self.path)  # OpenCV reports no write error: a full disk cuts the file

    def _has_content(self):
        return self.frames_written > 0


class JsonlWriter(AtomicArtefact):
    """One JSON object per line and frame, atomically renamed into place on ``close()``.

    Line format: ``{"frame": i, "source": name, "detections": [{"class_id", "name", "score", "box"}]}`` with
    ``box`` = [x1, y1, x2, y2] in original-frame pixels.
    """

    def __init__(self, path):
        AtomicArtefact.__init__(self, path)
        self._file = None
        try:
            # "x": never clobber another writer's temp file; default permissions (umask), unlike mkstemp's 0600.
            self._file = io.open(self.tmp_path, "x", encoding="utf-8")
        except OSError as exc:
            self.abort()
            raise self._staged.failure(exc) or exc
        self.lines_written = 0

    def write(self, frame_index, source_name, det, names=None):
        """Write the detections of one frame (a Detections in original-frame pixels)."""
        self.write_record({"frame": int(frame_index), "source": str(source_name),
                           "detections": to_records(det, names)})

    def write_record(self, record):
        """Write any JSON-serialisable dict as one line."""
        if self.closed:
            raise ValueError("write() on a closed JsonlWriter")
        try:
            self._file.write(json.dumps(record, ensure_ascii=False, sort_keys=False))
            self._file.write(u"\n")
        except OSError as exc:  # the file system filled up (ENOSPC, EFBIG, EDQUOT): one line, not a traceback
            raise self._staged.failure(exc) or exc
        self.lines_written += 1

    def _release(self):
        if self._file is not None:
            self._file.close()
            self._file = None
