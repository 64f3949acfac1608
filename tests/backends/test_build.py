"""``edgecsp.build``: the request checks and the dispatch to the target's backend."""
import os

import pytest

from edgecsp import targets
from edgecsp.backends import read_artefact_meta
from edgecsp.build import BuildConfig, build, default_output
from edgecsp.errors import InputError, MetadataError, UnsupportedError

pytestmark = [pytest.mark.onnxruntime, pytest.mark.onnx]

from tests.backends.test_onnxruntime_backend import make_onnx, tiny_meta  # noqa: E402


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.onnx"
    make_onnx(path)
    return str(path)


def test_default_output_comes_from_the_target_record():
    assert default_output("runs/yolo.onnx", "cpu", "fp16") == os.path.join("engines", "yolo-cpu-fp16.xml")
    assert default_output("yolo.onnx", "cpu-ort", "fp32") == os.path.join("engines", "yolo-cpu-ort-fp32.onnx")


def test_an_existing_folder_as_output_gets_the_default_name_inside(tiny, tmp_path, capsys):
    from edgecsp.cli import main

    folder = tmp_path / "out"
    folder.mkdir()
    out = build(BuildConfig(tiny, target="cpu-ort", output=str(folder)))
    assert out == os.path.join(str(folder), "tiny-cpu-ort-fp32.onnx") and os.path.isfile(out)
    assert main(["build", "--target", "cpu-ort", tiny, "-o", str(folder), "-p", "int8", "--calib", "shapes:0",
                 "--count", "2"]) == 0
    assert os.path.isfile(os.path.join(str(folder), "tiny-cpu-ort-int8.onnx"))
    capsys.readouterr()
    assert main(["build", "--target", "cpu-ort", tiny, "-o", str(tmp_path / "wrong.xml")]) == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "target cpu-ort writes .onnx artefacts, but the output is" in err[0]
    assert not (tmp_path / "wrong.xml").exists()


def test_build_cpu_ort_with_defaults(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    out = build(BuildConfig(tiny, target="cpu-ort"))
    assert out == os.path.join("engines", "tiny-cpu-ort-fp32.onnx")
    meta = read_artefact_meta(out)
    assert meta.extra["target"] == "cpu-ort" and meta.extra["precision"] == "fp32"
    assert meta.input_form == "uint8_nhwc_bgr"  # CPU targets take the letterboxed uint8 frames by default
    assert meta._replace(extra={}, input_form="float_nchw") == tiny_meta()._replace(extra={})


@pytest.mark.openvino
def test_build_cpu_defaults_to_fp32_ir(tiny, tmp_path):
    out = build(BuildConfig(tiny, output=str(tmp_path / "ir" / "tiny.xml")))
    assert out.endswith("tiny.xml") and os.path.exists(out[:-4] + ".bin")
    assert read_artefact_meta(out).extra["precision"] == "fp32"


@pytest.mark.openvino
def test_without_onnx_the_backend_checks_the_source(tiny, tmp_path, monkeypatch):
    import edgecsp.build as build_module

    monkeypatch.setattr(build_module, "available", lambda module: module != "onnx")
    assert build(BuildConfig(tiny, output=str(tmp_path / "ok.xml"))).endswith("ok.xml")
    text = tmp_path / "text.onnx"
    text.write_text("not a model")
    with pytest.raises(InputError, match="OpenVINO cannot convert text.onnx"):
        build(BuildConfig(str(text), output=str(tmp_path / "t.xml")))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    with pytest.raises(InputError, match="no .onnx suffix"):
        build(BuildConfig(str(notes), output=str(tmp_path / "n.xml")))


def test_a_new_target_record_is_all_a_device_needs(tiny, tmp_path, monkeypatch):
    record = targets.Target(name="test-board", backend="onnxruntime", description="a board from a test",
                            precisions=("fp32",), default_precision="fp32", max_opset=13, device_python="3.6",
                            suffix=".onnx")
    monkeypatch.setattr(targets, "_TARGETS", targets._TARGETS + (record,))
    out = build(BuildConfig(tiny, target="test-board", output=str(tmp_path / "b.onnx")))
    assert read_artefact_meta(out).extra["target"] == "test-board"


def test_missing_source_says_to_export(tmp_path):
    with pytest.raises(InputError, match=r"not found: pass the path of an \.onnx exported by `edgecsp export`"):
        build(BuildConfig(str(tmp_path / "absent.onnx"), target="cpu-ort"))


def test_non_onnx_source_is_an_input_error(tmp_path):
    text = tmp_path / "readme.onnx"
    text.write_text("# not a model\n")
    with pytest.raises(InputError, match="readme.onnx is not a valid ONNX model"):
        build(BuildConfig(str(text), target="cpu-ort", output=str(tmp_path / "o.onnx")))
    assert not (tmp_path / "o.onnx").exists()


def test_source_without_metadata_names_the_export_options(tmp_path):
    foreign = tmp_path / "foreign.onnx"
    make_onnx(foreign, with_meta=False)
    with pytest.raises(MetadataError, match="no edgecsp metadata.*`edgecsp export MODEL.*--card"):
        build(BuildConfig(str(foreign), target="cpu", output=str(tmp_path / "f.xml")))


def test_unknown_target_and_precision_are_unsupported(tiny):
    with pytest.raises(UnsupportedError, match="unknown target 'tx3'.*cpu, cpu-ort"):
        build(BuildConfig(tiny, target="tx3"))
    with pytest.raises(UnsupportedError, match="cpu-ort does not support precision 'fp16'.*fp32"):
        build(BuildConfig(tiny, target="cpu-ort", precision="fp16"))


def test_opset_above_the_target_limit_is_unsupported(tmp_path):
    new = tmp_path / "new.onnx"
    make_onnx(new, opset=targets.get_target("cpu").max_opset + 1)
    with pytest.raises(UnsupportedError, match="opset 19 but target cpu takes at most 18"):
        build(BuildConfig(str(new), target="cpu", output=str(tmp_path / "n.xml")))


def test_output_must_match_the_target_and_spare_the_source(tiny, tmp_path):
    with pytest.raises(InputError, match="writes .xml artefacts"):
        build(BuildConfig(tiny, target="cpu", output=str(tmp_path / "x.onnx")))
    with pytest.raises(InputError, match="overwrite the source"):
        build(BuildConfig(tiny, target="cpu-ort", output=tiny))
