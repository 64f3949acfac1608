"""DeepStream: the nvinfer / deepstream-app configs for a model decoded in the graph parse back and name what
they should; bad input fails in one line. DeepStream itself never runs here (the decode appended to the graph is
checked in tests/export/test_decode_graph.py)."""
import configparser
import os

import numpy as np
import pytest

from edgecsp.cli import main
from edgecsp.errors import InputError

pytestmark = [pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime]


def test_deepstream_package(tmp_path, demo_card):
    from edgecsp.export.onnx_export import ExportConfig, export

    onnx_path = export(ExportConfig(card=demo_card, output=str(tmp_path / "demo-ds.onnx"), decode_in_graph=True,
                                    dynamic_batch=True)).path
    folder = tmp_path / "ds"
    assert main(["package", "--deepstream", str(folder), "-e", onnx_path, "--streams", "4"]) == 0
    assert sorted(os.listdir(str(folder))) == ["README.txt", "config_infer_primary.txt", "deepstream_app_config.txt",
                                                "demo-ds.onnx", "labels.txt"]
    assert "deepstream-app -c deepstream_app_config.txt" in (folder / "README.txt").read_text()
    assert "int8-calib-file" not in (folder / "config_infer_primary.txt").read_text()  # FP16 needs none
    infer = configparser.ConfigParser()
    infer.read(str(folder / "config_infer_primary.txt"))
    prop = infer["property"]
    assert prop["onnx-file"] == "demo-ds.onnx" and os.path.isfile(str(folder / prop["onnx-file"]))
    assert prop["parse-bbox-func-name"] == "NvDsInferParseYolo" and prop["network-mode"] == "2"  # fp16
    assert int(prop["num-detected-classes"]) == 5 and prop["batch-size"] == "4"
    assert float(prop["net-scale-factor"]) == pytest.approx(1 / 255.0) and prop["model-color-format"] == "0"
    assert prop["maintain-aspect-ratio"] == "1" and prop["symmetric-padding"] == "1"  # edgecsp's centred letterbox
    assert float(infer["class-attrs-all"]["pre-cluster-threshold"]) == 0.25
    labels = (folder / "labels.txt").read_text().splitlines()
    assert labels == ["circle", "square", "triangle", "star", "cross"]
    app = configparser.ConfigParser()
    app.read(str(folder / "deepstream_app_config.txt"))
    assert app["source0"]["num-sources"] == "4" and app["streammux"]["batch-size"] == "4"
    assert app["primary-gie"]["config-file"] == "config_infer_primary.txt"
    assert int(app["tiled-display"]["rows"]) * int(app["tiled-display"]["columns"]) >= 4


def test_deepstream_bad_input(tmp_path, demo_onnx, demo_card, demo_video, capsys):
    from edgecsp.export.onnx_export import ExportConfig, export
    from edgecsp.serving.deepstream import package_deepstream

    decoded = export(ExportConfig(card=demo_card, output=str(tmp_path / "d.onnx"), decode_in_graph=True)).path
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    cases = [
        ([str(tmp_path / "new"), "-e", demo_onnx], 5, "its yolo_raw outputs are raw; DeepStream's parser wants the boxes "
                                                 "decoded in the graph: export it with"),
        ([str(tmp_path / "new"), "-e", decoded, "--streams", "3"], 3, "3 streams need a batch of 3 but d.onnx takes 1"),
        ([str(taken), "-e", decoded], 3, "already exists and is not empty: pass a new folder, --force to replace it"),
        ([str(tmp_path / "new"), "-e", decoded, "--precision", "int8"], 3,
         "--precision int8 needs the calibration nvinfer builds from: pass --calib"),
        ([str(tmp_path / "new"), "-e", decoded, "--precision", "int8", "--calib", "shapes:1"], 3,
         "--precision int8 writes a calibration cache stamped for the device's TensorRT: pass --target"),
        ([str(tmp_path / "new"), "-e", decoded, "--precision", "int8", "--calib", "shapes:1", "--target", "cpu"], 3,
         "--target cpu does not run TensorRT"),
        ([str(tmp_path / "new"), "-e", decoded, "--calib", "shapes:1"], 3, "--calib and --calib-cache apply to --precision "
                                                                     "int8"),
        ([str(tmp_path / "new"), "-e", decoded, "--precision", "int8", "--calib-cache", demo_card], 3,
         "not a TensorRT calibration cache"),
    ]
    for args, code, message in cases:
        assert main(["package", "--deepstream"] + args) == code
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err
    assert not os.path.exists(str(tmp_path / "new")) and os.listdir(str(taken)) == ["x"]
    with pytest.raises(InputError, match="--precision must be one of"):
        package_deepstream(str(tmp_path / "new"), decoded, precision="int4")
    # edgecsp's own runtime runs the decoded export too (layout detections, NMS left to the runtime): each box's
    # best class, as the graph picks it, gives the raw model's single-label detections
    from edgecsp.backends import open_runner
    from edgecsp.runtime.pipeline import DetectOptions, detect
    from edgecsp.runtime.sources import open_source

    with open_source(demo_video[0]) as source:
        stream = iter(source)
        frames = [next(stream).image_bgr for _ in range(3)]
    options = DetectOptions(conf=0.25, multi_label=False)
    with open_runner(demo_onnx) as raw, open_runner(decoded) as graph:
        for frame in frames:
            want, got = detect(raw, [frame], options)[0], detect(graph, [frame], options)[0]
            assert len(want.scores) > 0 and got.class_ids.tolist() == want.class_ids.tolist()
            np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_nvinfer_gets_the_models_normalisation_and_padding():
    """nvinfer computes net-scale-factor * (pixel - offsets): mean/std with one std map onto it, the padding side
    onto symmetric-padding, the parser comes from the layout."""
    from edgecsp.runtime.meta import ModelMeta
    from edgecsp.serving.deepstream import infer_config

    meta = ModelMeta.from_dict({"format": 2, "names": ["a", "b"], "input_size": [64, 64], "layout": "detections",
                                "params": {"columns": ["x1", "y1", "x2", "y2", "score", "class"], "rows": 20},
                                "scale": 1.0, "mean": [103.5, 116.25, 123.75], "std": [57.5, 57.5, 57.5],
                                "pad_position": "top_left", "channel_order": "BGR", "outputs": ["output"]})
    prop, _ = infer_config("m.onnx", meta, "fp16", 1, "lib.so", 0.25, 0.45, 100)
    assert float(prop["net-scale-factor"]) == 1.0 / 57.5
    assert prop["offsets"] == "103.5;116.25;123.75" and prop["symmetric-padding"] == 0
    assert prop["model-color-format"] == 1 and prop["parse-bbox-func-name"] == "NvDsInferParseYolo"
    plain = meta._replace(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1 / 255.0, pad_position="center")
    prop, _ = infer_config("m.onnx", plain, "fp16", 1, "lib.so", 0.25, 0.45, 100)
    assert "offsets" not in prop and prop["symmetric-padding"] == 1


