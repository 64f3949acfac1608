"""The one validator for numbers and choices, used by the CLI and the library configs alike (Python 3.6).

Each check returns the value (converted: ``int`` / ``float``) or raises InputError with one line naming the
option (``what``: "--conf", "threads"...), the allowed values and what was given. ``bool`` is never a number
here: ``True`` is not a count of 1.
"""
import re

from edgecsp.errors import InputError

_CONTROL = re.compile(u"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
SHOWN_CHARS = 80


def printable(text):
    # type: (str) -> str
    """``text`` with control characters (terminal escapes, bidi overrides, newlines) shown as ``\\xNN``."""
    return _CONTROL.sub(lambda m: "\\x{:02x}".format(ord(m.group(0))) if ord(m.group(0)) < 0x100
                        else "\\u{:04x}".format(ord(m.group(0))), str(text))


def shown(value, limit=SHOWN_CHARS):
    # type: (object, int) -> str
    """How a value from outside input appears in a message: ``repr``-like, control characters escaped and at most
    ``limit`` characters (a 600 KB cfg line is not echoed whole)."""
    text = printable(value if isinstance(value, str) else repr(value))
    if isinstance(value, str):
        text = "'" + text + "'"
    return text if len(text) <= limit else text[:limit - 13] + "...(+{} chars)".format(len(text) - limit + 13)


_DIGITS = re.compile(r"[0-9]+\Z")


def ascii_digits(text):
    # type: (object) -> bool
    """Whether ``text`` is a string of ASCII digits only (``str.isdigit`` also takes '²' and '١٢', which ``int``
    refuses or reads)."""
    return isinstance(text, str) and _DIGITS.match(text) is not None


def _fix(hint):
    return ": " + hint if hint else ""


def _integer(value):
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    try:
        return number if number == value or (isinstance(value, str) and str(number) == value.strip()) else None
    except TypeError:
        return None


def positive_int(value, what, hint=""):
    """``value`` as an int when it is an integer >= 1; InputError naming ``what`` otherwise."""
    number = _integer(value)
    if number is None or number < 1:
        raise InputError("{} must be a positive integer, got {!r}{}".format(what, value, _fix(hint)))
    return number


def non_negative_int(value, what, hint=""):
    """``value`` as an int when it is an integer >= 0; InputError naming ``what`` otherwise."""
    number = _integer(value)
    if number is None or number < 0:
        raise InputError("{} must be a non-negative integer, got {!r}{}".format(what, value, _fix(hint)))
    return number


def optional(check, value, what, *args, **kwargs):
    """``None`` passes through; anything else goes through ``check``."""
    return None if value is None else check(value, what, *args, **kwargs)


def number_in(value, what, low=None, high=None, low_open=False, high_open=False, hint=""):
    """``value`` as a float inside the interval (``low_open``/``high_open`` exclude the bound); InputError otherwise.

    NaN and non-numbers are refused. ``low``/``high`` None leave that side unbounded.
    """
    number = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    ok = number is not None and number == number
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        raise InputError("{} must be {}, got {!r}{}".format(what, describe_interval(low, high, low_open, high_open),
                                                           value, _fix(hint)))
    return number


def describe_interval(low, high, low_open=False, high_open=False):
    # type: (...) -> str
    """'between 0 and 1', 'in (0, 1]', 'at least 16', 'greater than 0'..."""
    if low is not None and high is not None:
        if not low_open and not high_open:
            return "between {:g} and {:g}".format(low, high)
        return "in {}{:g}, {:g}{}".format("(" if low_open else "[", low, high, ")" if high_open else "]")
    if low == 0 and high is None:
        return "a positive number" if low_open else "a non-negative number"
    if low is not None:
        return "{} {:g}".format("greater than" if low_open else "at least", low)
    if high is not None:
        return "{} {:g}".format("less than" if high_open else "at most", high)
    return "a number"


def fraction(value, what, hint=""):
    """A threshold in [0, 1] (confidence...)."""
    return number_in(value, what, 0.0, 1.0, hint=hint)


def iou_threshold(value, what="--iou", hint=""):
    """An IoU threshold in (0, 1]."""
    return number_in(value, what, 0.0, 1.0, low_open=True, hint=hint)


def choice(value, what, choices, hint=""):
    """``value`` when it is one of ``choices``; InputError listing them otherwise."""
    if value not in tuple(choices):
        raise InputError("{} must be one of {}, got {!r}{}".format(what, ", ".join(str(c) for c in choices), value,
                                                                  _fix(hint)))
    return value


def size_hw(text, what="--input-size"):
    """``HEIGHTxWIDTH`` (or one number for a square) -> (height, width), both positive."""
    from edgecsp.errors import InputError

    parts = str(text).lower().replace(",", "x").split("x")
    values = [int(p) for p in parts] if all(ascii_digits(p) for p in parts) else []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise InputError("{} {!r} is not HEIGHTxWIDTH (e.g. 416x416) or one number".format(what, text))
    return tuple(values)


def path_pair(spec, what):
    """``CFG,WEIGHTS`` -> [cfg, weights], both existing files (``what``: the spec's prefix, for the message)."""
    import os

    from edgecsp.errors import InputError

    parts = spec.split(",")
    if len(parts) != 2 or not all(parts):
        raise InputError("{} needs CFG,WEIGHTS (two paths joined by a comma), got {!r}".format(what, spec))
    for p in parts:
        if not os.path.isfile(p):
            raise InputError("{}: file {} not found".format(what, p))
    return parts
