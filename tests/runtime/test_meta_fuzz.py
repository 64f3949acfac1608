"""Fuzzing the one strict reader (edgecsp.runtime.schema) through every document kind edgecsp loads.

Property: whatever the document, reading it ends in a record or the reader's one-line EdgeCSPError (no other
exception, no hang); and a metadata record that loads describes outputs the runtime then decodes without an
error (what builds also runs). ``EDGECSP_FUZZ_EXAMPLES=1000`` for a long local run (tests/fuzzing.py).
"""
import copy
import json
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.meta import ModelMeta, check_interface
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import preprocess
from edgecsp.runtime.schema import MAX_DEPTH, parse_json
from tests.fuzzing import fuzz_settings, no_hang

DEMO1 = {  # a format-1 record, as edgecsp wrote them before layouts were a registry
    "format": 1, "names": ["circle", "square", "triangle", "star", "cross"], "input_size": [256, 256],
    "task": "detect", "letterbox": True, "pad_value": 114, "channel_order": "RGB", "scale": 1.0 / 255,
    "layout": "yolo_raw", "activated": True, "input_name": "images", "model": "shapes_tiny_csp",
    "heads": [{"stride": 16, "anchors": [[14.0, 14.0], [22.0, 22.0], [32.0, 32.0]], "scale_x_y": 2.0,
               "new_coords": True},
              {"stride": 32, "anchors": [[46.0, 46.0], [66.0, 66.0], [96.0, 96.0]], "scale_x_y": 2.0,
               "new_coords": True}],
    "outputs": ["head16", "head32"], "extra": {"opset": 13, "precision": "fp32"}, "input_form": "float_nchw",
}
DEMO = ModelMeta.from_dict(DEMO1).to_dict()  # the same record in format 2 (layout + params)

# Values a hostile editor writes: wrong types, huge/negative/non-finite numbers, long and control-character
# strings, nested containers.
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e400, -1e400, 1e9, 1e-300, 0, -1, 0.5]),
    st.text(max_size=30), st.sampled_from(["\x1b[31mred", "grey", "x", "", "XYZ", "RGB", "yolo_decoded", "probs",
                                           "a" * 5000, "\u202eevil", "../../etc/passwd"]))
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                     max_leaves=20)


