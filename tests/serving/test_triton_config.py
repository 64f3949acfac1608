"""Triton model repositories: every config parses with Triton's own schema (tritonclient's model_config_pb2),
round-trips, and says the dims the artefact really has; bad input fails in one line and writes nothing."""
import json
import os

import pytest

from tests.gates import needs, optional

from edgecsp.cli import main
from edgecsp.errors import InputError
from edgecsp.runtime.meta import ModelMeta
from edgecsp.serving.repository import package_triton, python_repository
from edgecsp.serving.triton_config import (META_PARAMETER, TensorSpec, Interface, batch_plan, check_model_name,
                                           default_model_name, to_pbtxt)

pytestmark = pytest.mark.tritonclient


def parse(path):
    """``config.pbtxt`` through Triton's schema; a round trip through the text format must give the same."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    with open(path) as handle:
        config = text_format.Parse(handle.read(), model_config_pb2.ModelConfig())
    again = text_format.Parse(text_format.MessageToString(config), model_config_pb2.ModelConfig())
    assert again == config
    return config


def dims_of(config, batched):
    lead = [None] if batched else []
    return ({t.name: lead + list(t.dims) for t in config.input}, {t.name: lead + list(t.dims) for t in config.output})


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory, demo_card):
    needs("torch", "onnxruntime")
    from edgecsp.export.onnx_export import ExportConfig, export

    out = str(tmp_path_factory.mktemp("dyn") / "demo_dynamic.onnx")
    return export(ExportConfig(card=demo_card, output=out, dynamic_batch=True)).path


@pytest.mark.onnxruntime
def test_onnx_repository_matches_the_model(demo_onnx, tmp_path):
    import onnxruntime as ort

    packaged = package_triton(str(tmp_path / "repo"), demo_onnx, name="demo")
    config = parse(os.path.join(packaged.folder, "config.pbtxt"))
    assert config.backend == "onnxruntime" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")  # a static batch: Triton cannot batch it
    session = ort.InferenceSession(demo_onnx, providers=["CPUExecutionProvider"])
    inputs, outputs = dims_of(config, batched=False)
    assert inputs == {i.name: list(i.shape) for i in session.get_inputs()}
    assert outputs == {o.name: list(o.shape) for o in session.get_outputs()}
    assert config.input[0].data_type == 11 and config.output[0].data_type == 11  # TYPE_FP32
    meta = ModelMeta.from_json(config.parameters[META_PARAMETER].string_value)
    assert meta.names == ["circle", "square", "triangle", "star", "cross"] and meta.params.heads[0].anchors
    assert sorted(packaged.files) == ["demo/1/model.onnx", "demo/config.pbtxt"]
    with open(os.path.join(packaged.folder, "1", "model.onnx"), "rb") as a, open(demo_onnx, "rb") as b:
        assert a.read() == b.read()  # the artefact as it is


@pytest.mark.onnxruntime
def test_dynamic_batch_gets_dynamic_batching(dynamic_onnx, tmp_path):
    packaged = package_triton(str(tmp_path / "repo"), dynamic_onnx, max_batch=4, instances=2)
    config = parse(os.path.join(packaged.folder, "config.pbtxt"))
    assert packaged.name == "demo_dynamic" and config.max_batch_size == 4
    assert config.HasField("dynamic_batching") and config.instance_group[0].count == 2
    assert list(config.input[0].dims) == [3, 256, 256] and config.input[0].data_type == 11  # TYPE_FP32
    assert [list(o.dims) for o in config.output] == [[30, 16, 16], [30, 8, 8]]


@pytest.mark.openvino
def test_openvino_repository_matches_the_ir(demo_ir, tmp_path):
    import openvino as ov

    packaged = package_triton(str(tmp_path / "repo"), demo_ir, name="demo-ir")
    config = parse(os.path.join(packaged.folder, "config.pbtxt"))
    assert config.backend == "openvino" and config.default_model_filename == "model.xml"
    model = ov.Core().read_model(os.path.join(packaged.folder, "1", "model.xml"))  # .bin found beside it
    inputs, outputs = dims_of(config, batched=False)
    assert inputs == {p.get_any_name(): list(p.get_shape()) for p in model.inputs}
    assert outputs == {p.get_any_name(): list(p.get_shape()) for p in model.outputs}
    assert config.input[0].data_type == 2  # TYPE_UINT8: the IR takes the letterboxed uint8 frames
    assert config.instance_group[0].kind == 2  # KIND_CPU


def _engine(tmp_path, demo_onnx, max_batch=4, decoded=False):
    """A TensorRT engine file with its manifest (the plan's bytes cannot be built here; the config comes from the
    manifest, as it would on the device)."""
    from edgecsp._files import file_sha256
    from edgecsp.backends import read_artefact_meta
    from edgecsp.backends.tensorrt.manifest import EngineManifest, manifest_path, to_json

    engine = tmp_path / "demo.engine"
    engine.write_bytes(b"a plan built on the device")
    meta = read_artefact_meta(demo_onnx)
    if decoded:  # built from an --decode-in-graph export: one (N, M, 6) output
        meta = meta._replace(layout="detections", outputs=["output"], params={
            "columns": ["x1", "y1", "x2", "y2", "score", "class"], "nms_applied": False, "rows": 960})
    record = EngineManifest(engine=engine.name, engine_sha256=file_sha256(str(engine)), tensorrt="8.2.1.8",
                            gpu="NVIDIA Tegra X2", sm="6.2", target="tx2", precision="fp16", input_name="images",
                            input_shape=[None, 3, 256, 256], outputs=list(meta.outputs), onnx_sha256="b" * 64,
                            meta=meta.to_dict(), max_batch=max_batch)
    with open(manifest_path(str(engine)), "w") as handle:
        handle.write(to_json(record))
    return str(engine)


@pytest.mark.onnxruntime
def test_tensorrt_repository_from_the_manifest(demo_onnx, tmp_path):
    engine = _engine(tmp_path, demo_onnx)
    packaged = package_triton(str(tmp_path / "repo"), engine, name="demo_trt")
    config = parse(os.path.join(packaged.folder, "config.pbtxt"))
    assert config.platform == "tensorrt_plan" and config.backend == "tensorrt"
    assert config.max_batch_size == 4 and config.instance_group[0].kind == 1  # KIND_GPU
    assert list(config.input[0].dims) == [3, 256, 256] and [list(o.dims) for o in config.output] == [
        [30, 16, 16], [30, 8, 8]]
    assert sorted(packaged.files) == ["demo_trt/1/model.plan", "demo_trt/config.pbtxt"]
    with pytest.raises(InputError, match="--max-batch 8 is above the 4 that demo.engine was built for: rebuild it "
                                         "with `edgecsp build --max-batch 8` or pass --max-batch 4"):
        package_triton(str(tmp_path / "repo"), engine, name="again", max_batch=8)
    assert not os.path.exists(str(tmp_path / "repo" / "again"))


@pytest.mark.onnxruntime
def test_tensorrt_repository_of_a_decoded_engine(demo_onnx, tmp_path):
    engine = _engine(tmp_path, demo_onnx, decoded=True)
    config = parse(os.path.join(package_triton(str(tmp_path / "repo"), engine, name="ds").folder, "config.pbtxt"))
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [960, 6])]


@pytest.mark.openvino
def test_python_backend_repository(demo_ir, tmp_path):
    packaged = python_repository(str(tmp_path / "repo"), demo_ir, name="demo", max_batch=6)
    config = parse(os.path.join(packaged.folder, "config.pbtxt"))
    assert config.backend == "python" and config.max_batch_size == 6 and config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [256, 256, 3] and config.input[0].format == 1  # FORMAT_NHWC
    artefact = config.parameters["edgecsp_artefact"].string_value
    assert os.path.isfile(os.path.join(packaged.folder, "1", artefact))
    assert os.path.isfile(os.path.join(packaged.folder, "1", artefact[:-4] + ".bin"))
    paths = json.loads(config.parameters["edgecsp_python_paths"].string_value)
    import edgecsp

    assert os.path.dirname(os.path.dirname(os.path.abspath(edgecsp.__file__))) == paths[0]


def test_names_and_batches():
    assert check_model_name("yolo_v4.tiny-1") == "yolo_v4.tiny-1"
    # "evil\n": a rule ending in "$" lets a final newline through; the message shows it escaped, on one line
    for bad in ("", ".hidden", "-x", "a/b", "a b", "x" * 129, "caf\u00e9", "evil\n", "x" * 128 + "\n", "a\x00"):
        with pytest.raises(InputError, match="is not a Triton model name") as error:
            check_model_name(bad)
        assert "\n" not in str(error.value)
    assert default_model_name("my model (v2)") == "my_model__v2_" and default_model_name("...") == "model"
    static = Interface([TensorSpec("images", "float32", (1, 3, 32, 32))], [])
    assert batch_plan(static, None, "m.onnx") == 0 and batch_plan(static, 1, "m.onnx") == 0
    with pytest.raises(InputError, match="static batch of 1, so --max-batch 2 cannot apply: export it with "
                                         "`edgecsp export --dynamic-batch`"):
        batch_plan(static, 2, "m.onnx")
    dynamic = Interface([TensorSpec("images", "float32", (None, 3, 32, 32))], [])
    assert batch_plan(dynamic, None, "m.onnx") == 8 and batch_plan(dynamic, 32, "m.onnx") == 32
    for bad in (0, -1, True, 2.5):
        with pytest.raises(InputError, match="--max-batch must be a positive integer"):
            batch_plan(dynamic, bad, "m.onnx")


def test_pbtxt_quotes_what_needs_quoting():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = 'names "a\\b"\nnext line, caf\u00e9'
    config = text_format.Parse(to_pbtxt({"name": "m", "parameters": {"k": text}}), model_config_pb2.ModelConfig())
    assert config.parameters["k"].string_value == text


@pytest.mark.onnxruntime
def test_bad_input_fails_in_one_line_and_writes_nothing(demo_onnx, tmp_path, capsys, monkeypatch):
    onnx = optional("onnx")
    needs("onnx")
    repo = tmp_path / "repo"
    (repo / "taken").mkdir(parents=True)
    (repo / "taken" / "config.pbtxt").write_text("name: \"taken\"\n")
    bare = str(tmp_path / "bare.onnx")
    model = onnx.load(demo_onnx)
    del model.metadata_props[:]
    onnx.save(model, bare)
    cases = [
        (["--model", "taken", "-e", demo_onnx], 3, "already exists and is not empty: pass another --model"),
        (["-e", bare], 5, "bare.onnx has no edgecsp metadata"),
        (["--model", "bad/name", "-e", demo_onnx], 3, "--model 'bad/name' is not a Triton model name"),
        (["--max-batch", "4", "-e", demo_onnx], 3, "static batch of 1, so --max-batch 4 cannot apply"),
        (["-e", str(tmp_path / "missing.onnx")], 3, "missing.onnx"),
        (["--instances", "0", "-e", demo_onnx], 3, "--instances must be a positive integer"),
    ]
    for args, code, message in cases:
        assert main(["package", "--triton", str(repo)] + args) == code
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], (args, err)
    assert sorted(os.listdir(str(repo))) == ["taken"]  # nothing half-written
    # a failure while the files are copied leaves no model folder either
    import shutil

    def broken(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", broken)
    with pytest.raises(InputError, match="No space left on device"):  # edgecsp._files: a full disk, in one line
        package_triton(str(repo), demo_onnx, name="half")
    assert sorted(os.listdir(str(repo))) == ["taken"]


def test_server_urls_take_ascii_ports_only():
    from edgecsp.serving.client import parse_server_url

    assert parse_server_url("grpc://127.0.0.1:8001") == "127.0.0.1:8001"
    for bad in ("grpc://h:\u00b2", "grpc://h:\u0663", "grpc://h:8001\n", "grpc://h:0", "grpc://h:65536", "grpc://:1"):
        with pytest.raises(InputError, match="--server .* pass grpc://HOST:PORT"):
            parse_server_url(bad)


@pytest.mark.onnxruntime
def test_package_force_replaces_the_model_folder(demo_onnx, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["package", "--triton", str(repo), "-e", demo_onnx, "--model", "demo"]) == 0
    (repo / "demo" / "2").mkdir()  # a stale version the new package does not have
    (repo / "other").mkdir()  # another model of the repository
    assert main(["package", "--triton", str(repo), "-e", demo_onnx, "--model", "demo"]) == 3
    assert "--force to replace it" in capsys.readouterr().err
    assert main(["package", "--triton", str(repo), "-e", demo_onnx, "--model", "demo", "--max-batch", "1",
                 "--instances", "2", "--force"]) == 0
    assert sorted(os.listdir(str(repo / "demo"))) == ["1", "config.pbtxt"]  # replaced whole
    assert parse(str(repo / "demo" / "config.pbtxt")).instance_group[0].count == 2
    assert sorted(os.listdir(str(repo))) == ["demo", "other"]
    # the model folder holding the artefact given is never replaced, even with --force
    inside = str(repo / "demo" / "1" / "model.onnx")
    assert main(["package", "--triton", str(repo), "-e", inside, "--model", "demo", "--force"]) == 3
    assert "is a folder holding the source" in capsys.readouterr().err
    assert os.path.isfile(inside)
