"""The provenance record written next to every calibrated artefact, and the check that guards reuse.

``<artefact stem>.calibration.json`` says what an INT8 artefact was calibrated on and how: the data (kind,
source, a fingerprint = sha256 of the sorted sample names and sizes, sample count, seed), the preprocessing, the
algorithm, the tool versions and the sha256 of the model (the source ONNX) that was calibrated. When the
backend leaves a reusable calibration result (ONNX Runtime's tensor ranges, TensorRT's calibration cache) the
record names it and its sha256; ``reusable_cache`` hands it to a later build only when the model, the
preprocessing and the method are the same, and refuses with a one-line message otherwise.
Python 3.6 compatible; numpy only.
"""
import datetime
import os
import platform
import sys

from edgecsp._files import file_sha256 as file_digest
from edgecsp.errors import InputError
from edgecsp.validate import printable
from edgecsp.runtime.schema import Field, confined_path, file_name, free_json, integer, one_of, optional, read_file, sha256, text
from edgecsp.runtime.schema import read_record as read_record_fields

FORMAT = "edgecsp-calibration"
VERSION = 1
SUFFIX = ".calibration.json"
PREPROCESSING_KEYS = ("input_size", "letterbox", "pad_value", "channel_order", "scale")


def provenance_path(artefact_path):
    # type: (str) -> str
    """The record next to ``artefact_path``: ``engines/m-cpu-int8.xml`` -> ``engines/m-cpu-int8.calibration.json``."""
    return os.path.splitext(str(artefact_path))[0] + SUFFIX


def preprocessing_of(meta):
    """The preprocessing a ModelMeta prescribes, as plain JSON values."""
    return {"input_size": [int(v) for v in meta.input_size], "letterbox": bool(meta.letterbox),
            "pad_value": int(meta.pad_value), "channel_order": str(meta.channel_order).upper(),
            "scale": float(meta.scale), "function": "edgecsp.runtime.preprocess.preprocess"}


def _version(module_name):
    module = sys.modules.get(module_name)
    if module is None:
        return None
    return str(getattr(module, "__version__", "") or "") or None


def tool_versions(extra=None):
    """Versions of edgecsp, Python, numpy and OpenCV (when loaded), plus ``extra`` {package: version}."""
    import edgecsp

    tools = {"edgecsp": edgecsp.__version__, "python": platform.python_version(), "numpy": _version("numpy"),
             "opencv": _version("cv2")}
    tools.update(extra or {})
    return dict((k, v) for k, v in tools.items() if v is not None)



def make_record(data, samples, meta, model_sha256, algorithm, tools=None, cache=None):
    """A provenance record (dict). ``data``: ``SampleList.describe()``; ``samples``: images used."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"name": meta.model, "sha256": str(model_sha256)},
        "data": data,
        "samples": int(samples),
        "preprocessing": preprocessing_of(meta),
        "algorithm": dict(algorithm),
        "tools": tool_versions(tools),
        "cache": cache,
    }


RECORD_FIELDS = [
    Field("format", one_of(FORMAT), required=True),
    Field("version", integer(1, VERSION), default=VERSION),
    Field("model", free_json(typed=[Field("sha256", sha256()), Field("name", optional(text(256, empty=True)))]),
          default={}),
    Field("preprocessing", free_json(), default={}),
    Field("algorithm", free_json(typed=[Field("method", optional(text(64)))]), default={}),
    Field("cache", optional(free_json(typed=[Field("file", optional(file_name())), Field("sha256", optional(sha256()))]))),
]


def read_record(path):
    """The provenance record at ``path`` (its fields through ``RECORD_FIELDS``); InputError when it is missing or
    not a record."""
    path = str(path)
    fix = "pass the {} file written next to a calibrated artefact".format(SUFFIX)
    record = read_file(path, "calibration record", fix, error=InputError)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError("{} is not an edgecsp calibration record (no \"format\": \"{}\"): {}".format(
            path, FORMAT, fix))
    version = record.get("version", 0)
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise InputError("calibration record {} has version {}, this edgecsp reads up to {}: upgrade edgecsp".format(
            path, version, VERSION))
    checked = read_record_fields(record, RECORD_FIELDS, "calibration record " + path,
                                 "recalibrate with --calib (the record was edited or damaged)", error=InputError)
    record.update(checked)
    return record


def check_reuse(record, model_sha256, meta, method=None, where="calibration record"):
    """InputError unless ``record`` was made for the model with ``model_sha256``, ``meta``'s preprocessing and
    (when given) the calibration ``method``: reusing it otherwise would calibrate a different network."""
    old_model = (record.get("model") or {})
    if old_model.get("sha256") != str(model_sha256):
        raise InputError("refusing to reuse {}: it was calibrated for model {} (sha256 {}) but this build's model "
                         "has sha256 {}; recalibrate with --calib instead of --calib-cache".format(
                             where, printable(old_model.get("name") or "?")[:60], printable(old_model.get("sha256"))[:12],
                             str(model_sha256)[:12]))
    old, new = record.get("preprocessing") or {}, preprocessing_of(meta)
    changed = [k for k in PREPROCESSING_KEYS if old.get(k) != new.get(k)]
    if changed:
        raise InputError("refusing to reuse {}: its preprocessing differs from this model's ({}); recalibrate with "
                         "--calib instead of --calib-cache".format(where, ", ".join(
                             "{} {} -> {}".format(k, printable(old.get(k))[:40], new.get(k)) for k in changed)))
    old_method = (record.get("algorithm") or {}).get("method")
    if method is not None and old_method != method:
        raise InputError("refusing to reuse {}: it was made with calibration method {!r}, this build uses {!r}; "
                         "recalibrate with --calib".format(where, printable(old_method)[:40], method))
    return record


def reusable_cache(record_path, model_sha256, meta, method=None):
    """``(record, cache path)`` of the calibration result ``record_path`` names, after ``check_reuse`` and a
    check that the cache file is the one the record was written for."""
    record = check_reuse(read_record(record_path), model_sha256, meta, method, os.path.basename(str(record_path)))
    cache = record.get("cache") or {}
    if not cache.get("file"):
        raise InputError("calibration record {} names no reusable calibration result (the backend that wrote it "
                         "recalibrates every build): pass --calib instead".format(record_path))
    cache_path = confined_path(os.path.dirname(os.path.abspath(str(record_path))), cache["file"], "calibration result",
                               "a record names a file next to itself; recalibrate with --calib")
    if not os.path.isfile(cache_path):
        raise InputError("calibration result {} named by {} is missing: recalibrate with --calib".format(
            cache_path, record_path))
    if file_digest(cache_path) != cache.get("sha256"):
        raise InputError("refusing to reuse {}: it changed since {} was written (sha256 differs); recalibrate with "
                         "--calib".format(cache_path, os.path.basename(str(record_path))))
    return record, cache_path
