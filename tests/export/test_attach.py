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
    assert main(["infer", "--engine", out, demo_video[0], "--max-frames", "5", "--save-json", str(tmp_path / "d.jsonl"),
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


def test_anchors_in_the_wrong_order_are_refused_with_the_order_that_fits(bare_onnx, tmp_path, capsys):
    """Large-to-small groups against outputs ordered small-to-large stride: a one-line refusal naming the fix."""
    path, names = bare_onnx
    out = tmp_path / "x.onnx"
    assert main(["export", "--onnx", path, "--names", names, "--anchors", "46,46,66,66,96,96; 14,14,22,22,32,32",
                 "--scale-x-y", "2", "--new-coords", "-o", str(out)]) == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "the anchors shrink as the stride grows (stride 16: 46,46" in err[0], err
    assert '--anchors "14,14,22,22,32,32; 46,46,66,66,96,96"' in err[0]
    assert not out.exists()


def test_anchor_order_doubts_of_three_heads():
    from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta

    def doubts(groups):
        heads = [HeadMeta(s, [(a, a)], 1.0, False) for s, a in zip((8, 16, 32), groups)]
        meta = yolo_meta(["x"], (256, 256), heads, outputs=["a", "b", "c"])
        return meta.spec.import_doubts(meta, {"a": "Conv", "b": "Conv", "c": "Conv"})

    assert doubts([10, 40, 120]) == ([], [])
    refused, _ = doubts([120, 40, 10])
    assert len(refused) == 1 and '--anchors "10,10; 40,40; 120,120"' in refused[0]
    refused, warned = doubts([10, 120, 40])  # partly out of order: may be a model's own choice, a warning
    assert refused == [] and len(warned) == 1 and "do not grow with the stride" in warned[0]


def _with_sigmoid(path, tmp_path):
    """The bare demo export with a Sigmoid on each head: a graph that applies the logistic itself."""
    model = onnx.load(path)
    for output in model.graph.output:
        raw = output.name + "_raw"
        for node in model.graph.node:
            node.output[:] = [raw if o == output.name else o for o in node.output]
        model.graph.node.append(onnx.helper.make_node("Sigmoid", [raw], [output.name]))
    out = str(tmp_path / "sigmoid.onnx")
    onnx.save(model, out)
    return out


def test_activation_doubts_are_warnings(bare_onnx, tmp_path, caplog):
    import logging

    path, names = bare_onnx
    activated = _with_sigmoid(path, tmp_path)
    cases = [
        (activated, [], "every output comes out of a Sigmoid, but --activated was not given"),
        (activated, ["--activated"], "such heads are new_coords ones, pass --new-coords"),
        (path, ["--activated", "--new-coords"], "--activated was given, but head16, head32 come straight from a Conv"),
    ]
    for i, (source, extra, message) in enumerate(cases):
        caplog.clear()
        out = str(tmp_path / "d{}.onnx".format(i))
        with caplog.at_level(logging.WARNING, logger="edgecsp.export.attach"):
            assert main(["export", "--onnx", source, "--names", names, "--anchors", ANCHORS, "-o", out] + extra) == 0
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(message in w for w in warned), (extra, warned)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgecsp.export.attach"):  # a consistent description: silent
        assert main(["export", "--onnx", activated, "--names", names, "--anchors", ANCHORS, "--activated",
                     "--new-coords", "--scale-x-y", "2", "-o", str(tmp_path / "ok.onnx")]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
