"""Read a darknet ``.cfg`` into sections that remember where each option came from.

The syntax follows AlexeyAB's ``read_cfg``: whitespace anywhere in a line is ignored, lines starting with ``#``
or ``;`` are comments, ``[name]`` opens a section and ``key=value`` sets an option; when a key repeats inside a
section the first value wins (``option_find`` walks the list from the front). A ``#`` inside a value starts a
comment, which is what darknet's ``atoi``/``atof`` parsing amounts to. A UTF-8 byte order mark, CRLF line ends
and UTF-16 text (Windows editors) are accepted.

Numbers are stricter than darknet's ``atoi``/``atof``, which read any prefix (``filters=64x`` is 64 there) and let
``inf``/``nan``/``1e400`` through: an integer is ASCII digits with an optional sign, and ``64.0``/``64.`` (which
some cfgs write and ``atoi`` reads as 64) is accepted, but ``64.5``, ``1e2`` (``atoi``: 1), ``0x40`` and digits of
other scripts (``١٢``) are refused, as are values beyond darknet's 32-bit ``int``. A number is a finite decimal
(``1.05``, ``-.5``, ``2e-3``) within float32 range. Values from the file appear in messages through ``excerpt``:
control characters escaped, long values shortened.

Every error names the file, the line, the section and the layer index (the index darknet prints and
``[route] layers=`` refers to), so the message alone says where to look. numpy-free, torch-free.
"""
import os
import re
import stat
from collections import OrderedDict
from typing import List, NamedTuple, Optional

from edgecsp.errors import InputError
from edgecsp.validate import printable

_REQUIRED = object()

# a darknet cfg is a text file of a few KB (yolov4-csp: 13 KB); anything this large is not one
MAX_CFG_BYTES = 4 << 20
MAX_LAYERS = 10000  # the deepest published darknet cfgs have under 1,000 layers
INT_MAX = 2 ** 31 - 1  # darknet reads integers into C ints
FLOAT32_MAX = 3.4028234663852886e38  # darknet stores numbers as C floats
_INT = re.compile(r"[+-]?([0-9]+)(\.0*)?\Z")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


def excerpt(text, limit=60):
    # type: (object, int) -> str
    """``text`` from outside (a cfg value, key, section name or file name) as it appears inside a message, unquoted:
    control characters escaped (``validate.printable``), at most ``limit`` characters."""
    text = printable(text)
    return text if len(text) <= limit else text[:limit - 13] + "...(+{} chars)".format(len(text) - limit + 13)


class Refused(ValueError):
    """A cfg value that is not what its option needs; ``args[0]`` completes "key=value is ..."."""


class Option(NamedTuple):
    value: str
    line: int


class Section(object):
    """One ``[kind]`` section: its options, its header line and its layer index (None for ``[net]``)."""

    def __init__(self, kind, line, index, path):
        self.kind = kind
        self.line = line
        self.index = index
        self.path = path
        self.options = OrderedDict()  # key -> Option

    def __repr__(self):
        return "Section({!r}, line={}, index={})".format(self.kind, self.line, self.index)

    def place(self, key=None):
        """``yolov4.cfg line 120, [route] layer 30`` (the option's own line when ``key`` is set)."""
        line = self.options[key].line if key in self.options else self.line
        layer = "" if self.index is None else " layer {}".format(self.index)
        return "{} line {}, [{}]{}".format(excerpt(os.path.basename(self.path), 40), line, excerpt(self.kind, 30),
                                           layer)

    def show(self, key):
        """``key=value`` as the cfg sets it, for a message (escaped, shortened)."""
        return "{}={}".format(key, excerpt(self.raw(key, ""), 50))

    def error(self, problem, key=None):
        """An InputError whose one line starts with the place in the file."""
        return InputError("{}: {}".format(self.place(key), problem))

    def has(self, key):
        return key in self.options

    def raw(self, key, default=None):
        option = self.options.get(key)
        return default if option is None else option.value

    def _get(self, key, default, convert):
        option = self.options.get(key)
        if option is None:
            if default is _REQUIRED:
                raise self.error("{}= is missing: add it to the section".format(key))
            return default
        try:
            return convert(option.value)
        except Refused as exc:
            raise self.error("{} is {}".format(self.show(key), exc.args[0]), key)

    def get_int(self, key, default=_REQUIRED):
        return self._get(key, default, to_int)

    def get_float(self, key, default=_REQUIRED):
        return self._get(key, default, to_float)

    def get_str(self, key, default=_REQUIRED):
        return self._get(key, default, str)

    def get_ints(self, key, default=_REQUIRED):
        return self._get(key, default, lambda v: _items(v, to_int, "integers"))

    def get_floats(self, key, default=_REQUIRED):
        return self._get(key, default, lambda v: _items(v, to_float, "numbers"))


