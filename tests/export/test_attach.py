"""`edgecsp export --onnx`: describe an ONNX exported elsewhere so build and infer can run it."""
import pytest

from tests.gates import optional

onnx = optional("onnx")

from edgecsp.backends import read_artefact_meta  # noqa: E402
from edgecsp.cli import main  # noqa: E402
from edgecsp.runtime.meta import META_KEY  # noqa: E402

pytestmark = [pytest.mark.onnx]


@pytest.fixture()
def bare_onnx(demo_onnx, tmp_path):
    model = onnx.load(demo_onnx)
    del model.metadata_props[:]
    path = str(tmp_path / "bare.onnx")
    onnx.save(model, path)
    names = tmp_path / "names.txt"
    names.write_text("circle\nsquare\ntriangle\nstar\ncross\n")
    return path, str(names)


ANCHORS = "14,14,22,22,32,32; 46,46,66,66,96,96"


def test_attach_reproduces_the_exported_metadata(bare_onnx, demo_onnx, tmp_path, capsys):
    path, names = bare_onnx
    out = str(tmp_path / "described.onnx")
    assert main(["export", "--onnx", path, "--names", names, "--anchors", ANCHORS, "--scale-x-y", "2",
                 "--new-coords", "-o", out]) == 0
    got, ref = read_artefact_meta(out), read_artefact_meta(demo_onnx)
    assert got.params.heads == ref.params.heads
    assert (got.names, got.input_size, got.outputs, got.params.activated) == (ref.names, ref.input_size, ref.outputs, False)
    assert META_KEY not in {p.key for p in onnx.load(path).metadata_props}  # the source is untouched


def test_attach_then_infer(bare_onnx, demo_video, tmp_path, capsys):
    path, names = bare_onnx
    out = str(tmp_path / "described.onnx")
    assert main(["export", "--onnx", path, "--names", names, "--anchors", ANCHORS, "--scale-x-y", "2",
                 "--new-coords", "-o", out]) == 0
    assert main(["infer", "--engine", out, demo_video[0], "--max-frames", "5", "--json", str(tmp_path / "d.jsonl"),
                 "--no-progress"]) == 0
    assert len(open(str(tmp_path / "d.jsonl")).readlines()) == 5


@pytest.mark.parametrize("anchors,message", [
    ("14,14,22,22; 46,46,66,66", "'head16' is shaped (1, 30, 16, 16) but its yolo_raw metadata (5 classes"),
    ("14,14,22,22,32,32", "--anchors has 1 groups but the model has 2 outputs"),
    ("14,14,22", "not an even list"),
])
def test_attach_errors(bare_onnx, tmp_path, capsys, anchors, message):
    path, names = bare_onnx
    out = tmp_path / "x.onnx"
    assert main(["export", "--onnx", path, "--names", names, "--anchors", anchors, "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_attach_needs_names_and_anchors(bare_onnx, capsys):
    assert main(["export", "--onnx", bare_onnx[0]]) == 3  # raw heads without anchors: not recognisable
    err = capsys.readouterr().err
    assert "cannot tell the output layout" in err and "--layout" in err and "yolo_raw (--anchors" in err


def test_a_dynamic_export_takes_the_size_its_producer_wrote():
    """Ultralytics writes imgsz: a dynamic export (dynamic=True) is imported at that size without --input-size."""
    from onnx import helper

    from edgecsp.export.attach import producer_input_size

    model = helper.make_model(helper.make_graph([], "g", [], []))
    for text, want in (("[640, 480]", (640, 480)), ("320", (320, 320)), ("[0, 640]", None), ("'x'", None),
                       ("[" * 100, None), ("__import__('os')", None), (None, None)):
        del model.metadata_props[:]
        if text is not None:
            helper.set_model_props(model, {"imgsz": text})
        assert producer_input_size(model) == want, text


def test_an_output_named_like_a_scratch_file_is_written(bare_onnx, tmp_path):
    """The import's scratch copy lives beside the staged output under a name no output can have."""
    path, names = bare_onnx
    out = tmp_path / "original.onnx"
    assert main(["export", "--onnx", path, "--names", names, "--anchors", ANCHORS, "--scale-x-y", "2",
                 "--new-coords", "-o", str(out)]) == 0
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
