"""The encoded operator matrices (package data) agree with onnx-tensorrt's markdown fixtures."""
import importlib.util
import os

import pytest

from edgecsp.backends.tensorrt.host.opsets import MATRICES
from tests.gates import ROOT, SHARED_FIXTURES

FIXTURES = os.path.join(SHARED_FIXTURES, "tensorrt")
SCRIPT = os.path.join(ROOT, "scripts", "encode_trt_operators.py")


def _script():
    spec = importlib.util.spec_from_file_location("encode_trt_operators", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the fixtures gate: CI lays shared/ beside the clone, so there a missing fixture folder fails instead of skipping
needs_fixtures = pytest.mark.fixtures


@needs_fixtures
def test_committed_module_is_what_the_script_generates_from_the_fixtures():
    script = _script()
    with open(os.path.join(ROOT, "edgecsp", "backends", "tensorrt", "host", "opsets.py")) as handle:
        committed = handle.read()
    assert script.render(script.encode(FIXTURES)) == committed, "re-run scripts/encode_trt_operators.py"


@needs_fixtures
def test_every_operator_row_of_every_fixture_is_encoded():
    for name in sorted(os.listdir(FIXTURES)):
        with open(os.path.join(FIXTURES, name)) as handle:
            rows = [line.split("|") for line in handle if line.startswith("| ") and not line.startswith("| Operator")]
        matrix = [m for m in MATRICES.values() if m["source"] == name][0]
        for cells in rows:
            op, flag = cells[1].strip(), cells[2].strip()
            assert op in (matrix["supported"] if flag.startswith("Y") else matrix["unsupported"]), (name, op)
        assert len(matrix["supported"]) + len(matrix["unsupported"]) == len(rows), name


def test_the_issue_facts_are_in_the_data():
    trt82 = MATRICES["8.2"]
    assert trt82["max_opset"] == 13 and "NonZero" in trt82["unsupported"] and "Mish" not in trt82["supported"]
    assert trt82["constant_inputs"]["Resize"] == ("scales",)  # curated: not stated by the markdown
    assert "EfficientNMS_TRT" in trt82["warnings"] and "negative scores" in trt82["warnings"]["EfficientNMS_TRT"]
    assert [MATRICES[k]["max_opset"] for k in ("8.4", "8.5", "8.6", "10.0")] == [17, 17, 17, 20]
    assert "NonZero" in MATRICES["8.5"]["supported"] and "Mish" in MATRICES["10.0"]["supported"]
    assert "Resize" not in MATRICES["8.6"]["constant_inputs"]
    assert MATRICES["8.2"]["constant_inputs"]["Conv"] == ("W",)  # parsed through the markdown's "initailizer" typo


def test_parse_matrix_reads_headers_restrictions_and_flags():
    script = _script()
    text = ("TensorRT 9.9 supports operators in the inclusive range of opset 9 to opset 21.\n"
            "| Operator | Supported | Supported Types | Restrictions |\n|---|---|---|---|\n"
            "| Foo | Y | FP32 | `k` must be an initializer. Input rank >= 2 |\n"
            "| Bar | Y [EXPERIMENTAL] | FP32 | Floating point inputs are only supported if `a` inputs are "
            "initializers |\n"
            "| Baz | N |\n")
    m = script.parse_matrix(text)
    assert (m["trt"], m["min_opset"], m["max_opset"]) == ("9.9", 9, 21)
    assert m["supported"] == ["Bar", "Foo"] and m["unsupported"] == ["Baz"] and m["experimental"] == ["Bar"]
    assert m["constant_inputs"] == {"Foo": ["k"]}  # conditional restrictions are not encoded