def _items(value, convert, what):
    parts = value.split(",")
    if parts and parts[-1] == "":  # "1,2,3," is accepted by darknet
        parts = parts[:-1]
    if not parts:
        raise Refused("not a comma-separated list of {}: give at least one value".format(what))
    values = []
    for number, part in enumerate(parts, 1):
        if not part:
            raise Refused("not a comma-separated list of {}: item {} is empty, remove the extra comma".format(
                what, number))
        try:
            values.append(convert(part))
        except Refused as exc:
            raise Refused("not a comma-separated list of {}: item {} ({}) is {}".format(
                what, number, excerpt(part, 20), exc.args[0]))
    return values


def to_int(text):
    # type: (str) -> int
    """An integer option's value (see the module docstring); Refused says why not."""
    match = _INT.match(text)
    if not match:
        raise Refused("not an integer: write a whole number with the digits 0-9 (e.g. 64)")
    digits = match.group(1).lstrip("0") or "0"
    value = int(digits) if len(digits) <= 10 else INT_MAX + 1  # int() of a 10,000-digit string is refused
    if value > INT_MAX:
        raise Refused("out of range: darknet reads integers as 32-bit C ints (at most {})".format(INT_MAX))
    return -value if text.startswith("-") else value


def to_float(text):
    # type: (str) -> float
    """A number option's value (see the module docstring); Refused says why not."""
    if not _FLOAT.match(text):
        raise Refused("not a number: write a decimal number with the digits 0-9 (e.g. 1.05); inf and nan are "
                      "refused")
    value = float(text)
    if not abs(value) <= FLOAT32_MAX:
        raise Refused("not a finite 32-bit float (darknet stores it as a C float): write a value below 3.4e38")
    return value


class DarknetCfg(NamedTuple):
    """A parsed cfg: the ``[net]`` section and the layer sections in order (layer i = ``layers[i]``)."""

    path: str
    net: Section
    layers: List[Section]

    @property
    def name(self):
        return os.path.splitext(os.path.basename(self.path))[0]


def parse_cfg(path):
    # type: (str) -> DarknetCfg
    """Parse the darknet cfg at ``path``; InputError (with the line) when it cannot be read or parsed."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise InputError("darknet cfg {} not found{}: pass the .cfg the weights were trained with".format(
            excerpt(path, 80), "" if info is None else " (not a regular file)"))
    name = excerpt(os.path.basename(path), 40)
    if info.st_size > MAX_CFG_BYTES:
        raise InputError("darknet cfg {} is {} bytes, but a cfg is a text file of a few KB: pass the .cfg first and "
                         "the .weights second".format(name, info.st_size))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CFG_BYTES + 1)
    except OSError as exc:
        raise InputError("cannot read darknet cfg {} ({}): check the path and permissions".format(
            name, excerpt(exc.strerror or exc, 40)))
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16", errors="replace")  # what some Windows editors save as "Unicode"
    elif b"\0" in data:
        raise InputError("darknet cfg {} is binary, not text: pass the .cfg first and the .weights second".format(
            name))
    else:
        text = data.decode("utf-8", errors="replace")
    return parse_cfg_text(text, path)


def parse_cfg_text(text, path="model.cfg"):
    # type: (str, str) -> DarknetCfg
    """Parse cfg ``text``; ``path`` is only used in messages and for the model name."""
    name = excerpt(os.path.basename(path), 40)
    sections = []  # type: List[Section]
    current = None  # type: Optional[Section]
    if text.startswith(u"\ufeff"):  # a byte order mark, as Windows editors save UTF-8
        text = text[1:]
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = "".join(raw_line.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise InputError("{} line {}: '{}' is not a [section] header: write [name] alone on its line".format(
                    name, number, excerpt(raw_line.strip())))
            kind = line[1:-1].lower()
            index = None if not sections and kind in ("net", "network") else len(sections) - 1
            if sections and kind in ("net", "network"):
                raise InputError("{} line {}: a second [{}] section; a cfg has one, at the top: remove this one"
                                 .format(name, number, kind))
            if len(sections) > MAX_LAYERS:
                raise InputError("{} line {}: more than {} layers, edgecsp's limit (published cfgs have under 1,000): "
                                 "pass the model's own .cfg".format(name, number, MAX_LAYERS))
            current = Section("net" if kind == "network" else kind, number, index, path)
            sections.append(current)
            continue
        if current is None:
            raise InputError("{} line {}: option '{}' before any [section]: a cfg starts with [net]".format(
                name, number, excerpt(raw_line.strip())))
        key, sep, value = line.partition("=")
        value = value.split("#", 1)[0]
        if not sep or not key or not value:
            raise InputError("{} line {}: '{}' is not key=value in [{}]: write one option per line, as "
                             "filters=64".format(name, number, excerpt(raw_line.strip()), excerpt(current.kind, 30)))
        if key not in current.options:  # darknet's option_find returns the first occurrence
            current.options[key] = Option(value, number)
    if not sections or sections[0].kind != "net":
        raise InputError("{}: the cfg does not start with a [net] section: pass a darknet .cfg (first) and its "
                         ".weights (second)".format(name))
    if len(sections) == 1:
        raise InputError("{}: the cfg has a [net] section but no layers: pass the complete .cfg".format(name))
    return DarknetCfg(path, sections[0], sections[1:])
