"""The one strict reader of the JSON documents edgecsp loads (Python 3.6, standard library only).

ONNX metadata, OpenVINO ``rt_info``, engine sidecar and bundle manifests, calibration records, model cards and
the metadata a Triton server hands its clients all come from files a user (or an attacker) can edit. Each is
read here in two steps:

* ``parse_json(text, ...)``: a bounded document (size, nesting depth, number of values), finite numbers only
  (``NaN``, ``Infinity`` and ``1e400`` are refused, and so are integers too long to be sizes);
* ``read_record(document, FIELDS, ...)``: typed fields, each checked by a small rule (``text``, ``integer``,
  ``number``, ``flag``, ``one_of``, ``list_of``, ``record``, ``free_json``, ``file_name``, ``sha256``) that names the field,
  shows the value (escaped and shortened) and says what is allowed.

Every failure is one ``error`` (MetadataError by default, InputError for documents the user passes directly)
ending in ``fix``; no other exception escapes for any input. The same rules check a record before it is
written (``check_value``), so an artefact that builds also loads.
"""
import json
import math
import os
from typing import Callable, NamedTuple

from edgecsp.errors import InputError, MetadataError
from edgecsp.validate import describe_interval, shown

MAX_DOCUMENT_BYTES = 16 << 20  # metadata and manifests are kilobytes; a calibration record with its samples less than 1 MiB
MAX_DEPTH = 24  # nesting of objects and arrays
MAX_VALUES = 200000  # numbers, strings, objects and arrays in one document
MAX_INTEGER_DIGITS = 19  # larger integers are never sizes, counts or indices edgecsp reads


class SchemaProblem(Exception):
    """Raised by a rule: what is wrong with the value at ``path`` (a field path such as ``heads[0].stride``)."""

    def __init__(self, path, problem):
        super(SchemaProblem, self).__init__("{} {}".format("field " + path if path else "the record", problem))


def _refuse_constant(name):
    raise ValueError("{} is not a number JSON allows".format(name))


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("{} is out of the float range".format(shown(text, 30)))
    return value


def _bounded_int(text):
    digits = text.lstrip("-")
    if len(digits) > MAX_INTEGER_DIGITS:
        raise ValueError("an integer of {} digits is out of range".format(len(digits)))
    return int(text)


def _depth_and_size(text):
    """Nesting depth and rough value count of a JSON text, scanned without recursion (strings skipped)."""
    depth = deepest = values = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            values += 1
        elif char in "[{":
            depth += 1
            values += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
        elif char == ",":
            values += 1
    return deepest, values


def parse_json(text, where, fix, error=MetadataError, max_bytes=MAX_DOCUMENT_BYTES):
    """The JSON document ``text`` (str or bytes) after the bounds in the module docstring; ``error`` otherwise."""
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise error("{} is {} bytes, more than the {} a document may have: {}".format(
                where, len(text), max_bytes, fix))
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise error("{} is not UTF-8 text ({}): {}".format(where, exc.reason, fix))
    if not isinstance(text, str):
        raise error("{} holds a {} where a JSON document belongs: {}".format(where, type(text).__name__, fix))
    if len(text) > max_bytes:
        raise error("{} is {} characters, more than the {} a document may have: {}".format(
            where, len(text), max_bytes, fix))
    depth, values = _depth_and_size(text)
    if depth > MAX_DEPTH:
        raise error("{} nests {} levels deep, more than {}: {}".format(where, depth, MAX_DEPTH, fix))
    if values > MAX_VALUES:
        raise error("{} holds about {} values, more than {}: {}".format(where, values, MAX_VALUES, fix))
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise error("{} is not valid JSON ({}): {}".format(where, shown(str(exc), 120), fix))


