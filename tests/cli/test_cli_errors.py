"""Bad input through the CLI: one line on stderr, the documented exit code, no traceback, no partial output."""
import os

import pytest


from edgecsp.cli import main

pytestmark = [pytest.mark.onnx]



def _run(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def _one_line_error(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("edgecsp ")
    return lines[0]


def _onnx_without_meta(path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["images"], ["out"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_missing_engine(tmp_path, capsys):
    code, err = _run(capsys, ["infer", "--engine", str(tmp_path / "nope.onnx"), str(tmp_path)])
    assert code == 3
    assert "not found" in _one_line_error(err)


def test_engine_that_is_not_onnx(tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not a protobuf")
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    code, err = _run(capsys, ["infer", "--engine", str(bad), str(img_dir)])
    assert code == 3
    _one_line_error(err)


def test_onnx_without_metadata_names_the_export_options(tmp_path, capsys):
    path = str(tmp_path / "plain.onnx")
    _onnx_without_meta(path)
    code, err = _run(capsys, ["infer", "--engine", path, str(tmp_path)])
    assert code == 5
    line = _one_line_error(err)
    assert "edgecsp export" in line and "--card" in line
    code, err = _run(capsys, ["build", "--target", "cpu", path, "-o", str(tmp_path / "x.xml")])
    assert code == 5
    assert not (tmp_path / "x.xml").exists()


def test_unknown_target_and_precision(demo_onnx, tmp_path, capsys):
    code, err = _run(capsys, ["build", "--target", "toaster", demo_onnx, "-o", str(tmp_path / "a.xml")])
    assert code == 7
    assert "cpu" in _one_line_error(err)
    code, err = _run(capsys, ["build", "--target", "cpu", "--precision", "fp8", demo_onnx, "-o", str(tmp_path / "a.xml")])
    assert code == 7
    assert "fp32" in _one_line_error(err)
    assert os.listdir(str(tmp_path)) == []


def test_empty_folder_and_bad_videos(demo_onnx, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out_json = tmp_path / "out.jsonl"
    code, err = _run(capsys, ["infer", "--engine", demo_onnx, str(empty), "--save-json", str(out_json)])
    assert code == 3
    assert "no images" in _one_line_error(err)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00" * 2048)
    code, err = _run(capsys, ["infer", "--engine", demo_onnx, str(fake), "--save-json", str(out_json),
                              "--save", str(tmp_path / "o.mp4")])
    assert code == 3
    _one_line_error(err)
    assert not out_json.exists() and not (tmp_path / "o.mp4").exists()
    assert sorted(os.listdir(str(tmp_path))) == ["empty", "fake.mp4"]  # no temp files either


def test_truncated_video(demo_onnx, demo_video, tmp_path, capsys):
    video, _ = demo_video
    data = open(video, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    out_json = tmp_path / "cut.jsonl"
    code, err = _run(capsys, ["infer", "--engine", demo_onnx, str(cut), "--save-json", str(out_json), "--no-progress"])
    # a truncated mp4 either cannot be opened (exit 3, nothing written) or yields the frames before the cut
    if code == 0:
        assert 0 < sum(1 for _ in open(str(out_json))) < 60
    else:
        assert code == 3
        _one_line_error(err)
        assert not out_json.exists()


def test_bad_thresholds(demo_onnx, tmp_path, capsys):
    code, err = _run(capsys, ["infer", "--engine", demo_onnx, str(tmp_path), "--conf", "1.5"])
    assert code == 3
    assert "--conf" in _one_line_error(err)


def test_usage_error_is_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build"])
    assert exc.value.code == 2


def test_gst_sources_fail_in_one_line_where_they_cannot_open(demo_onnx, tmp_path, capsys):
    # a folder has no Jetson GStreamer pipeline: refused before the model is loaded
    code, err = _run(capsys, ["infer", "--engine", demo_onnx, "--gst", str(tmp_path)])
    assert code == 3
    assert "no Jetson GStreamer pipeline" in _one_line_error(err)
    # pip's OpenCV has no GStreamer: the message says which OpenCV to use (on a Jetson the pipeline would open)
    import cv2

    from edgecsp.runtime.gstreamer import opencv_has_gstreamer

    if not opencv_has_gstreamer(cv2.getBuildInformation()):
        code, err = _run(capsys, ["infer", "--engine", demo_onnx, "--gst", "csi://0"])
        assert code == 3
        assert "without GStreamer" in _one_line_error(err)
