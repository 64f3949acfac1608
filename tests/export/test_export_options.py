"""Export options and bad input: opsets, dynamic batch, checkpoints, Mish decomposition."""
import os

import numpy as np
import pytest

from tests.gates import optional

torch = optional("torch")
onnx = optional("onnx")

from edgecsp.errors import InputError, UnsupportedError  # noqa: E402
from edgecsp.export.onnx_export import ExportConfig, export, run_onnx, sample_input  # noqa: E402
from edgecsp.models import create_model  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime]


def test_mish_is_softplus_tanh_mul_at_opset_13_and_17(tmp_path):
    for opset in (13, 17):
        out = str(tmp_path / "csp{}.onnx".format(opset))
        export(ExportConfig(model="yolov4_csp", output=out, input_size=(64, 64), opset=opset, simplify=False))
        model = onnx.load(out)
        ops = [n.op_type for n in model.graph.node]
        assert "Mish" not in ops
        assert {"Softplus", "Tanh", "Mul"} <= set(ops)
        assert model.opset_import[0].version == opset


def test_dynamic_batch_runs_batch_3(tmp_path):
    out = str(tmp_path / "dyn.onnx")
    export(ExportConfig(model="shapes_tiny_csp", output=out, dynamic_batch=True, input_size=(64, 64)))
    outs = run_onnx(out, sample_input((3, 3, 64, 64)))
    assert outs[0].shape[0] == 3
    dim = onnx.load(out).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch"


def test_checkpoint_is_loaded(tmp_path):
    model = create_model("shapes_tiny_csp")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.05)  # differs from a fresh random init, keeps activations in range
    ckpt = str(tmp_path / "w.pt")
    torch.save(model.state_dict(), ckpt)
    out = str(tmp_path / "w.onnx")
    export(ExportConfig(model="shapes_tiny_csp", checkpoint=ckpt, output=out, input_size=(64, 64)))
    x = sample_input((1, 3, 64, 64))
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x))
    got = run_onnx(out, x)
    fresh = create_model("shapes_tiny_csp").eval()(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(got[0], ref[0].numpy(), rtol=1e-3, atol=1e-4)
    assert np.max(np.abs(fresh - got[0])) > 1e-2  # the checkpoint, not the random init, was exported


def test_wrong_checkpoint_is_refused_and_nothing_written(tmp_path):
    ckpt = str(tmp_path / "other.pt")
    torch.save(create_model("yolov4_tiny_csp").state_dict(), ckpt)
    out = tmp_path / "x.onnx"
    with pytest.raises(InputError, match="does not fit model shapes_tiny_csp"):
        export(ExportConfig(model="shapes_tiny_csp", checkpoint=ckpt, output=str(out), input_size=(64, 64)))
    assert not out.exists()
    assert os.listdir(str(tmp_path)) == ["other.pt"]


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="unknown model"):
        export(ExportConfig(model="nope", output=str(tmp_path / "a.onnx")))
    with pytest.raises(InputError, match="not found"):
        export(ExportConfig(model="shapes_tiny_csp", checkpoint=str(tmp_path / "missing.pt")))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        export(ExportConfig(model="shapes_tiny_csp", checkpoint=str(garbage)))
    with pytest.raises(UnsupportedError, match="opset 9"):
        export(ExportConfig(model="shapes_tiny_csp", opset=9, output=str(tmp_path / "b.onnx")))
    with pytest.raises(InputError, match=r"not a multiple of 32, the largest stride of shapes_tiny_csp: use a "
                                         r"multiple of 32 \(e.g. --input-size 96x96\)"):
        export(ExportConfig(model="shapes_tiny_csp", input_size=(100, 100), output=str(tmp_path / "c.onnx")))
    assert not (tmp_path / "b.onnx").exists()


def test_default_input_size_comes_from_the_registry(tmp_path):
    out = str(tmp_path / "cls.onnx")
    report = export(ExportConfig(model="cspdarknet53", output=out, simplify=False, verify=False))
    assert report.meta.input_size == (256, 256)  # the registry's default, not a generic 224
    dims = [d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 256, 256]


def test_skipped_stages_print_no_nan(tmp_path, capsys):
    """--no-simplify / --no-verify: the output says the stage was skipped, not `simplified vs raw nan`."""
    from edgecsp.cli import main

    assert main(["export", "shapes_tiny_csp", "--input-size", "64", "--no-simplify", "-o",
                 str(tmp_path / "a.onnx")]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "simplif" not in out.replace("not simplified", "")
    assert "verified: PyTorch vs ONNX Runtime max |diff|" in out and "nodes, not simplified" in out
    assert main(["export", "shapes_tiny_csp", "--input-size", "64", "--no-verify", "-o",
                 str(tmp_path / "b.onnx")]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "not verified" in out and "simplifying with onnxsim" in out
