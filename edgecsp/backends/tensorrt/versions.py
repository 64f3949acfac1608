"""TensorRT version arithmetic: parsing, ranges, the number in calibration-cache headers (pure, Python 3.6)."""
from typing import Optional, Tuple

from edgecsp.errors import InputError

ANY = 10 ** 6  # what "x" in a version range stands for


def parse_version(text):
    # type: (str) -> Tuple[int, ...]
    """``"8.2.1.8"`` -> ``(8, 2, 1, 8)``; an ``x`` part (``"10.x"``) matches any number; InputError otherwise."""
    parts = str(text).strip().split(".")
    try:
        return tuple(ANY if p.lower() == "x" else int(p) for p in parts)
    except ValueError:
        raise InputError("{!r} is not a TensorRT version such as 8.2.1".format(text))


def version_in_range(version, low, high):
    # type: (str, str, str) -> bool
    """True when ``version`` lies in [low, high], each bound compared on the parts it names (8.2 covers 8.2.1.8)."""
    found = parse_version(version)
    lo, hi = parse_version(low), parse_version(high)
    return found[:len(lo)] >= lo and found[:len(hi)] <= hi


def major_minor(version):
    # type: (str) -> Tuple[int, int]
    parts = parse_version(version) + (0, 0)
    return parts[0], parts[1]


def version_number(version):
    # type: (str) -> int
    """NV_TENSORRT_VERSION for ``version``, as calibration caches name it: 8.2.1 -> 8201, 10.0.1 -> 100001."""
    parts = parse_version(version) + (0, 0, 0)
    major, minor, patch = [0 if p == ANY else p for p in parts[:3]]
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def closest_at_or_below(version, keys):
    # type: (str, ...) -> Optional[str]
    """The key (a "major.minor" string) of ``keys`` nearest to ``version`` from below, None when all are above."""
    want = major_minor(version)
    below = [k for k in keys if major_minor(k) <= want]
    return max(below, key=major_minor) if below else None
