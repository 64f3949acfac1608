"""A tiny stderr progress bar, so the runtime needs no tqdm on the device.

Known total: ``[#####.....]  45%  450/1000  29.8 it/s  ETA 0:18``; unknown total (camera, stream):
``1234 frames  29.8 it/s``. Silent when the stream is not a terminal (logs, CI, pipes) or when disabled, and
redrawn at most every ``min_interval`` seconds so drawing never costs frames. Python 3.6 compatible.
"""
import sys
import time


def _clock():
    return time.perf_counter()


def _fmt_seconds(seconds):
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return "{}:{:02d}:{:02d}".format(h, m, s) if h else "{}:{:02d}".format(m, s)


class Progress(object):
    """Progress over ``total`` items (None when unknown); use as a context manager or call ``close()``."""

    def __init__(self, total=None, desc="", enabled=None, stream=None, min_interval=0.1, unit="frames",
                 clock=_clock, width=30):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = bool(enabled)
        self.total = int(total) if total else None
        self.desc = desc
        self.unit = unit
        self.min_interval = float(min_interval)
        self.width = int(width)
        self.count = 0
        self._clock = clock
        self._start = clock()
        self._last_draw = None
        self._last_len = 0

    def update(self, n=1):
        """Count ``n`` more items and redraw if ``min_interval`` has passed since the last redraw."""
        self.count += n
        if not self.enabled:
            return
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= self.min_interval:
            self._draw(now)

    def rate(self, now=None):
        """Items per second since the start."""
        elapsed = (self._clock() if now is None else now) - self._start
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self, now=None):
        """The text of the bar as it would be drawn now."""
        rate = self.rate(now)
        head = "{}: ".format(self.desc) if self.desc else ""
        if self.total:
            frac = min(1.0, float(self.count) / self.total)
            filled = int(round(frac * self.width))
            eta = "  ETA " + _fmt_seconds((self.total - self.count) / rate) if rate > 0 and frac < 1 else ""
            return "{}[{}{}] {:3d}% {}/{} {:.1f} {}/s{}".format(
                head, "#" * filled, "." * (self.width - filled), int(frac * 100), self.count, self.total, rate,
                self._short_unit(), eta)
        return "{}{} {} {:.1f} {}/s".format(head, self.count, self.unit, rate, self._short_unit())

    def _short_unit(self):
        return "it" if self.unit == "frames" else self.unit

    def _draw(self, now):
        text = self.line(now)
        # Pad with spaces to wipe a previous, longer line; \r keeps the bar on one terminal line.
        pad = " " * max(0, self._last_len - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._last_len = len(text)
        self._last_draw = now

    def close(self):
        """Draw the final state and end the line."""
        if self.enabled and (self._last_draw is not None or self.count):
            self._draw(self._clock())
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False
