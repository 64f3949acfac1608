"""Tampered metadata through the real commands: build, infer and package refuse the same artefacts, in one line
with exit code 5, before writing anything (issue 16: "an artefact that builds also runs").

The metadata is edited the way a hostile user would: in the ONNX ``metadata_props``, the IR's ``rt_info``, an
engine's sidecar manifest and a device bundle's ``bundle.json``.
"""
import hashlib
import json
import os
import re
import shutil

import pytest

from edgecsp.cli import main
from tests.gates import needs

pytestmark = [pytest.mark.onnx, pytest.mark.onnxruntime]

# (what the tampering run wrote, the phrase of the refusal)
TAMPERED = [
    ("[1, 2]", "the record must be a JSON object"),
    ("null", "the record must be a JSON object"),
    ("5", "the record must be a JSON object"),
    ('{"names": ["a"], "input_size": [1e400, 256]}', "not valid JSON"),
    ("[" * 5000 + "]" * 5000, "nests 5000 levels deep"),
    (dict(outputs=5), "field outputs must be an array"),
    (dict(extra=[1, 2]), "field extra must be a JSON object"),
    (dict(pad_value=100000), "field pad_value must be an integer between 0 and 255"),
    (dict(pad_value="grey"), "field pad_value must be an integer"),
    (dict(scale="x"), "field scale must be a finite number"),
    (dict(scale=float("nan")), "not a number JSON allows"),
    (dict(channel_order="XYZ"), "field channel_order must be one of RGB, BGR"),
    (dict(input_size=[10 ** 9, 256]), "field input_size[0] must be an integer between 1 and 8192"),
    (dict(input_size=[320, 320]), "metadata says input size 320x320 but the model takes 256x256"),
    (dict(names=["a", "b", "c"]), "but its yolo_raw metadata (3 classes"),
    (dict(outputs=["head16", "nope"]), "lists outputs nope that the model lacks"),
    ("heads.0.stride=1000000000", "field params.heads[0].stride must be an integer between 1 and 8192"),
    ("heads.0.stride=8", "'head16' is shaped"),
    ("heads.0.anchors=[[1, 2, 3]]", "field params.heads[0].anchors[0] must be an array of 2 items"),
    ("heads.0.anchors=[[Infinity, 2]]", "not a number JSON allows"),
]


def _tampered_text(original, change):
    if isinstance(change, dict):
        doc = json.loads(original)
        doc.update(change)
        return json.dumps(doc)
    if "=" in change and change.startswith("heads."):
        doc = json.loads(original)
        path, value = change.split("=", 1)
        _, index, key = path.split(".")
        doc["params"]["heads"][int(index)][key] = json.loads(value) if "Infinity" not in value else value
        text = json.dumps(doc)
        return text.replace('"[[Infinity, 2]]"', "[[Infinity, 2]]")
    return change


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    path = str(tmp_path_factory.mktemp("img") / "frame.png")
    cv2.imwrite(path, np.full((120, 160, 3), 90, np.uint8))
    return path


def _with_onnx_meta(src, dst, text):
    import onnx

    model = onnx.load(src)
    for prop in model.metadata_props:
        if prop.key == "edgecsp.meta":
            prop.value = text
    onnx.save(model, dst)
    return dst


@pytest.mark.parametrize("change, message", TAMPERED, ids=[str(i) for i in range(len(TAMPERED))])
def test_build_and_infer_refuse_the_same_tampered_onnx(demo_onnx, image, tmp_path, capsys, change, message):
    import onnx

    original = dict((p.key, p.value) for p in onnx.load(demo_onnx).metadata_props)["edgecsp.meta"]
    model = _with_onnx_meta(demo_onnx, str(tmp_path / "m.onnx"), _tampered_text(original, change))
    out = tmp_path / "out"
    for argv in (["build", model, "--target", "cpu-ort", "-o", str(out / "m-ort.onnx")],
                 ["infer", "--engine", model, image, "--save-json", str(out / "d.jsonl"), "--no-progress"]):
        code = main(argv)
        line = _one_line(capsys.readouterr().err)
        assert code == 5, (argv[0], line)
        assert message in line, line
        assert not out.exists() or not os.listdir(str(out))


