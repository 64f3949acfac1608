"""The CLI commands in-process: models, targets, data, export -> build -> infer."""
import json
import os

import pytest

from tests.gates import host_targets, needs

from edgecsp.cli import main


def test_models_lists_the_registry(capsys):
    needs("torch")
    from edgecsp.models import list_models

    assert main(["models", "--json", "--no-flops"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [e.name for e in list_models()]
    by_name = {r["name"]: r for r in rows}
    assert abs(by_name["cspdarknet53"]["params_m"] - 27.61) / 27.61 < 0.02
    assert by_name["shapes_tiny_csp"]["task"] == "detect"


def test_models_table_has_gflops(capsys):
    needs("torch")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = [l for l in out.splitlines() if l.startswith("cspdarknet53")][0]
    assert "13.07" in line  # 2 x MACs at 256x256, the paper's BFLOPs


def test_targets(capsys):
    assert main(["targets", "--json"]) == 0
    names = [t["name"] for t in json.loads(capsys.readouterr().out)]
    assert "cpu" in names and "cpu-ort" in names


def test_data_shapes_and_video(tmp_path, capsys):
    needs("opencv")
    assert main(["data", "shapes", str(tmp_path / "ds"), "--count", "3", "--seed", "5"]) == 0
    doc = json.load(open(str(tmp_path / "ds" / "annotations.json")))
    assert len(doc["images"]) == 3
    assert main(["data", "video", str(tmp_path / "v.mp4"), "--frames", "5"]) == 0
    assert os.path.getsize(str(tmp_path / "v.mp4")) > 0


@pytest.mark.parametrize("target,suffix", [(t.name, t.suffix) for t in host_targets()])
def test_build_and_infer_each_cpu_target(target, suffix, demo_onnx, demo_video, tmp_path, capsys):
    from edgecsp.targets import get_target

    needs(get_target(target).backend)
    video, _ = demo_video
    art = str(tmp_path / ("demo" + suffix))
    assert main(["build", "--target", target, demo_onnx, "-o", art]) == 0
    out_json, out_video = str(tmp_path / "d.jsonl"), str(tmp_path / "d.mp4")
    assert main(["infer", "--engine", art, video, "--save-json", out_json, "--save", out_video, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fps" in out and "preprocess" in out and "wait" in out
    lines = [json.loads(l) for l in open(out_json)]
    assert [l["frame"] for l in lines] == list(range(60))
    assert sum(len(l["detections"]) for l in lines) > 60  # several shapes per frame are found
    import cv2

    cap = cv2.VideoCapture(out_video)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60


def test_infer_on_image_folder_saves_annotated_images(demo_onnx, tmp_path, capsys):
    needs("opencv")
    from edgecsp.data.shapes import generate_dataset

    generate_dataset(str(tmp_path / "ds"), 4, seed=3)
    out_dir = tmp_path / "annotated"
    assert main(["infer", "--engine", demo_onnx, str(tmp_path / "ds" / "images"), "--save", str(out_dir),
                 "--no-progress"]) == 0
    assert len(os.listdir(str(out_dir))) == 4
