"""Read a darknet ``.cfg`` into sections that remember where each option came from.

The syntax follows AlexeyAB's ``read_cfg``: whitespace anywhere in a line is ignored, lines starting with ``#``
or ``;`` are comments, ``[name]`` opens a section and ``key=value`` sets an option; when a key repeats inside a
section the first value wins (``option_find`` walks the list from the front). A ``#`` inside a value starts a
comment, which is what darknet's ``atoi``/``atof`` parsing amounts to.

Every error names the file, the line, the section and the layer index (the index darknet prints and
``[route] layers=`` refers to), so the message alone says where to look. numpy-free, torch-free.
"""
import os
from collections import OrderedDict
from typing import List, NamedTuple, Optional

from edgecsp.errors import InputError

_REQUIRED = object()


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
        return "{} line {}, [{}]{}".format(os.path.basename(self.path), line, self.kind, layer)

    def error(self, problem, key=None):
        """An InputError whose one line starts with the place in the file."""
        return InputError("{}: {}".format(self.place(key), problem))

    def has(self, key):
        return key in self.options

    def raw(self, key, default=None):
        option = self.options.get(key)
        return default if option is None else option.value

    def _get(self, key, default, convert, what):
        option = self.options.get(key)
        if option is None:
            if default is _REQUIRED:
                raise self.error("{}= is missing: add it to the section".format(key))
            return default
        try:
            return convert(option.value)
        except ValueError:
            raise self.error("{}={} is not {}".format(key, option.value, what), key)

    def get_int(self, key, default=_REQUIRED):
        return self._get(key, default, _to_int, "an integer")

    def get_float(self, key, default=_REQUIRED):
        return self._get(key, default, float, "a number")

    def get_str(self, key, default=_REQUIRED):
        return self._get(key, default, str, "text")

    def get_ints(self, key, default=_REQUIRED):
        return self._get(key, default, lambda v: [_to_int(p) for p in _items(v)], "a comma-separated list of "
                                                                                 "integers")

    def get_floats(self, key, default=_REQUIRED):
        return self._get(key, default, lambda v: [float(p) for p in _items(v)], "a comma-separated list of "
                                                                               "numbers")


def _items(value):
    parts = value.split(",")
    if parts and parts[-1] == "":  # "1,2,3," is accepted by darknet
        parts = parts[:-1]
    if not parts or any(p == "" for p in parts):
        raise ValueError(value)
    return parts


def _to_int(text):
    value = float(text)  # darknet writes e.g. filters=255 but some cfgs say 1.0 where an int is meant
    if value != int(value):
        raise ValueError(text)
    return int(value)


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
    if not os.path.isfile(path):
        raise InputError("darknet cfg {} not found: pass the .cfg the weights were trained with".format(path))
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputError("cannot read darknet cfg {} ({}): check the path and permissions".format(path, exc))
    return parse_cfg_text(text, path)


def parse_cfg_text(text, path="model.cfg"):
    # type: (str, str) -> DarknetCfg
    """Parse cfg ``text``; ``path`` is only used in messages and for the model name."""
    name = os.path.basename(path)
    sections = []  # type: List[Section]
    current = None  # type: Optional[Section]
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = "".join(raw_line.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise InputError("{} line {}: {!r} is not a [section] header".format(name, number, raw_line.strip()))
            kind = line[1:-1].lower()
            index = None if not sections and kind in ("net", "network") else len(sections) - 1
            if sections and kind in ("net", "network"):
                raise InputError("{} line {}: a second [{}] section; a cfg has one, at the top".format(
                    name, number, kind))
            current = Section("net" if kind == "network" else kind, number, index, path)
            sections.append(current)
            continue
        if current is None:
            raise InputError("{} line {}: option {!r} before any [section]: a cfg starts with [net]".format(
                name, number, raw_line.strip()))
        key, sep, value = line.partition("=")
        value = value.split("#", 1)[0]
        if not sep or not key or not value:
            raise InputError("{} line {}: {!r} is not key=value in [{}]".format(
                name, number, raw_line.strip(), current.kind))
        if key not in current.options:  # darknet's option_find returns the first occurrence
            current.options[key] = Option(value, number)
    if not sections or sections[0].kind != "net":
        raise InputError("{}: the cfg does not start with a [net] section: is this a darknet .cfg?".format(name))
    if len(sections) == 1:
        raise InputError("{}: the cfg has a [net] section but no layers".format(name))
    return DarknetCfg(path, sections[0], sections[1:])
