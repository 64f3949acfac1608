"""Provenance records: what they hold, and the refusal to reuse a calibration made for another model or
preprocessing."""
import json
import os

import pytest

from edgecsp._files import write_json_atomic
from edgecsp.calibration import CalibrationConfig, CalibrationSet, check_reuse, provenance_path, read_record
from edgecsp.calibration.provenance import reusable_cache
from edgecsp.errors import InputError
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta

pytestmark = [pytest.mark.opencv]



def meta(size=(64, 64), scale=1.0 / 255.0):
    return yolo_meta(names=["a"], input_size=size, scale=scale, heads=[HeadMeta(8, [(8.0, 8.0)])], outputs=["p8"],
                     model="prov-test")


def record(tmp_path, model_sha="a" * 64, cache=None):
    calib = CalibrationSet(CalibrationConfig("shapes:2", count=3), meta())
    rec = calib.provenance(model_sha, {"tool": "test", "method": "m1"}, tools={"tool": "1.0"}, cache=cache)
    return write_json_atomic(str(tmp_path / "art.calibration.json"), rec)


def test_record_holds_data_preprocessing_algorithm_tools_and_model(tmp_path):
    rec = read_record(record(tmp_path))
    assert rec["model"] == {"name": "prov-test", "sha256": "a" * 64}
    assert rec["samples"] == 3 and rec["data"]["kind"] == "shapes" and len(rec["data"]["fingerprint"]) == 64
    assert rec["preprocessing"]["input_size"] == [64, 64] and rec["preprocessing"]["letterbox"] is True
    assert rec["algorithm"]["method"] == "m1"
    assert rec["tools"]["tool"] == "1.0" and "numpy" in rec["tools"] and "edgecsp" in rec["tools"]
    assert provenance_path("engines/m-cpu-int8.xml") == os.path.join("engines", "m-cpu-int8.calibration.json")


def test_reuse_is_refused_for_another_model_or_preprocessing(tmp_path):
    rec = read_record(record(tmp_path))
    assert check_reuse(rec, "a" * 64, meta(), "m1") is rec
    with pytest.raises(InputError, match=r"refusing to reuse .*calibrated for model prov-test \(sha256 aaaaaaaaaaaa\) "
                                         r"but this build's model has sha256 bbbbbbbbbbbb"):
        check_reuse(rec, "b" * 64, meta())
    with pytest.raises(InputError, match=r"preprocessing differs .*input_size \[64, 64\] -> \[96, 96\]"):
        check_reuse(rec, "a" * 64, meta(size=(96, 96)))
    with pytest.raises(InputError, match="scale"):
        check_reuse(rec, "a" * 64, meta(scale=1.0))
    with pytest.raises(InputError, match="calibration method 'm1', this build uses 'm2'"):
        check_reuse(rec, "a" * 64, meta(), "m2")


def test_reusable_cache_checks_the_cache_file(tmp_path):
    cache_file = tmp_path / "art.ranges.json"
    cache_file.write_text("{}")
    from edgecsp.calibration import file_digest

    path = record(tmp_path, cache={"file": "art.ranges.json", "sha256": file_digest(str(cache_file))})
    found = reusable_cache(path, "a" * 64, meta(), "m1")[1]
    assert found == str(cache_file)
    cache_file.write_text('{"changed": 1}')
    with pytest.raises(InputError, match="it changed since art.calibration.json was written"):
        reusable_cache(path, "a" * 64, meta(), "m1")
    os.remove(str(cache_file))
    with pytest.raises(InputError, match="is missing: recalibrate"):
        reusable_cache(path, "a" * 64, meta(), "m1")
    os.makedirs(str(tmp_path / "x"))
    no_cache = record(tmp_path / "x")
    with pytest.raises(InputError, match="names no reusable calibration result"):
        reusable_cache(no_cache, "a" * 64, meta(), "m1")


def test_not_a_record(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="is not an edgecsp calibration record"):
        read_record(str(bad))
    with pytest.raises(InputError, match="cannot read calibration record"):
        read_record(str(tmp_path / "none.json"))


@pytest.mark.onnxruntime
def test_ort_build_reuses_its_ranges_only_for_the_same_model(tiny_detector_onnx, tmp_path):
    """End to end: an ORT INT8 build leaves ranges + record; a rebuild reuses them; another model is refused."""
    from edgecsp.backends import read_artefact_meta
    from edgecsp.build import BuildConfig, build

    first = build(BuildConfig(tiny_detector_onnx, target="cpu-ort", precision="int8",
                              output=str(tmp_path / "a.onnx"), options={"calib": "shapes:0", "calib_count": 4}))
    rec_path = provenance_path(first)
    rec = read_record(rec_path)
    assert rec["cache"]["file"] == "a.calibration-ranges.json" and os.path.isfile(str(tmp_path / rec["cache"]["file"]))

    second = build(BuildConfig(tiny_detector_onnx, target="cpu-ort", precision="int8",
                               output=str(tmp_path / "b.onnx"), options={"calib_cache": rec_path}))
    assert read_artefact_meta(second).extra["calibration"]["reused_from"] == "a.calibration.json"
    assert read_record(provenance_path(second))["data"]["fingerprint"] == rec["data"]["fingerprint"]

    import onnx

    model = onnx.load(tiny_detector_onnx)  # same graph, another metadata entry: a different sha256
    onnx.helper.set_model_props(model, dict([(p.key, p.value) for p in model.metadata_props] + [("note", "x")]))
    other = str(tmp_path / "other.onnx")
    onnx.save(model, other)
    out = str(tmp_path / "c.onnx")
    with pytest.raises(InputError, match="refusing to reuse a.calibration.json: it was calibrated for model"):
        build(BuildConfig(other, target="cpu-ort", precision="int8", output=out, options={"calib_cache": rec_path}))
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith("c.")]  # nothing half-written
