"""The backend contract: every registered backend implements it, and a sixth one needs one record, no edits.

The sixth backend is ``tests/backends/npz_backend`` (numpy, ``.npz`` artefacts): registered with one record
(and one target record so that `edgecsp build --target` reaches it), it builds, runs through `edgecsp infer`,
appears in the help texts and in the tests' host-target list, with no other file changed.
"""
import json

import pytest

import edgecsp.backends as backends
import edgecsp.targets as targets
from edgecsp.backends import Backend, check_contract, get_backend, list_backends
from edgecsp.cli import main
from tests.gates import host_targets

NPZ = Backend("npz", "tests.backends.npz_backend", "numpy", (".npz",), metadata="npz['meta']",
              label="numpy archive", description="a test backend computing 1x1 heads in numpy")
NPZ_TARGET = targets.Target(name="npz-cpu", backend="npz", description="the npz test backend", precisions=("fp32",),
                            default_precision="fp32", max_opset=20, device_python="3.6", suffix=".npz")


@pytest.mark.parametrize("record", list_backends(), ids=lambda b: b.name)
def test_every_registered_backend_implements_the_contract(record):
    assert check_contract(record, get_backend(record.name)) == []
    assert record.suffixes and all(s.startswith(".") and s == s.lower() for s in record.suffixes)
    assert record.label and record.metadata and record.package


def test_suffixes_name_one_backend_each():
    suffixes = [s for b in list_backends() for s in b.suffixes]
    assert len(suffixes) == len(set(suffixes))


def test_contract_check_reports_what_is_missing():
    import types

    half = types.SimpleNamespace(NAME="npz", build=None)
    problems = check_contract(NPZ, half)
    assert "Runner" in problems and "read_meta" in problems and "build" not in problems


@pytest.fixture
def sixth_backend(monkeypatch):
    monkeypatch.setattr(backends, "_BACKENDS", backends._BACKENDS + (NPZ,))
    monkeypatch.setattr(targets, "_TARGETS", targets._TARGETS + (NPZ_TARGET,))
    return NPZ


@pytest.mark.onnx
@pytest.mark.opencv
def test_a_sixth_backend_is_one_record(sixth_backend, demo_onnx, demo_video, tmp_path, capsys):
    assert check_contract(sixth_backend, get_backend("npz")) == []
    assert "npz-cpu" in [t.name for t in host_targets()]
    assert ".npz (numpy archive)" in backends.artefact_help()
    art = str(tmp_path / "demo.npz")
    assert main(["build", "--target", "npz-cpu", demo_onnx, "-o", art]) == 0
    video, _ = demo_video
    out = str(tmp_path / "d.jsonl")
    assert main(["infer", "--engine", art, video, "--save-json", out, "--max-frames", "5", "--no-progress"]) == 0
    lines = [json.loads(line) for line in open(out)]
    assert [line["frame"] for line in lines] == list(range(5))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    assert ".npz (numpy archive)" in " ".join(capsys.readouterr().out.split())
