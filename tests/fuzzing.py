"""What the property-based (Hypothesis) fuzz tests share: how many examples, and a guard against hangs.

CI runs ``EXAMPLES`` examples per fuzz test (derandomized there, so a CI failure repeats); a longer local run:
``EDGECSP_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest -q -k fuzz``. Every failure a run finds is kept as an
``@example(...)`` on its test, so it is checked on every run from then on.
"""
import contextlib
import os
import signal

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("EDGECSP_FUZZ_EXAMPLES", "100"))
HANG_SECONDS = float(os.environ.get("EDGECSP_FUZZ_HANG_SECONDS", "20"))


def fuzz_settings(examples=None):
    """Hypothesis settings for a fuzz test: ``examples`` (default ``EXAMPLES``), no per-example deadline (the hang
    guard is ``no_hang``), no example database in the repository."""
    return settings(max_examples=examples or EXAMPLES, deadline=None, database=None,
                    derandomize=bool(os.environ.get("CI")),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


class Hang(Exception):
    """An example ran longer than ``HANG_SECONDS``: a hang, reported as a failure (never an EdgeCSPError)."""


@contextlib.contextmanager
def no_hang(seconds=None):
    """Raise ``Hang`` in the main thread when the block runs longer than ``seconds``."""
    seconds = seconds or HANG_SECONDS

    def _alarm(signum, frame):
        raise Hang("example ran longer than {:g} s".format(seconds))

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
