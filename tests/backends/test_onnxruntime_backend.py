"""ONNX Runtime backend: runner parity with numpy, input/state checks, metadata, cpu-ort build.

``make_onnx`` and ``reference`` build the tiny two-head test model; the other backend tests import them.
"""
import os

import numpy as np
import pytest

from edgecsp.backends import get_backend, open_runner, read_artefact_meta
from edgecsp.errors import InputError, MetadataError, UnsupportedError
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.meta import META_KEY

pytestmark = [pytest.mark.onnxruntime, pytest.mark.onnx]

SIZE = 32
NAMES = ["cat", "dog"]
CHANNELS = 2 * (5 + len(NAMES))  # two anchors per head


def tiny_meta():
    return yolo_meta(names=NAMES, input_size=(SIZE, SIZE), model="tiny-test",
                     heads=[HeadMeta(8, [(10.0, 13.0), (16.0, 30.0)]), HeadMeta(16, [(33.0, 23.0), (30.0, 61.0)])],
                     outputs=["p8", "p16"], extra={"opset": 13})


def make_onnx(path, with_meta=True, batch="batch", opset=13, seed=0):
    """A two-head model: MaxPool(stride s) -> 1x1 Conv per head; graph outputs listed p16 first on purpose.

    Returns the weights ``{"p8": (w, b), "p16": (w, b)}`` for ``reference``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(seed)
    weights, nodes, inits = {}, [], []
    for name, stride in (("p8", 8), ("p16", 16)):
        w = rng.randn(CHANNELS, 3, 1, 1).astype(np.float32)
        b = rng.randn(CHANNELS).astype(np.float32)
        weights[name] = (w, b)
        inits += [numpy_helper.from_array(w, "w_" + name), numpy_helper.from_array(b, "b_" + name)]
        nodes += [helper.make_node("MaxPool", ["images"], ["pool_" + name], kernel_shape=[stride, stride],
                                   strides=[stride, stride]),
                  helper.make_node("Conv", ["pool_" + name, "w_" + name, "b_" + name], [name])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, CHANNELS, SIZE // s, SIZE // s])
               for n, s in (("p16", 16), ("p8", 8))]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "images", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if with_meta:
        helper.set_model_props(model, {META_KEY: tiny_meta().to_json()})
    onnx.save(model, str(path))
    return weights


def reference(batch, weights):
    """numpy outputs of ``make_onnx``'s model, in meta order (p8, p16)."""
    outs = []
    for name, stride in (("p8", 8), ("p16", 16)):
        n, c, h, w = batch.shape
        pooled = batch.reshape(n, c, h // stride, stride, w // stride, stride).max(axis=(3, 5))
        wt, b = weights[name]
        outs.append(np.einsum("oc,nchw->nohw", wt[:, :, 0, 0], pooled) + b[None, :, None, None])
    return outs


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.onnx"
    return str(path), make_onnx(path)


def test_backend_reports_availability_and_version():
    backend = get_backend("onnxruntime")
    assert backend.is_available()
    import onnxruntime

    assert backend.version() == onnxruntime.__version__


def test_runner_matches_numpy_reference_in_meta_order(tiny):
    path, weights = tiny
    batch = np.random.RandomState(1).rand(2, 3, SIZE, SIZE).astype(np.float32)
    with open_runner(path, threads=1) as runner:
        assert type(runner).__name__ == "OnnxRuntimeRunner"
        assert runner.meta == tiny_meta()
        assert runner.input_name == "images"
        assert runner.input_shape == (None, 3, SIZE, SIZE)
        assert runner.output_names == ["p8", "p16"]  # meta order, not the graph's (p16 first)
        outputs = runner.infer(batch)
    assert [o.shape for o in outputs] == [(2, CHANNELS, 4, 4), (2, CHANNELS, 2, 2)]
    for got, want in zip(outputs, reference(batch, weights)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_use_outside_with_is_a_clear_error(tiny):
    runner = open_runner(tiny[0])
    batch = np.zeros((1, 3, SIZE, SIZE), np.float32)
    with pytest.raises(RuntimeError, match="not active.*with"):
        runner.infer(batch)
    with runner:
        runner.infer(batch)
    assert not runner.active
    with pytest.raises(RuntimeError, match="not active"):
        runner.infer(batch)


@pytest.mark.parametrize("batch, message", [
    (np.zeros((1, 3, SIZE, SIZE), np.float64), "float32"),
    (np.zeros((3, SIZE, SIZE), np.float32), "4-D"),
    (np.zeros((1, 3, 64, 64), np.float32), "height 64 != 32"),
    (np.zeros((1, SIZE, SIZE, 3), np.float32), "channels 32 != 3"),
    ([[0.0]], "numpy"),
])
def test_bad_input_raises_one_line_input_error(tiny, batch, message):
    with open_runner(tiny[0]) as runner:
        with pytest.raises(InputError, match=message) as info:
            runner.infer(batch)
    assert "\n" not in str(info.value)


def test_static_batch_rejects_other_batch_sizes(tmp_path):
    path = tmp_path / "static.onnx"
    make_onnx(path, batch=1)
    with open_runner(str(path)) as runner:
        assert runner.input_shape == (1, 3, SIZE, SIZE)
        assert len(runner.infer(np.zeros((1, 3, SIZE, SIZE), np.float32))) == 2
        with pytest.raises(InputError, match="static batch of 1.*--dynamic-batch"):
            runner.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))


