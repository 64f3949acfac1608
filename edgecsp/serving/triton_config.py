"""Triton model configurations (``config.pbtxt``) from an artefact's interface and edgecsp metadata; pure Python.

``model_config`` decides everything (backend, batching, dims, instance groups, parameters) and returns a plain
dict in the field names of Triton's ``model_config.proto``; ``to_pbtxt`` writes it in protobuf text format.
Nothing here needs Triton, protobuf or a model runtime: the tests parse the text with Triton's own schema
(``tritonclient.grpc.model_config_pb2``) and compare the dims with the artefact's.
"""
import json
import re
from typing import List, NamedTuple, Optional, Tuple

from edgecsp.errors import InputError
from edgecsp.validate import optional, positive_int, shown

META_PARAMETER = "edgecsp_meta"  # parameters key holding ModelMeta.to_json(): classes, anchors, letterbox...
ARTEFACT_PARAMETER = "edgecsp_artefact"  # python backend (edgecsp serve): the artefact's path in the version folder
PATHS_PARAMETER = "edgecsp_python_paths"  # python backend: JSON list of import paths (the stub ignores PYTHONPATH)
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 500  # dynamic batching waits this long to fill a batch
NAME_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")  # \Z, not $: "$" also matches before a final "\n"
NAME_HINT = "letters, digits, '_', '-' and '.', at most 128, not starting with '.' or '-'"
DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8",
          "int32": "TYPE_INT32", "int64": "TYPE_INT64"}


class Enum(str):
    """A protobuf enum value: written bare (``KIND_CPU``), not quoted."""


class TensorSpec(NamedTuple):
    name: str
    dtype: str  # numpy dtype name, a key of DTYPES
    shape: Tuple[Optional[int], ...]  # with the batch dimension first; None: dynamic


class Interface(NamedTuple):
    """What an artefact takes and returns, read from the artefact itself (or its manifest)."""

    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    max_batch: Optional[int] = None  # the most the artefact takes (a TensorRT profile); None: no limit known


class Backend(NamedTuple):
    """How Triton runs one kind of edgecsp artefact."""

    edgecsp: str  # edgecsp backend name
    triton: str  # Triton's backend field
    platform: Optional[str]  # Triton's platform field, where Triton wants one
    files: Tuple[str, ...]  # file names inside the version folder, the model file first
    kind: str  # instance group kind


BACKENDS = {
    "onnxruntime": Backend("onnxruntime", "onnxruntime", "onnxruntime_onnx", ("model.onnx",), "KIND_CPU"),
    "openvino": Backend("openvino", "openvino", None, ("model.xml", "model.bin"), "KIND_CPU"),
    "tensorrt": Backend("tensorrt", "tensorrt", "tensorrt_plan", ("model.plan",), "KIND_GPU"),
}
PYTHON = Backend("python", "python", None, ("model.py",), "KIND_CPU")  # edgecsp serve: edgecsp's runner inside


def check_model_name(name):
    # type: (str) -> str
    """``name`` when Triton takes it as a model name (a folder and a URL path segment); InputError otherwise."""
    if not isinstance(name, str) or not NAME_RULE.match(name):
        raise InputError("--model {} is not a Triton model name: use {}".format(shown(name), NAME_HINT))
    return name