def read_file(path, what, fix, error=MetadataError, max_bytes=MAX_DOCUMENT_BYTES):
    """``parse_json`` of the file at ``path``, read only after its size is checked."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise error("{} {} is {} bytes, more than the {} a document may have: {}".format(
                what, path, size, max_bytes, fix))
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except (IOError, OSError) as exc:
        raise error("cannot read {} {}: {}; {}".format(what, path, exc.strerror or exc, fix))
    return parse_json(data, "{} {}".format(what, path), fix, error, max_bytes)


def confined_path(folder, name, what, fix, error=InputError):
    # type: (str, str, str, str, type) -> str
    """``folder/name`` after checking that it stays inside ``folder`` once ``..`` and links are resolved (a
    document names files of its own folder); ``error`` ending in ``fix`` otherwise."""
    folder = os.path.realpath(str(folder))
    path = os.path.realpath(os.path.join(folder, str(name)))
    if not path.startswith(folder + os.sep):
        raise error("{} {} named in {} points outside that folder: {}".format(what, shown(name, 60), folder, fix))
    return path


# -- rules: each takes (value, path) and returns the value as the program uses it, or raises SchemaProblem --------
Rule = Callable


def _got(value):
    if isinstance(value, bool):
        return "got {}".format("true" if value else "false")
    if value is None:
        return "got null"
    if isinstance(value, (dict, list)):
        return "got a JSON {} {}".format("object" if isinstance(value, dict) else "array", shown(value, 40))
    return "got {}".format(shown(value, 60))


def text(max_length=256, empty=False):
    """A string of at most ``max_length`` characters (not empty unless ``empty``)."""
    def rule(value, path):
        if not isinstance(value, str) or len(value) > max_length or (not value and not empty):
            raise SchemaProblem(path, "must be a {}string of at most {} characters, {}".format(
                "" if empty else "non-empty ", max_length, _got(value)))
        return value
    return rule


def _integer_interval(low, high):
    if low is not None and high is not None:
        return "between {:d} and {:d}".format(low, high)
    if low is not None:
        return "of at least {:d}".format(low)
    return "of at most {:d}".format(high) if high is not None else ""


def integer(low=None, high=None):
    """An integer (a JSON number without a fraction; ``true`` is not 1) inside [low, high]."""
    def rule(value, path):
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None or (low is not None and number < low) or (high is not None and number > high):
            raise SchemaProblem(path, "must be an integer {}, {}".format(_integer_interval(low, high), _got(value)))
        return number
    return rule


def number(low=None, high=None, low_open=False, high_open=False):
    """A finite number inside the interval (``low_open``/``high_open`` exclude the bound)."""
    def rule(value, path):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            interval = describe_interval(low, high, low_open, high_open)
            what = "a finite " + interval[2:] if interval.startswith("a ") else "a finite number " + interval
            raise SchemaProblem(path, "must be {}, {}".format(what, _got(value)))
        return float(value)
    return rule


def flag():
    """``true`` or ``false``."""
    def rule(value, path):
        if not isinstance(value, bool):
            raise SchemaProblem(path, "must be true or false, {}".format(_got(value)))
        return value
    return rule


def one_of(*choices):
    """One of ``choices`` (strings)."""
    def rule(value, path):
        if not isinstance(value, str) or value not in choices:
            raise SchemaProblem(path, "must be one of {}, {}".format(", ".join(choices), _got(value)))
        return value
    return rule


def list_of(item, min_length=0, max_length=1024, convert=list):
    """A JSON array of ``min_length``..``max_length`` items, each checked by ``item``."""
    def rule(value, path):
        if not isinstance(value, (list, tuple)) or not min_length <= len(value) <= max_length:
            raise SchemaProblem(path, "must be an array of {} items, {}".format(
                "{}..{}".format(min_length, max_length) if min_length != max_length else min_length, _got(value)))
        return convert(item(v, "{}[{}]".format(path, i)) for i, v in enumerate(value))
    return rule


def optional(rule):
    """``null`` (None) or what ``rule`` accepts."""
    def check(value, path):
        return None if value is None else rule(value, path)
    return check


def free_json(max_items=4096, typed=()):
    """Any JSON object with string keys (already bounded in depth and size by ``parse_json``), e.g. provenance;
    the keys among ``typed`` (``Field`` list) that are present go through their rules, the rest is kept as is."""
    def rule(value, path):
        if not isinstance(value, dict) or len(value) > max_items:
            raise SchemaProblem(path, "must be a JSON object, {}".format(_got(value)))
        out = dict(value)
        for field in typed:
            if field.name in value:
                out[field.name] = field.rule(value[field.name], "{}.{}".format(path, field.name) if path
                                             else field.name)
        return out
    return rule


def sha256():
    """A sha256 as 64 lowercase hex digits."""
    def rule(value, path):
        if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
            raise SchemaProblem(path, "must be a sha256 (64 hex digits), {}".format(_got(value)))
        return value
    return rule


def file_name(max_length=255):
    """A plain file name inside the document's folder: no folder part, not ``.``/``..``, nothing absolute."""
    def rule(value, path):
        ok = isinstance(value, str) and 0 < len(value) <= max_length and value not in (".", "..")
        if ok:
            ok = not any(sep in value for sep in ("/", "\\", "\x00")) and not os.path.isabs(value)
        if not ok:
            raise SchemaProblem(path, "must be the name of a file in the same folder (no folder part, no '..'), "
                                      "{}".format(_got(value)))
        return value
    return rule


class Field(NamedTuple):
    name: str
    rule: Rule
    required: bool = False
    default: object = None


def record(fields, strict=False):
    """A JSON object checked field by field (``Field`` list): required fields present, each through its rule,
    absent optional ones given their default. Unknown keys are dropped (newer writers of the same format add
    fields), or refused when ``strict``."""
    def rule(value, path):
        if not isinstance(value, dict):
            raise SchemaProblem(path, "must be a JSON object, {}".format(_got(value)))
        out = {}
        for field in fields:
            where = "{}.{}".format(path, field.name) if path else field.name
            if field.name in value:
                out[field.name] = field.rule(value[field.name], where)
            elif field.required:
                raise SchemaProblem(where, "is missing")
            else:
                out[field.name] = field.default
        if strict:
            unknown = sorted(k for k in value if k not in set(f.name for f in fields))
            if unknown:
                raise SchemaProblem(path, "has unknown field(s) {}".format(shown(", ".join(unknown), 60)))
        return out
    return rule


def check_value(rule, value, where, fix, error=MetadataError, path=""):
    """``rule(value)`` with a SchemaProblem turned into one ``error`` line: ``WHERE: FIELD: PROBLEM; FIX``."""
    try:
        return rule(value, path)
    except SchemaProblem as problem:
        raise error("{}: {}; {}".format(where, problem, fix))


def read_record(document, fields, where, fix, error=MetadataError):
    """The JSON object ``document`` read through ``fields`` (see ``record``): a dict of checked values."""
    return check_value(record(fields), document, where, fix, error)