def test_model_without_metadata_names_the_export_options(tmp_path):
    path = tmp_path / "foreign.onnx"
    make_onnx(path, with_meta=False)
    with pytest.raises(MetadataError, match=r"foreign.onnx has no edgecsp metadata.*`edgecsp export MODEL.*--card"):
        with open_runner(str(path)):
            pass
    with pytest.raises(MetadataError, match="--card"):
        read_artefact_meta(str(path))


def test_not_an_onnx_file_is_an_input_error(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello, not a protobuf")
    with pytest.raises(InputError, match="notes.onnx"):
        with open_runner(str(path)):
            pass


def test_missing_file_and_bad_options_are_input_errors(tiny, tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_runner(str(tmp_path / "absent.onnx"))
    with pytest.raises(InputError, match="threads"):
        open_runner(tiny[0], threads=0)
    with pytest.raises(InputError, match="options"):
        open_runner(tiny[0], hint="LATENCY")


def test_build_cpu_ort_stamps_precision_and_target(tiny, tmp_path):
    path, weights = tiny
    out = str(tmp_path / "out" / "tiny-cpu-ort-fp32.onnx")
    backend = get_backend("onnxruntime")
    assert backend.build(path, out, "fp32", "cpu-ort", input_form="float") == out
    meta = read_artefact_meta(out)
    assert meta.extra["precision"] == "fp32" and meta.extra["target"] == "cpu-ort"
    assert meta.extra["onnxruntime"] == backend.version() and len(meta.extra["onnx_sha256"]) == 64
    assert meta._replace(extra={}) == tiny_meta()._replace(extra={})
    assert meta.extra["opset"] == 13  # what export wrote is kept
    batch = np.random.RandomState(2).rand(1, 3, SIZE, SIZE).astype(np.float32)
    with open_runner(out) as runner:
        for got, want in zip(runner.infer(batch), reference(batch, weights)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(str(tmp_path / "out"))) == ["tiny-cpu-ort-fp32.onnx"]


def test_build_cpu_ort_rejects_fp16_and_foreign_targets(tiny, tmp_path):
    backend = get_backend("onnxruntime")
    with pytest.raises(UnsupportedError, match="choose one of fp32"):
        backend.build(tiny[0], str(tmp_path / "x.onnx"), "fp16", "cpu-ort")
    with pytest.raises(UnsupportedError, match="openvino backend"):
        backend.build(tiny[0], str(tmp_path / "x.onnx"), "fp32", "cpu")


def test_failed_build_leaves_no_file(tiny, tmp_path, monkeypatch):
    import onnx

    def broken_save(model, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half written")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save", broken_save)
    folder = tmp_path / "engines"
    out = folder / "tiny.onnx"
    with pytest.raises(OSError, match="disk full"):
        get_backend("onnxruntime").build(tiny[0], str(out), "fp32", "cpu-ort")
    assert not out.exists()
    assert os.listdir(str(folder)) == []


def test_suffixes_choose_backends(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"")
    runner = open_runner(str(engine))
    assert type(runner).__name__ == "TensorRTRunner"
    with pytest.raises(MetadataError, match="manifest"):  # checked before TensorRT is even imported
        runner.__enter__()
    with pytest.raises(InputError, match="cannot tell which backend"):
        open_runner(str(tmp_path / "model.pt"))