def _paths(value, prefix=()):
    """Every path into a JSON value (keys and indices), the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _mutate(document, path, action, value):
    doc = copy.deepcopy(document)
    if not path:
        return value if action == "replace" else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif action == "add" and isinstance(parent, dict):
        parent["extra_" + str(last)] = value
    return doc


@st.composite
def mutated(draw, document):
    """``document`` with one to three random edits (replace / delete / duplicate / add at a random path)."""
    doc = document
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        doc = _mutate(doc, path, draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "add"])),
                      draw(_JSON))
    return doc


def _one_line(exc):
    text = str(exc)
    assert "\n" not in text and "\r" not in text, text
    assert "\x1b" not in text and "\u202e" not in text, text
    assert len(text) < 1200, text[:200]


def _outputs_for(meta, rng):
    """Outputs of batch 1 shaped as the metadata says, filled with logits (or probabilities)."""
    outputs = []
    for index in range(meta.spec.output_count(meta)):
        shape = tuple(1 if d is None else d for d in meta.spec.output_shape(meta, index))
        values = rng.standard_normal(shape).astype(np.float32)
        activated = getattr(meta.params, "activated", False)  # yolo_raw's heads may be activated already
        outputs.append(1.0 / (1.0 + np.exp(-values)) if activated else values)
    return outputs


def _loads_then_runs(text):
    """Read the metadata; when it loads, check it against the interface it describes and run the runtime on it."""
    try:
        meta = ModelMeta.from_json(text, "fuzz.onnx")
    except MetadataError as exc:
        _one_line(exc)
        return None
    names = meta.outputs or ["out{}".format(i) for i in range(meta.spec.output_count(meta))]
    outputs = _outputs_for(meta, np.random.default_rng(0)) if meta.task == "detect" else []
    shape = ((1, meta.input_size[0], meta.input_size[1], 3) if meta.input_form == "uint8_nhwc_bgr"
             else (1, 3) + tuple(meta.input_size))
    if meta.task == "detect":
        check_interface(meta, meta.input_name, shape, list(zip(names, [o.shape for o in outputs])), "fuzz.onnx")
    if meta.task == "detect" and max(meta.input_size) <= 1024 and sum(o.size for o in outputs) < 4_000_000:
        frame = np.full((48, 64, 3), 90, np.uint8)
        batch, infos = preprocess([frame], meta)
        assert np.isfinite(batch.astype(np.float32)).all()
        dets = postprocess(outputs, meta, infos, conf=0.25, iou=0.45, max_det=50)
        assert np.isfinite(dets[0].boxes).all()
    return meta


@given(st.one_of(mutated(DEMO), mutated(DEMO1)))
@fuzz_settings()
@example(dict(DEMO, scale=float("nan")))  # issue 16: empty frames and mAP 0 with exit 0
@example(dict(DEMO, input_size=[1e9, 256]))
@example(dict(DEMO, outputs=5))
@example(dict(DEMO, extra=[1, 2]))
@example(dict(DEMO, pad_value=100000))
@example(dict(DEMO, pad_value="grey"))
@example(dict(DEMO, scale="x"))
@example(dict(DEMO, channel_order="XYZ"))
@example(dict(DEMO1, heads=[dict(DEMO1["heads"][0], stride=1e9), DEMO1["heads"][1]]))
@example(dict(DEMO1, heads=[dict(DEMO1["heads"][0], anchors=[[1.0, 2.0, 3.0]]), DEMO1["heads"][1]]))
@example(dict(DEMO1, heads=[dict(DEMO1["heads"][0], anchors=[[float("inf"), 2.0]]), DEMO1["heads"][1]]))
@example(dict(DEMO1, layout=["x"]))
@example(dict(DEMO1, layout="yolo_decoded", extra=[1]))
@example(dict(DEMO, params=[1]))
@example(dict(DEMO, layout="nope"))
@example(dict(DEMO, scale=1e-320))  # found by review: 1 / scale overflowed, or the input rounded to zeros
@example(dict(DEMO, extra={"decode_in_graph": 5}))
def test_fuzz_metadata_records_load_or_fail_in_one_line(document):
    with no_hang():
        _loads_then_runs(json.dumps(document))


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 _JSON.map(lambda v: json.dumps(v))))
@fuzz_settings()
@example("[1, 2]")
@example("null")
@example("5")
@example('{"names": ["a"], "input_size": [1e400, 3]}')
@example("[" * 100000 + "]" * 100000)
@example('{"names": ["a"], "input_size": [' + "9" * 5000 + ', 3]}')
@example("\ufeff" + json.dumps(DEMO))
def test_fuzz_metadata_text_loads_or_fails_in_one_line(text):
    with no_hang():
        _loads_then_runs(text)


def test_the_demo_record_loads_and_round_trips():
    meta = _loads_then_runs(json.dumps(DEMO))
    assert meta is not None and ModelMeta.from_json(meta.to_json()) == meta


@pytest.mark.parametrize("change, message", [
    (dict(scale=float("nan")), "not a number JSON allows"),
    (dict(scale=0.0), "field scale must be a finite number between 1e-06 and 1"),
    (dict(input_size=[1e9, 256]), "field input_size[0] must be an integer between 1 and 8192"),
    (dict(outputs=5), "field outputs must be an array"),
    (dict(extra=[1, 2]), "field extra must be a JSON object"),
    (dict(pad_value="grey"), "field pad_value must be an integer between 0 and 255, got 'grey'"),
    (dict(channel_order="XYZ"), "field channel_order must be one of RGB, BGR"),
    (dict(letterbox=1), "field letterbox must be true or false"),
    (dict(names=[]), "field names must be an array of 1..100000 items"),
    (dict(DEMO1, heads=[dict(DEMO1["heads"][0], stride=512), DEMO1["heads"][1]]), "heads[0].stride 512 is larger than"),
    (dict(DEMO1, heads=[dict(DEMO1["heads"][0], anchors=[[1e30, 2.0]]), DEMO1["heads"][1]]), "anchor larger than 100 x"),
    (dict(DEMO1, heads=[dict(DEMO1["heads"][0], stride="16"), DEMO1["heads"][1]]),
     "field params.heads[0].stride must be an integer"),
    (dict(layout="nope"), "names output layout 'nope', which this edgecsp does not know"),
    (dict(outputs=["a", "a"]), "output names repeat"),
    (dict(format=7), "uses metadata format 7 but this edgecsp reads up to 2: upgrade edgecsp"),
])
def test_each_rule_names_the_field_the_value_and_the_fix(change, message):
    with pytest.raises(MetadataError) as info:
        ModelMeta.from_json(json.dumps(change if "names" in change else dict(DEMO, **change)), "m.onnx")
    text = str(info.value)
    assert message in text and text.startswith("m.onnx") and ("re-export" in text or "upgrade" in text), text


def test_a_writer_cannot_store_what_a_reader_refuses():
    meta = ModelMeta.from_json(json.dumps(DEMO))
    with pytest.raises(MetadataError, match="field scale must be a finite number"):
        meta._replace(scale=float("nan")).validate("w.onnx")
    with pytest.raises(MetadataError, match="field input_size"):
        meta._replace(input_size=(10 ** 9, 256)).validate("w.onnx")


@pytest.mark.parametrize("outputs, message", [
    ([("head16", (1, 40, 16, 16)), ("head32", (1, 30, 8, 8))], "shaped (1, 40, 16, 16) but its yolo_raw metadata (5 classes"),
    ([("head16", (1, 30, 16, 16)), ("head32", (1, 30, 16, 16))], "'head32' is shaped (1, 30, 16, 16)"),
    ([("head16", (1, 30, 16, 16)), ("other", (1, 30, 8, 8))], "lists outputs head32 that the model lacks"),
])
def test_the_interface_check_catches_metadata_that_does_not_fit_the_model(outputs, message):
    meta = ModelMeta.from_json(json.dumps(DEMO))
    check_interface(meta, "images", (None, 3, 256, 256), [("head16", (None, 30, 16, 16)),
                                                          ("head32", (None, 30, 8, 8))], "m.onnx")
    with pytest.raises(MetadataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_interface(meta, "images", (1, 3, 256, 256), outputs, "m.onnx")


def test_documents_are_bounded_before_they_are_parsed():
    with pytest.raises(MetadataError, match="nests 30 levels deep"):
        parse_json("[" * 30 + "]" * 30, "doc", "fix")
    with pytest.raises(InputError, match="more than the 100"):
        parse_json(b"x" * 200, "doc", "fix", error=InputError, max_bytes=100)
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "doc", "fix") is not None
    assert math.isfinite(parse_json("1e308", "doc", "fix"))


# -- the other documents: engine and bundle manifests, calibration records, model cards ------------------------
ENGINE = {"kind": "edgecsp-tensorrt-engine", "format": 1, "engine": "m.engine", "engine_sha256": "b" * 64,
          "tensorrt": "8.2.1", "gpu": "Orin", "sm": "8.7", "target": "orin", "precision": "int8",
          "input_name": "images", "input_shape": [None, 3, 256, 256], "outputs": ["head16", "head32"],
          "onnx_sha256": "a" * 64, "meta": DEMO, "max_batch": 4, "dla_core": None, "workspace_mib": 1024,
          "calibration": {"method": "entropy", "cache": "calib.cache", "algorithm": "EntropyCalibration2"},
          "fp32_layers": [{"tensor": "t", "node": "n", "why": "overflow"}], "edgecsp": "0.1.0"}
BUNDLE = dict(dict((k, v) for k, v in ENGINE.items() if k not in ("engine", "engine_sha256", "tensorrt", "gpu")),
              kind="edgecsp-device-bundle", onnx="m.onnx", trt_version=["8.2.1", "8.2.1"], sm="6.2",
              target="tx2", allow_slow_int8=True, fp16_check={"ran": False}, lint={"warnings": []}, notes=["x"])
RECORD = {"format": "edgecsp-calibration", "version": 1, "model": {"name": "m", "sha256": "c" * 64},
          "data": {"kind": "folder"}, "samples": 2, "algorithm": {"method": "minmax"},
          "preprocessing": {"input_size": [256, 256], "letterbox": True, "pad_value": 114, "channel_order": "RGB",
                            "scale": 1.0 / 255},
          "cache": {"file": "m.calibration-ranges.json", "sha256": "d" * 64}}
CARD = {"name": "demo", "model": "shapes_tiny_csp", "weights": "w.pt", "kwargs": {}, "classes": ["a"]}


@given(st.sampled_from(["engine", "bundle"]).flatmap(
    lambda kind: st.tuples(st.just(kind), mutated(ENGINE if kind == "engine" else BUNDLE))))
@fuzz_settings()
@example(("bundle", dict(BUNDLE, onnx="../../../etc/passwd")))
@example(("bundle", dict(BUNDLE, onnx="/etc/passwd")))
@example(("bundle", dict(BUNDLE, calibration={"cache": "../x"})))
@example(("engine", dict(ENGINE, meta=[1, 2])))
@example(("engine", dict(ENGINE, fp32_layers=[5])))
def test_fuzz_manifests_load_or_fail_in_one_line(case):
    from edgecsp.backends.tensorrt.manifest import (BUNDLE_KIND, ENGINE_KIND, BundleManifest, EngineManifest,
                                                    _from_dict)

    kind, document = case
    cls, kind_name = (EngineManifest, ENGINE_KIND) if kind == "engine" else (BundleManifest, BUNDLE_KIND)
    with no_hang():
        try:
            record = _from_dict(cls, json.loads(json.dumps(document)), "m.json", kind_name)
        except MetadataError as exc:
            _one_line(exc)
            return
    assert "/" not in (record.engine if kind == "engine" else record.onnx)
    ModelMeta.from_dict(record.meta)


@given(st.sampled_from(["record", "card"]).flatmap(
    lambda kind: st.tuples(st.just(kind), mutated(RECORD if kind == "record" else CARD))))
@fuzz_settings()
@example(("record", dict(RECORD, cache={"file": "../../etc/passwd", "sha256": "d" * 64})))
@example(("record", dict(RECORD, version="2")))
@example(("record", dict(RECORD, preprocessing=dict(RECORD["preprocessing"], input_size="\x1b"))))  # found by a run
@example(("card", dict(CARD, weights="../../../etc/passwd")))
@example(("card", dict(CARD, kwargs={"not an identifier": 1})))
def test_fuzz_calibration_records_and_model_cards_load_or_fail_in_one_line(tmp_path_factory, case):
    from edgecsp.calibration.provenance import check_reuse, read_record
    from edgecsp.models.card import load_card

    kind, document = case
    folder = tmp_path_factory.mktemp("doc")
    path = folder / ("m.calibration.json" if kind == "record" else "card.json")
    path.write_text(json.dumps(document))
    with no_hang():
        try:
            if kind == "record":
                record = read_record(str(path))
                check_reuse(record, "c" * 64, ModelMeta.from_json(json.dumps(DEMO)), "minmax")
            else:
                card = load_card(str(path))
                assert card.weights.startswith(str(folder))
        except InputError as exc:
            _one_line(exc)
