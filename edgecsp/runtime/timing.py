"""Per-stage wall-clock timing of a pipeline (read, preprocess, infer, postprocess, draw/write).

``StageTimer`` sums milliseconds per named stage and counts frames; ``summary()`` gives the numbers for
JSON/benchmark tables and ``text()`` a one-paragraph report for the console. Python 3.6 compatible (an
OrderedDict keeps stages in first-seen order, which 3.6 dicts do not guarantee).
"""
import time
from collections import OrderedDict
from contextlib import contextmanager

# the pipeline's stages that are not the network: their CPU time is what a Jetson's ARM cores spend per frame
NON_NETWORK_STAGES = ("read", "preprocess", "postprocess", "draw", "write")


def thread_cpu_seconds():
    # type: () -> float
    """CPU seconds of the calling thread (``CLOCK_THREAD_CPUTIME_ID``; Python 3.6 has no ``time.thread_time``)."""
    clock = getattr(time, "CLOCK_THREAD_CPUTIME_ID", None)
    if clock is not None:
        return time.clock_gettime(clock)
    return time.process_time()  # no per-thread clock (Windows): the whole process, an over-estimate


# the pipeline's stages in the order frames pass them; reports list these first, any others after. "infer" is the
# network's time (the synchronous loop, `--sync`); "wait" the pipelined loop's time waiting for the network's
# results while it runs alongside the other stages
PIPELINE_STAGES = ("read", "preprocess", "infer", "wait", "postprocess", "draw", "write")


class StageTimer(object):
    """Accumulates milliseconds per stage; ``frames`` counts processed frames for the FPS figure.

    Use ``with timer.stage("infer"): ...`` or ``timer.add("infer", ms)``, and ``timer.count_frames(n)``.
    FPS is frames over wall time from the first timed stage (or ``start()``) to the end of the latest one, so
    it includes any time between stages that the per-stage means do not show.
    """

    def __init__(self, clock=time.perf_counter, cpu_clock=thread_cpu_seconds):
        self._clock = clock
        self._cpu_clock = cpu_clock
        self.total_ms = OrderedDict()
        self.cpu_ms = OrderedDict()  # CPU milliseconds of the thread that ran each stage
        self.calls = OrderedDict()
        self._cpu0 = None
        self.frames = 0
        self._t0 = None
        self._t_end = None

    def start(self):
        """Mark the start of the wall-clock span (optional: the first stage marks it otherwise), and of the
        process CPU time the summary divides by the frames."""
        self._t0 = self._clock()
        self._cpu0 = time.process_time()
        return self

    @contextmanager
    def stage(self, name):
        """Time the body of a ``with`` block as one call of stage ``name``."""
        t, cpu = self._clock(), self._cpu_clock()
        if self._t0 is None:
            self._t0 = t
        try:
            yield
        finally:
            end = self._clock()
            self._record(name, (end - t) * 1000.0, (self._cpu_clock() - cpu) * 1000.0)
            self._t_end = end

    def add(self, name, ms, cpu_ms=0.0):
        """Add ``ms`` milliseconds (and ``cpu_ms`` of CPU) as one call of stage ``name`` (times measured elsewhere,
        e.g. by another thread)."""
        now = self._clock()
        if self._t0 is None:
            self._t0 = now - ms / 1000.0
        self._record(name, float(ms), float(cpu_ms))
        self._t_end = now

    def _record(self, name, ms, cpu_ms=0.0):
        if name not in self.total_ms:
            self._insert(name)
        self.total_ms[name] += ms
        self.cpu_ms[name] += cpu_ms
        self.calls[name] += 1

    def _insert(self, name):
        """Add stage ``name``, keeping PIPELINE_STAGES in their order (whatever thread times one first)."""
        self.total_ms[name], self.calls[name], self.cpu_ms[name] = 0.0, 0, 0.0
        if name not in PIPELINE_STAGES:
            return
        rank = PIPELINE_STAGES.index(name)
        for later in [k for k in self.total_ms if k in PIPELINE_STAGES and PIPELINE_STAGES.index(k) > rank]:
            for table in (self.total_ms, self.calls, self.cpu_ms):
                table.move_to_end(later)

    def count_frames(self, n=1):
        """Count ``n`` processed frames."""
        self.frames += int(n)

    def wall_seconds(self):
        if self._t0 is None or self._t_end is None:
            return 0.0
        return max(0.0, self._t_end - self._t0)

    def summary(self):
        """``{"frames", "seconds", "fps", "ms": {stage: mean ms per call}, "ms_per_frame": {...}, "calls"}``."""
        seconds = self.wall_seconds()
        frames = self.frames
        per_frame = (lambda v: v / frames if frames else 0.0)
        cpu = OrderedDict((k, per_frame(v)) for k, v in self.cpu_ms.items())
        summary = {
            "frames": frames,
            "seconds": seconds,
            "fps": frames / seconds if seconds > 0 else 0.0,
            "ms": OrderedDict((k, v / self.calls[k]) for k, v in self.total_ms.items()),
            "ms_per_frame": OrderedDict((k, per_frame(v)) for k, v in self.total_ms.items()),
            "cpu_ms_per_frame": cpu,
            # what the frames cost outside the network, in CPU time of the threads that did it
            "non_network_cpu_ms_per_frame": sum(v for k, v in cpu.items() if k in NON_NETWORK_STAGES),
            "calls": OrderedDict(self.calls),
        }
        if self._cpu0 is not None:  # every thread of the process (the engine's too), over the whole run
            summary["process_cpu_ms_per_frame"] = per_frame((time.process_time() - self._cpu0) * 1000.0)
        return summary

    def text(self):
        """One paragraph: frames, time, FPS and the mean milliseconds of each stage."""
        s = self.summary()
        stages = ", ".join("{} {:.2f} ms".format(k, v) for k, v in s["ms"].items()) or "no stages timed"
        return "Processed {} frames in {:.2f} s ({:.1f} FPS). Mean per call: {}.".format(
            s["frames"], s["seconds"], s["fps"], stages)