def test_deepstream_int8_writes_the_calibration_cache_nvinfer_reads(tmp_path, demo_card, capsys):
    """INT8: edgecsp's host calibration cache goes into the folder and int8-calib-file names it; the decode tail
    (head convolutions, the appended decode) has no scale in it, so TensorRT keeps it out of INT8."""
    import onnx

    from edgecsp.backends.tensorrt.cache_format import parse_cache
    from edgecsp.export.onnx_export import ExportConfig, export
    from edgecsp.onnxio import decode_tail

    decoded = export(ExportConfig(card=demo_card, output=str(tmp_path / "d.onnx"), decode_in_graph=True)).path
    folder = tmp_path / "ds"
    assert main(["package", "--deepstream", str(folder), "-e", decoded, "--precision", "int8", "--calib", "shapes:3",
                 "--count", "8", "--target", "orin"]) == 0
    assert "calib.cache" in capsys.readouterr().out
    infer = configparser.ConfigParser()
    infer.read(str(folder / "config_infer_primary.txt"))
    prop = infer["property"]
    assert prop["network-mode"] == "1" and prop["int8-calib-file"] == "calib.cache"
    version, algorithm, scales = parse_cache((folder / "calib.cache").read_text())
    assert (version, algorithm) == (8602, "EntropyCalibration2")  # orin: TensorRT 8.6.2, nvinfer's calibrator
    model = onnx.load(decoded)
    tail = set(decode_tail(model))
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in tail]
    assert convs and all(n.output[0] in scales and scales[n.output[0]] > 0 for n in convs)
    assert "images" in scales
    tail_outputs = [o for n in model.graph.node if n.name in tail for o in n.output]
    assert tail_outputs and not any(o in scales for o in tail_outputs)
    readme = (folder / "README.txt").read_text()
    assert "stamped for TensorRT 8.6.2 (orin)" in readme and "sed -i" in readme and "CUDA_VER=" in readme
    # a given cache is used as it is
    again = tmp_path / "ds2"
    assert main(["package", "--deepstream", str(again), "-e", decoded, "--precision", "int8", "--calib-cache",
                 str(folder / "calib.cache")]) == 0
    assert (again / "calib.cache").read_text() == (folder / "calib.cache").read_text()


def test_package_force_replaces_the_folder_whole(tmp_path, demo_card, capsys):
    from edgecsp.export.onnx_export import ExportConfig, export

    decoded = export(ExportConfig(card=demo_card, output=str(tmp_path / "d.onnx"), decode_in_graph=True)).path
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "stale.txt").write_text("old")
    assert main(["package", "--deepstream", str(folder), "-e", decoded]) == 3
    assert "--force to replace it" in capsys.readouterr().err and (folder / "stale.txt").exists()
    assert main(["package", "--deepstream", str(folder), "-e", decoded, "--force", "--streams", "1"]) == 0
    assert not (folder / "stale.txt").exists() and (folder / "config_infer_primary.txt").exists()
    # a folder holding the model given is never replaced
    inside = folder / "d.onnx"
    assert main(["package", "--deepstream", str(folder), "-e", str(inside), "--force"]) == 3
    assert inside.exists()
    assert main(["package", "--triton", str(tmp_path / "repo"), "-e", decoded, "--calib", "shapes:1"]) == 3
    assert "--calib applies to --deepstream" in capsys.readouterr().err