def default_model_name(path_stem):
    # type: (str) -> str
    """A valid model name from an artefact's file stem (invalid characters become '_')."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path_stem).lstrip(".-") or "model"
    return name[:128]


def batch_plan(interface, max_batch, where, server_side_batching=False):
    # type: (Interface, Optional[int], str, bool) -> int
    """Triton's ``max_batch_size`` for an artefact: 0 when its batch is static (dims then include it), else the
    largest batch the server may form (default DEFAULT_MAX_BATCH, capped by the artefact's own limit).

    ``server_side_batching``: the python backend splits batches itself, so any artefact takes any batch.
    InputError for a ``max_batch`` the artefact cannot take.
    """
    max_batch = optional(positive_int, max_batch, "--max-batch")
    batch = interface.inputs[0].shape[0] if interface.inputs and interface.inputs[0].shape else None
    if server_side_batching:
        return max_batch or DEFAULT_MAX_BATCH
    if batch is not None:
        if max_batch is not None and max_batch != batch:
            raise InputError("{} has a static batch of {}, so --max-batch {} cannot apply: export it with "
                             "`edgecsp export --dynamic-batch` or drop --max-batch".format(where, batch, max_batch))
        return 0
    limit = interface.max_batch
    if max_batch is not None and limit is not None and max_batch > limit:
        raise InputError("--max-batch {} is above the {} that {} was built for: rebuild it with "
                         "`edgecsp build --max-batch {}` or pass --max-batch {}".format(
                             max_batch, limit, where, max_batch, limit))
    wanted = max_batch or DEFAULT_MAX_BATCH
    return min(wanted, limit) if limit is not None else wanted


def _tensor(spec, batched, where, fixed_format=None, output=False):
    dims = list(spec.shape[1:] if batched else spec.shape)
    if output:  # an output may have sizes only the model knows (end-to-end rows): Triton's -1
        dims = [-1 if d is None else d for d in dims]
    if any(d is None for d in dims):  # an input's are fixed: Triton refuses other shapes before it allocates
        raise InputError("{}: tensor {!r} has dynamic dimensions {} besides the batch; Triton's config needs them "
                         "fixed: re-export with a fixed --input-size".format(where, spec.name, spec.shape))
    if spec.dtype not in DTYPES:
        raise InputError("{}: tensor {!r} is {}, which edgecsp does not serve".format(where, spec.name, spec.dtype))
    tensor = {"name": spec.name, "data_type": Enum(DTYPES[spec.dtype]), "dims": [int(d) for d in dims]}
    if fixed_format and len(dims) == 3:  # Triton takes a format only for 3 non-batch dims
        tensor["format"] = Enum(fixed_format)
    return tensor


def model_config(name, backend, interface, meta_json, where, max_batch=None, instances=1, artefact_file=None,
                 python_paths=(), queue_delay_us=DEFAULT_QUEUE_DELAY_US):
    """The ``config.pbtxt`` content as a dict of Triton's field names.

    ``backend``: a ``Backend`` (``BACKENDS[...]`` or ``PYTHON``); ``interface``: the artefact's ``Interface``;
    ``meta_json``: its ``ModelMeta.to_json()`` (goes into ``parameters`` so a client needs nothing else);
    ``artefact_file``, ``python_paths``: for PYTHON, the artefact's file name inside the version folder and the
    import paths the model needs.
    """
    check_model_name(name)
    instances = positive_int(instances, "--instances")
    if len(interface.inputs) != 1:
        raise InputError("{} has {} inputs; edgecsp serves single-input detectors".format(where, len(interface.inputs)))
    python = backend.triton == "python"
    max_batch_size = batch_plan(interface, max_batch, where, server_side_batching=python)
    batched = max_batch_size > 0
    spec = interface.inputs[0]
    layout = None
    if len(spec.shape) == 4:
        layout = "FORMAT_NHWC" if spec.shape[-1] == 3 and spec.dtype == "uint8" else "FORMAT_NCHW"
    config = {"name": name, "backend": backend.triton}
    if backend.platform:
        config["platform"] = backend.platform
    config.update(max_batch_size=max_batch_size,
                  input=[_tensor(spec, batched, where, layout)],
                  output=[_tensor(o, batched, where, output=True) for o in interface.outputs])
    if batched:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": int(queue_delay_us)}
    config["instance_group"] = [{"count": int(instances), "kind": Enum(backend.kind)}]
    parameters = {META_PARAMETER: meta_json}
    if python:
        if not artefact_file:
            raise ValueError("the python backend needs artefact_file")
        parameters[ARTEFACT_PARAMETER] = artefact_file
        parameters[PATHS_PARAMETER] = json.dumps(list(python_paths))
    config["parameters"] = parameters
    if backend.files and not python:
        config["default_model_filename"] = backend.files[0]
    return config


def _quote(text):
    # protobuf text format: C escapes; keep non-ASCII as UTF-8 bytes, which its parser accepts
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _scalar(value):
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _quote(value)


def to_pbtxt(config, indent=0):
    # type: (dict, int) -> str
    """``config`` (from ``model_config``) in protobuf text format, as Triton reads ``config.pbtxt``."""
    pad = "  " * indent
    lines = []
    for key, value in config.items():
        if key == "parameters":  # map<string, ModelParameter>: one entry per key
            for name, text in value.items():
                lines.append("{}parameters {{ key: {} value {{ string_value: {} }} }}".format(
                    pad, _quote(name), _quote(text)))
        elif isinstance(value, dict):
            lines.append("{}{} {{\n{}{}}}".format(pad, key, to_pbtxt(value, indent + 1), pad))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            blocks = ["{}  {{\n{}{}  }}".format(pad, to_pbtxt(item, indent + 2), pad) for item in value]
            lines.append("{}{} [\n{}\n{}]".format(pad, key, ",\n".join(blocks), pad))
        elif isinstance(value, list):
            lines.append("{}{}: [ {} ]".format(pad, key, ", ".join(_scalar(v) for v in value)))
        else:
            lines.append("{}{}: {}".format(pad, key, _scalar(value)))
    return "\n".join(lines) + "\n"


def meta_from_config(parameters):
    """The ModelMeta JSON text in a model config's ``parameters`` (dict of key -> string), or None."""
    value = parameters.get(META_PARAMETER)
    if isinstance(value, dict):  # as tritonclient's JSON config gives it
        value = value.get("string_value")
    return value


def describe(config):
    # type: (dict) -> str
    """One line: what a config serves (for the CLI)."""
    batching = ("dynamic batching up to {}".format(config["max_batch_size"]) if config["max_batch_size"]
                else "static batch")
    return "{} ({} backend, {}, {} x {})".format(config["name"], config["backend"], batching,
                                               config["instance_group"][0]["count"],
                                               config["instance_group"][0]["kind"])

