"""Targets are data: the records are consistent and the look-ups fail with useful messages."""
import os
import subprocess
import sys

import pytest

import edgecsp
from edgecsp.backends import get_backend, list_backends
from edgecsp.errors import UnsupportedError
from edgecsp.targets import Target, check_precision, get_target, list_targets


def test_records_are_consistent():
    records = list_targets()
    names = [t.name for t in records]
    assert {"cpu", "cpu-ort"} <= set(names) and len(names) == len(set(names))
    backends = dict((b.name, b) for b in list_backends())
    for t in records:
        assert isinstance(t, Target)
        assert t.default_precision in t.precisions
        assert t.backend in backends and t.suffix in backends[t.backend].suffixes
        assert t.max_opset >= 11 and t.description


def test_cpu_records():
    cpu = get_target("cpu")
    assert (cpu.backend, cpu.precisions, cpu.default_precision, cpu.suffix) == (
        "openvino", ("fp32", "fp16", "int8"), "fp32", ".xml")
    ort = get_target("cpu-ort")
    assert (ort.backend, ort.precisions, ort.default_precision, ort.suffix) == (
        "onnxruntime", ("fp32", "int8"), "fp32", ".onnx")
    for t in (cpu, ort):
        assert t.trt_version is None and t.sm is None and t.dla_cores == 0


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(UnsupportedError, match="unknown target 'tx1'.*choose one of cpu, cpu-ort, .*tx2"):
        get_target("tx1")


def test_check_precision():
    assert check_precision("cpu", None) == "fp32"
    assert check_precision(get_target("cpu"), "fp16") == "fp16"
    assert check_precision("cpu", "int8") == "int8"
    with pytest.raises(UnsupportedError, match="cpu does not support precision 'fp8': choose one of fp32, fp16, int8"):
        check_precision("cpu", "fp8")


def test_backend_lookup():
    with pytest.raises(UnsupportedError, match="known backends are onnxruntime, openvino, tensorrt"):
        get_backend("tflite")
    for name in ("onnxruntime", "openvino", "tensorrt"):
        module = get_backend(name)
        for attr in ("is_available", "version", "Runner", "build", "read_meta"):
            assert callable(getattr(module, attr)), (name, attr)


def test_backend_modules_import_no_engine_package():
    code = ("import sys, edgecsp.build, edgecsp.backends.openvino, edgecsp.backends.onnxruntime; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'openvino', 'torch') if m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(edgecsp.__file__)))
    out = subprocess.check_output([sys.executable, "-c", code], cwd=root).decode().strip()
    assert out == "[]"
