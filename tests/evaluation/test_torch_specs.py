"""`edgecsp eval` and `edgecsp compare` take the PyTorch model itself (``torch:MODEL|CARD.json|CFG,WEIGHTS``, as
`edgecsp bench --vs` spells it), so that what export loses is measured: the demo card's export scores the mAP of
the PyTorch model it came from, and its raw outputs match it."""
import json
import os
import re
import shutil

import pytest

from edgecsp.cli import main
from tests.gates import available

pytestmark = [pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime]

HAS_COCO = available("faster_coco_eval") or available("pycocotools")


def one_line(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def test_eval_torch_baseline_measures_the_export(demo_onnx, demo_card, shapes_val, tmp_path, capsys):
    report = str(tmp_path / "eval.json")
    argv = ["eval", "--engine", demo_onnx, "--baseline", "torch:" + demo_card, "--data", shapes_val,
            "--report", report, "--no-progress"] + ([] if HAS_COCO else ["--no-coco"])
    assert main(argv) == 0
    data = json.load(open(report))
    torch_side, onnx_side = data["baseline"], data["artefact"]
    assert torch_side["artefact"] == "torch:" + demo_card and torch_side["backend"] == "torch"
    assert torch_side["model"] == "shapes_tiny_csp" and torch_side["precision"] == "fp32"
    assert onnx_side["map50"] > 0.5  # the trained demo model finds the shapes: the comparison means something
    # the export keeps the model: the same detections up to float rounding
    assert abs(data["drop"]["map50"]) < 0.5 and abs(data["drop"]["map50_95"]) < 0.5


def test_eval_torch_engine_alone(demo_card, shapes_val, capsys):
    assert main(["eval", "--engine", "torch:" + demo_card, "--data", shapes_val, "--no-progress", "--no-coco",
                 "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "mAP@0.5" in out and "shapes_tiny_csp.json" in out


def test_compare_export_with_the_pytorch_model(demo_onnx, demo_card, tmp_path, capsys):
    out = str(tmp_path / "cmp.json")
    assert main(["compare", "-e", demo_onnx, "-b", "torch:" + demo_card, "--count", "4", "--tensors", "--report", out]) == 0
    result = json.load(open(out))
    assert result["b"] == "torch:" + demo_card and result["passed"]
    assert [o["name"] for o in result["outputs"]] == ["head16", "head32"]
    assert all(o["shape"][2:] == [256 // int(o["name"][4:])] * 2 for o in result["outputs"])  # at A's 256x256
    assert max(o["max_abs"] for o in result["outputs"]) < 1e-3


def test_torch_model_runs_at_the_size_of_the_artefact_beside_it(demo_card, tmp_path):
    from edgecsp.export.onnx_export import ExportConfig, export
    from edgecsp.evaluation.torch_runner import open_model_runner

    small = export(ExportConfig(card=demo_card, output=str(tmp_path / "s.onnx"), input_size=(160, 192),
                                simplify=False, verify=False)).path
    with open_model_runner("torch:" + demo_card, beside=small) as runner:
        assert tuple(runner.meta.input_size) == (160, 192) and runner.input_shape == (None, 3, 160, 192)
    with open_model_runner("torch:" + demo_card) as runner:
        assert tuple(runner.meta.input_size) == (256, 256)


def test_bad_torch_specs_are_one_line(demo_card, shapes_val, tmp_path, capsys):
    card = str(tmp_path / "card.json")
    shutil.copyfile(demo_card, card)
    cases = [
        (["eval", "--engine", "torch:" + str(tmp_path / "none.json"), "--data", shapes_val], 3,
         "model card .*none.json not found"),
        (["eval", "--engine", "torch:no_such_model", "--data", shapes_val, "--no-coco"], 3, "no_such_model"),
        (["compare", "-e", "torch:" + str(tmp_path / "a.cfg") + "," + str(tmp_path / "a.weights"), "-b",
          "torch:" + card], 3,
         "torch:: file .*a.cfg not found"),
        (["eval", "--engine", "torch:" + card, "--data", shapes_val, "--report", card], 3,
         "--report .*card.json would overwrite"),
    ]
    for argv, code, message in cases:
        assert main(argv + ["--no-progress"] if argv[0] == "eval" else argv) == code, argv
        line = one_line(capsys)
        assert re.search(message, line), (message, line)
    with open(card) as handle:
        assert json.load(handle)["model"] == "shapes_tiny_csp"  # the input was not replaced
    assert not os.path.exists(str(tmp_path / "none.json"))
