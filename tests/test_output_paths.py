"""Inputs are sacred: no command writes an output over, or inside, what it reads (edgecsp._files.check_paths).

Every command declares the paths it reads and writes; one check compares them through symlinks, hard links,
``..`` and the companions of an artefact (an IR's .bin, an engine's manifest, the INT8 record), and refuses in
one line (exit 3) before any work. The fuzz test writes for real whatever the check lets through.
"""
import os
import shutil

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from edgecsp._files import (COMPANIONS, READS, READS_SPEC, WRITES, WRITES_INTO, atomic_folder, check_outputs_apart,
                            check_paths, companions, spec_paths, write_bytes_atomic)
from edgecsp.cli import main
from edgecsp.errors import EdgeCSPError, InputError
from tests.fuzzing import fuzz_settings, no_hang


def _refused(capsys, argv, *protected):
    """Run the CLI: exit 3, one line saying what it would overwrite, and every ``protected`` file unchanged."""
    before = [open(str(p), "rb").read() for p in protected]
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 3 and len(lines) == 1 and "Traceback" not in err, err
    assert [open(str(p), "rb").read() for p in protected] == before
    return lines[0]


@pytest.fixture
def tree(tmp_path):
    """m.xml + m.bin, a folder of images, an output folder holding an image, a symlink and a hard link."""
    for name in ("m.xml", "m.bin", "imgs/a.jpg", "out/a.jpg", "v.mp4"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(name.encode())
    os.symlink(str(tmp_path / "m.xml"), str(tmp_path / "link.xml"))
    os.symlink(str(tmp_path / "imgs"), str(tmp_path / "imgs-link"))
    os.link(str(tmp_path / "m.bin"), str(tmp_path / "hard.bin"))
    return tmp_path


@pytest.mark.parametrize("source, output, why", [
    ("m.xml", "m.xml", "would overwrite the source .*m.xml \\(source\\)"),
    ("m.xml", "link.xml", "would overwrite the source"),  # a symlink to the input
    ("link.xml", "m.xml", "would overwrite the source"),  # the input given through a symlink
    ("m.xml", "imgs/../m.xml", "would overwrite the source"),
    ("m.xml", ".//./m.xml/", "would overwrite the source"),  # duplicate slashes, a trailing one
    ("m.xml", "m.bin", "which belongs to the source"),  # the IR's weights
    ("m.xml", "hard.bin", "which belongs to the source"),  # a hard link to them (same st_dev + st_ino)
    ("m.xml", "m.calibration.json", "which belongs to the source"),  # its INT8 provenance record
    ("imgs", "imgs/", "would overwrite the source folder"),
    ("imgs", "imgs/annotated", "is inside the source folder"),
    ("imgs-link", "imgs/x.jsonl", "is inside the source folder"),
    ("out/a.jpg", "out", "is a folder holding the source"),  # folders are replaced whole
    ("imgs/a.jpg", ".", "is a folder holding the source"),
])
def test_an_output_that_is_or_holds_or_sits_in_an_input_is_refused(tree, source, output, why):
    with pytest.raises(InputError, match=why):
        check_outputs_apart([("source", str(tree / source))], [("--save", str(tree / output))])


def test_what_is_not_a_path_reads_nothing_and_a_specs_files_are_inputs(tree, monkeypatch):
    monkeypatch.chdir(str(tree))
    assert spec_paths(0) == spec_paths("0") == spec_paths("rtsp://cam/1") == spec_paths("csi://0") == []
    assert spec_paths("shapes:0") == spec_paths("torch:shapes_tiny_csp") == spec_paths(None) == []
    assert spec_paths("opencv:m.xml,m.bin,missing.weights") == ["m.xml", "m.bin"]
    assert spec_paths("v.mp4") == ["v.mp4"]
    check_outputs_apart([], [("--json", "0")])  # nothing read, nothing refused
    declaration = (("vs", "--vs", READS_SPEC), ("json", "--json", WRITES))
    check_paths({"vs": ["shapes:0", "grpc://h:1/m", "opencv:m.xml,v.mp4"], "json": "d.json"}, declaration)
    with pytest.raises(InputError, match="--json v.mp4 would overwrite the source v.mp4 \\(--vs\\)"):
        check_paths({"vs": ["shapes:0", "opencv:m.xml,v.mp4"], "json": "v.mp4"}, declaration)


def test_a_repository_gets_new_entries_beside_its_inputs_and_two_outputs_never_share_a_path(tree):
    check_outputs_apart([("artefact", str(tree / "out" / "a.jpg"))], [("--triton", str(tree / "out"), True)])
    with pytest.raises(InputError, match="would overwrite"):
        check_outputs_apart([("artefact", str(tree / "out"))], [("--triton", str(tree / "out"), True)])
    with pytest.raises(InputError, match="--save and --json both write"):
        check_outputs_apart([], [("--save", str(tree / "d.mp4")), ("--json", str(tree / "x" / ".." / "d.mp4"))])


def test_the_companions_are_the_backends_own_sidecars():
    from edgecsp.backends.onnxruntime.quantize import cache_path
    from edgecsp.backends.tensorrt.manifest import manifest_path
    from edgecsp.calibration.provenance import provenance_path
    from edgecsp.backends import list_backends

    assert set(s for b in list_backends() for s in b.suffixes) <= set(s for suffixes, _ in COMPANIONS
                                                                        for s in suffixes)
    assert "e/m.bin" in companions("e/m.xml")
    assert manifest_path("e/m.engine") in companions("e/m.engine")
    assert cache_path("e/m.onnx") in companions("e/m.onnx")
    for artefact in ("e/m.onnx", "e/m.xml", "e/m.engine", "e/m.plan"):
        assert provenance_path(artefact) in companions(artefact)


# -- every command, through the CLI: refused before any work, the input untouched -------------------------------
def test_infer_never_writes_over_its_source_or_model(demo_onnx, demo_video, tmp_path, capsys):
    video = tmp_path / "in.mp4"
    shutil.copyfile(demo_video[0], str(video))
    model = tmp_path / "m.onnx"
    shutil.copyfile(demo_onnx, str(model))
    line = _refused(capsys, ["infer", "--engine", model, video, "--save", video], video)
    assert "--save {} would overwrite the source".format(video) in line
    assert "would overwrite the source" in _refused(capsys, ["infer", "--engine", model, video, "--save-json", model], model)
    # stream outputs get -0, -1 suffixes: the second one would be the first source
    first = tmp_path / "c-1.mp4"
    shutil.copyfile(demo_video[0], str(first))
    line = _refused(capsys, ["infer", "--engine", model, first, video, "--save-json", tmp_path / "c.mp4"], first)
    assert "c-1.mp4 would overwrite" in line
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copyfile(demo_video[0], str(imgs / "a.jpg"))
    assert "would overwrite the source folder" in _refused(capsys, ["infer", "--engine", model, imgs, "--save",
                                                                    str(imgs) + "/"], imgs / "a.jpg")
    assert "holding the source" in _refused(capsys, ["infer", "--engine", model, imgs / "a.jpg", "--save", imgs],
                                            imgs / "a.jpg")
    assert sorted(os.listdir(str(tmp_path))) == ["c-1.mp4", "imgs", "in.mp4", "m.onnx"]


@pytest.mark.openvino
def test_an_irs_weights_and_a_model_are_safe_from_compare_bench_serve_and_infer(demo_ir, tmp_path, capsys):
    xml = tmp_path / "m.xml"
    shutil.copyfile(demo_ir, str(xml))
    shutil.copyfile(demo_ir[:-4] + ".bin", str(tmp_path / "m.bin"))
    weights = tmp_path / "m.bin"
    assert "belongs to the source" in _refused(capsys, ["compare", "-e", xml, "-b", xml, "--report", weights], xml, weights)
    assert "would overwrite" in _refused(capsys, ["compare", "-e", xml, "-b", xml, "--report", xml], xml, weights)
    assert "would overwrite" in _refused(capsys, ["bench", "--engine", xml, "--report", xml], xml)
    assert "--log {} would overwrite".format(xml) in _refused(capsys, ["serve", "-e", xml, "--log", xml], xml)
    link = tmp_path / "link.json"
    os.symlink(str(weights), str(link))
    assert "belongs to the source" in _refused(capsys, ["infer", "--engine", xml, "0", "--save-json", link], weights)


def test_eval_never_writes_its_report_over_the_annotations(demo_onnx, shapes_val, tmp_path, capsys):
    annotations = tmp_path / "ann.json"
    shutil.copyfile(shapes_val, str(annotations))
    images = os.path.join(os.path.dirname(shapes_val), "images")
    assert "would overwrite" in _refused(capsys, ["eval", "--engine", demo_onnx, "--data", annotations, "--images",
                                                  images, "--report", annotations, "--no-coco"], annotations)
    with pytest.raises(InputError, match="is inside the source folder"):
        from edgecsp.evaluation.artefact import EvalConfig, evaluate

        evaluate(EvalConfig(engine=demo_onnx, data=str(annotations), images=images, coco=False,
                            report=os.path.join(images, "r.json")))


def test_build_export_and_package_fold_into_the_same_check(demo_onnx, demo_card, tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    shutil.copyfile(demo_onnx, str(onnx))
    link = tmp_path / "link.onnx"
    os.symlink(str(onnx), str(link))
    assert "would overwrite the source" in _refused(capsys, ["build", "--target", "cpu-ort", onnx, "-o", link], onnx)
    card = tmp_path / "card.json"
    shutil.copyfile(demo_card, str(card))
    assert "-o {} would overwrite".format(card) in _refused(capsys, ["export", "--card", card, "-o", card], card)
    assert "would overwrite" in _refused(capsys, ["export", "--onnx", onnx, "--names", onnx, "--anchors", "1,2",
                                                  "-o", onnx], onnx)
    assert "--deepstream {} would overwrite".format(onnx) in _refused(capsys, ["package", "--deepstream", onnx, "-e", onnx],
                                                                     onnx)
    from edgecsp.infer import InferConfig, infer

    with pytest.raises(InputError, match="would overwrite"):
        infer(InferConfig(engine=str(onnx), source=[str(onnx)], save=str(tmp_path / "." / "m.onnx")))
    assert sorted(os.listdir(str(tmp_path))) == ["card.json", "link.onnx", "m.onnx"]


# -- fuzz: whatever the check lets through, writing it for real spares every input ------------------------------
_PARTS = st.sampled_from(["in", "in.xml", "in.bin", "link", "dirlink", "hard.bin", "out", "new", "\u00fc", "a b",
                          ".", "..", "", "in.calibration.json"])


def _protected(source):
    """{path: bytes} of every file ``source`` stands for: a folder's files, or a file and its companions."""
    real = os.path.realpath(source)
    if os.path.isdir(real):
        paths = [os.path.join(folder, name) for folder, _, files in os.walk(real) for name in files]
    else:
        paths = [real] + companions(source) + companions(real)
    return dict((p, open(p, "rb").read()) for p in paths if os.path.isfile(p))


@fuzz_settings()
@given(source=st.lists(_PARTS, min_size=1, max_size=4), output=st.lists(_PARTS, min_size=1, max_size=5),
       trailing=st.booleans(), kind=st.sampled_from(["file", "folder", "into"]))
@example(source=["in", "in.xml"], output=["hard.bin"], trailing=False, kind="file")
@example(source=["in"], output=["dirlink", "new"], trailing=True, kind="folder")
@example(source=["in", "in.xml"], output=["in"], trailing=False, kind="folder")
@example(source=["dirlink", "in.xml"], output=["in", ".", "in.bin"], trailing=False, kind="file")
@example(source=["in"], output=[".", ""], trailing=True, kind="folder")
@example(source=[""], output=["new"], trailing=False, kind="file")  # the working folder itself
@example(source=["in"], output=[""], trailing=False, kind="folder")  # "" was the working folder to Staged
@example(source=["..", "..", "..", ".."], output=["in"], trailing=False, kind="file")  # above the sandbox
@example(source=["link", "..", "in.xml"], output=["in"], trailing=False, kind="folder")  # `..` after a symlink
@example(source=["."], output=[""], trailing=False, kind="into")  # "" is the working folder to os.path.join
def test_fuzz_no_path_the_check_allows_writes_over_or_into_an_input(tmp_path_factory, source, output, trailing, kind):
    root = str(tmp_path_factory.mktemp("paths"))
    base = os.path.join(root, "w", "x")  # `..` twice from here stays inside root
    inputs = os.path.join(base, "in")
    os.makedirs(inputs)
    for name in ("in.xml", "in.bin", "in.calibration.json", "other.txt"):
        with open(os.path.join(inputs, name), "wb") as handle:
            handle.write(name.encode())
    os.symlink(os.path.join(inputs, "in.xml"), os.path.join(base, "link"))
    os.symlink(inputs, os.path.join(base, "dirlink"))
    os.link(os.path.join(inputs, "in.bin"), os.path.join(base, "hard.bin"))
    source_path = "/".join(source)  # relative to base, the working folder of the example
    output_path = "/".join(output).replace("/", "//", 1) + ("/" if trailing else "")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        _write_what_the_check_allows(root, source_path, output_path, kind)
    finally:
        os.chdir(cwd)


def _write_what_the_check_allows(root, source_path, output_path, kind):
    if not source_path:
        return  # "" names no file: nothing is read
    if not all(os.path.realpath(p).startswith(root + os.sep) for p in (source_path, output_path)):
        event("above the sandbox")
        return  # it would read or write above the sandbox
    before = _protected(source_path)
    listing = sorted(os.listdir(os.path.realpath(source_path))) if os.path.isdir(source_path) else None
    with no_hang():
        try:
            check_paths({"source": source_path, "out": output_path},
                        (("source", "source", READS), ("out", "--out", WRITES_INTO if kind == "into" else WRITES)))
            if kind == "folder":
                with atomic_folder(output_path) as staging:
                    open(os.path.join(staging, "in.xml"), "wb").close()
            elif kind == "into":  # a new entry in the folder, as a model repository gets one
                write_bytes_atomic(os.path.join(output_path, "new-entry"), b"written")
            else:
                write_bytes_atomic(output_path, b"written")
        except EdgeCSPError as exc:
            event("refused: " + ("by the check" if "pick another --out" in str(exc) else "by the writer"))
            return
    event("written")
    for path, data in before.items():
        assert os.path.isfile(path) and open(path, "rb").read() == data, (source_path, output_path, kind)
    if listing is not None:
        assert sorted(os.listdir(os.path.realpath(source_path))) == listing, (source_path, output_path, kind)


def test_a_file_url_source_is_an_input(tmp_path):
    """FFmpeg and OpenCV open file:// URLs: writing --save over the file a file:// source names is refused."""
    from edgecsp._files import check_outputs_apart, spec_paths
    from edgecsp.errors import InputError

    video = tmp_path / "v.mp4"
    video.write_bytes(b"video")
    url = "file://" + str(video).replace(" ", "%20")
    assert spec_paths(url) == [str(video)]
    assert spec_paths("rtsp://camera/1") == [] and spec_paths("http://h/x.mp4") == []
    with pytest.raises(InputError, match="would overwrite the source"):
        check_outputs_apart([("source", p) for p in spec_paths(url)], [("--save", str(video))])
