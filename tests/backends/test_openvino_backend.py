"""OpenVINO backend: IR build (precision, rt_info metadata, atomic write) and runner parity."""
import importlib
import os

import numpy as np
import pytest

from edgecsp.backends import get_backend, open_runner, read_artefact_meta
from edgecsp.errors import InputError, MetadataError, UnsupportedError

pytestmark = [pytest.mark.openvino, pytest.mark.onnx]

from tests.backends.test_onnxruntime_backend import SIZE, make_onnx, reference, tiny_meta  # noqa: E402


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.onnx"
    return str(path), make_onnx(path)


@pytest.fixture
def backend():
    return get_backend("openvino")


def read_ir(xml):
    import openvino

    return openvino.Core().read_model(xml)


def test_backend_reports_availability_and_version(backend):
    import openvino

    assert backend.is_available()
    assert openvino.__version__.startswith(backend.version())


@pytest.mark.parametrize("precision, weight_type", [("fp32", "f32"), ("fp16", "f16")])
def test_ir_weights_have_the_requested_precision(backend, tiny, tmp_path, precision, weight_type):
    xml = str(tmp_path / "tiny-{}.xml".format(precision))
    assert backend.build(tiny[0], xml, precision, "cpu", input_form="float") == xml
    assert os.path.exists(xml[:-4] + ".bin")
    counts = backend.weight_precisions(read_ir(xml))
    assert set(counts) == {weight_type}  # the tiny model has no constants that stay f32
    assert counts[weight_type] > 0


def test_metadata_round_trips_through_rt_info(backend, tiny, tmp_path):
    xml = str(tmp_path / "tiny.xml")
    backend.build(tiny[0], xml, "fp16", "cpu", input_form="float")
    raw = read_ir(xml).get_rt_info(list(backend.RT_INFO_PATH)).astype(str)
    assert list(backend.RT_INFO_PATH) == ["edgecsp", "meta"]
    meta = read_artefact_meta(xml)
    assert raw == meta.to_json()
    assert meta._replace(extra={}) == tiny_meta()._replace(extra={})  # --input float: the float_nchw form
    assert meta.extra["precision"] == "fp16" and meta.extra["target"] == "cpu"
    assert meta.extra["openvino"] == backend.version() and meta.extra["opset"] == 13


def test_plain_convert_model_ir_falls_back_to_framework_rt_info(backend, tiny, tmp_path):
    import openvino

    xml = str(tmp_path / "ovc.xml")
    openvino.save_model(openvino.convert_model(tiny[0]), xml)  # what a user running ovc gets
    assert read_artefact_meta(xml) == tiny_meta()


@pytest.mark.onnxruntime
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-5), ("fp16", 2e-2)])
def test_runner_matches_numpy_and_onnxruntime(backend, tiny, tmp_path, precision, tol):
    path, weights = tiny
    xml = str(tmp_path / "tiny.xml")
    backend.build(path, xml, precision, "cpu", input_form="float")
    batch = np.random.RandomState(3).rand(2, 3, SIZE, SIZE).astype(np.float32)
    with open_runner(xml, threads=1, inference_precision="f32") as runner:
        assert type(runner).__name__ == "OpenVINORunner"
        assert runner.input_name == "images"
        assert runner.input_shape == (None, 3, SIZE, SIZE)
        assert runner.output_names == ["p8", "p16"]
        ov_outputs = runner.infer(batch)
    with open_runner(path) as runner:
        ort_outputs = runner.infer(batch)
    for got, want, ort_out in zip(ov_outputs, reference(batch, weights), ort_outputs):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(got, ort_out, rtol=tol, atol=tol)


def test_fp32_ir_runs_in_f32_by_default(backend, tiny, tmp_path):
    """CPUs with AMX default to bf16; an fp32 build must compute in fp32 without asking."""
    path, weights = tiny
    xml = str(tmp_path / "tiny.xml")
    backend.build(path, xml, "fp32", "cpu", input_form="float")
    batch = np.random.RandomState(4).rand(1, 3, SIZE, SIZE).astype(np.float32)
    with open_runner(xml, hint="throughput") as runner:
        outputs = runner.infer(batch)
    for got, want in zip(outputs, reference(batch, weights)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_runner_checks_state_and_input(backend, tiny, tmp_path):
    xml = str(tmp_path / "tiny.xml")
    backend.build(tiny[0], xml, "fp32", "cpu", input_form="float")
    runner = open_runner(xml)
    with pytest.raises(RuntimeError, match="not active"):
        runner.infer(np.zeros((1, 3, SIZE, SIZE), np.float32))
    with runner:
        with pytest.raises(InputError, match="width 16 != 32"):
            runner.infer(np.zeros((1, 3, SIZE, 16), np.float32))
    with pytest.raises(InputError, match="LATENCY, THROUGHPUT"):
        open_runner(xml, hint="fast")
    with pytest.raises(InputError, match="available devices"):
        with open_runner(xml, device="NO_SUCH_DEVICE"):
            pass


def test_build_errors(backend, tiny, tmp_path):
    foreign = tmp_path / "foreign.onnx"
    make_onnx(foreign, with_meta=False)
    with pytest.raises(MetadataError, match="edgecsp export.*--card"):
        backend.build(str(foreign), str(tmp_path / "f.xml"), "fp32", "cpu")
    text = tmp_path / "text.onnx"
    text.write_text("not a model")
    with pytest.raises(InputError, match="text.onnx"):
        backend.build(str(text), str(tmp_path / "t.xml"), "fp32", "cpu")
    with pytest.raises(UnsupportedError, match="fp32, fp16, int8"):
        backend.build(tiny[0], str(tmp_path / "i.xml"), "fp8", "cpu")
    with pytest.raises(InputError, match="INT8 needs calibration data"):
        backend.build(tiny[0], str(tmp_path / "i.xml"), "int8", "cpu")
    with pytest.raises(InputError, match=r"\.xml"):
        backend.build(tiny[0], str(tmp_path / "i.bin"), "fp32", "cpu")
    assert not [n for n in os.listdir(str(tmp_path)) if n.endswith((".xml", ".bin"))]


def test_failed_save_leaves_no_artefact(backend, tiny, tmp_path, monkeypatch):
    # importlib: the package's ``build`` attribute is the function, which hides the module of the same name
    ov_build = importlib.import_module("edgecsp.backends.openvino.build")

    xml = tmp_path / "engines" / "tiny.xml"
    backend.build(tiny[0], str(xml), "fp32", "cpu")  # an older artefact at the same path
    real_save = ov_build._save

    def save_then_fail(ov, model, xml_path, precision):
        real_save(ov, model, xml_path, precision)
        raise KeyboardInterrupt  # interrupted after writing, before the renames

    monkeypatch.setattr(ov_build, "_save", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        backend.build(tiny[0], str(xml), "fp16", "cpu")
    assert read_artefact_meta(str(xml)).extra["precision"] == "fp32"  # the old one is untouched
    assert sorted(os.listdir(str(xml.parent))) == ["tiny.bin", "tiny.xml"]  # no staging folder left

    fresh = tmp_path / "fresh" / "tiny.xml"
    with pytest.raises(KeyboardInterrupt):
        backend.build(tiny[0], str(fresh), "fp32", "cpu")
    assert os.listdir(str(fresh.parent)) == []