@pytest.mark.openvino
def test_a_tampered_ir_is_refused_by_infer_and_package(demo_ir, image, tmp_path, capsys):
    xml = open(demo_ir).read()
    found = re.search(r'<meta value="([^"]*)"', xml)
    assert found, "the IR keeps its metadata in rt_info edgecsp/meta"
    for change, message in [(dict(scale=float("nan")), "not a number JSON allows"),
                            (dict(names=["a"]), "but its yolo_raw metadata (1 classes")]:
        import html

        text = _tampered_text(html.unescape(found.group(1)), change)
        bad = str(tmp_path / "bad.xml")
        open(bad, "w").write(xml.replace(found.group(0), '<meta value="{}"'.format(html.escape(text, quote=True))))
        shutil.copy(demo_ir[:-4] + ".bin", bad[:-4] + ".bin")
        code = main(["infer", "--engine", bad, image, "--no-progress"])
        assert code == 5 and message in _one_line(capsys.readouterr().err)
        needs("tritonclient")
        code = main(["package", "--triton", str(tmp_path / "repo"), "-e", bad, "--model", "bad"])
        assert code == 5 and message in _one_line(capsys.readouterr().err)
        assert not os.path.exists(str(tmp_path / "repo" / "bad"))


def _bundle(tmp_path):
    from tests.backends.tensorrt import trt_models
    from edgecsp.backends.tensorrt.host.bundle import write_bundle

    tiny = trt_models.save(trt_models.clean_model(), str(tmp_path / "tiny.onnx"))
    return write_bundle(tiny, str(tmp_path / "b"), None, "tx2")


def test_a_bundle_manifest_cannot_point_outside_its_bundle(tmp_path):
    """Issue 16 item 7: "onnx": "../../../etc/passwd" (or absolute, or a link leading out) with the matching
    sha256 passed check_bundle_files."""
    from edgecsp.backends.tensorrt.manifest import BUNDLE_MANIFEST, check_bundle_files, read_bundle
    from edgecsp.errors import InputError, MetadataError

    folder = _bundle(tmp_path)
    path = os.path.join(folder, BUNDLE_MANIFEST)
    data = json.load(open(path))
    secret = tmp_path / "secret.onnx"
    secret.write_bytes(b"outside the bundle")
    digest = hashlib.sha256(b"outside the bundle").hexdigest()
    for name in (os.path.relpath(str(secret), folder), str(secret), "..", "sub/../../secret.onnx"):
        json.dump(dict(data, onnx=name, onnx_sha256=digest), open(path, "w"))
        with pytest.raises(MetadataError, match="field onnx must be the name of a file in the same folder"):
            read_bundle(folder)
    os.symlink(str(secret), os.path.join(folder, "link.onnx"))
    json.dump(dict(data, onnx="link.onnx", onnx_sha256=digest), open(path, "w"))
    with pytest.raises(InputError, match="points outside that folder"):
        check_bundle_files(folder, read_bundle(folder))
    json.dump(dict(data, calibration={"cache": "../calib.cache"}), open(path, "w"))
    with pytest.raises(MetadataError, match="field calibration.cache must be the name of a file"):
        read_bundle(folder)


def test_tampered_engine_manifests_are_refused_in_one_line(tmp_path, capsys):
    """An engine's sidecar manifest with a wrong type, a NaN or a foreign metadata record: exit 5, one line."""
    from tests.backends.tensorrt import trt_models

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    good = {"kind": "edgecsp-tensorrt-engine", "format": 1, "engine": "m.engine",
            "engine_sha256": hashlib.sha256(b"plan").hexdigest(), "tensorrt": "8.2.1", "gpu": "Orin", "sm": "8.7",
            "target": "orin", "precision": "fp16", "input_name": "images", "input_shape": [1, 3, 32, 32],
            "outputs": ["p8"], "onnx_sha256": "a" * 64, "meta": trt_models.tiny_meta().to_dict()}
    for change, message in [(dict(max_batch="8"), "field max_batch must be an integer"),
                            (dict(input_shape=[1, 3, 32]), "field input_shape must be an array of 4 items"),
                            (dict(meta=dict(good["meta"], scale=-1)), "field scale must be a finite number"),
                            (dict(engine="../x.engine"), "field engine must be the name of a file"),
                            (dict(engine_sha256="z" * 64), "field engine_sha256 must be a sha256")]:
        (tmp_path / "m.engine.json").write_text(json.dumps(dict(good, **change)))
        code = main(["infer", "--engine", str(engine), str(tmp_path), "--no-progress"])
        line = _one_line(capsys.readouterr().err)
        assert code == 5 and message in line, line
