"""Every output layout of the registry, through the same checks (a new layout module is covered without an edit):
its example round-trips through the metadata, its outputs fit the shapes it declares, the candidate decode gives
exactly the dense rows that pass, post-processing runs, and wrong shapes and class counts are refused in one line.
"""
import json

import numpy as np
import pytest

from edgecsp.errors import MetadataError
from edgecsp.runtime.layouts import list_layouts
from edgecsp.runtime.meta import ModelMeta, check_interface
from edgecsp.runtime.postprocess import postprocess
from edgecsp.runtime.preprocess import LetterboxInfo

LAYOUTS = [layout.name for layout in list_layouts()]
DETECTORS = [layout.name for layout in list_layouts() if layout.task == "detect"]


def _meta(name, classes=None):
    layout = [l for l in list_layouts() if l.name == name][0]
    example = layout.example()
    count = example["classes"] if classes is None else classes
    document = {"format": 2, "names": ["c{}".format(i) for i in range(count)], "input_size": list(example["input_size"]),
                "task": layout.task, "layout": name, "params": example["params"]}
    meta = ModelMeta.from_dict(document, "example")  # no output names yet: how many there are depends on params
    return meta._replace(outputs=["out{}".format(i) for i in range(layout.output_count(meta))]).validate("example")


def test_the_registry_has_every_family_of_the_issue():
    assert set(LAYOUTS) >= {"classify", "yolo_raw", "detections", "dets_labels", "anchor_decoded", "yolox_raw",
                            "dist_points", "gfl", "anchor_free"}


@pytest.mark.parametrize("name", LAYOUTS)
def test_example_round_trips_through_the_metadata(name):
    meta = _meta(name)
    again = ModelMeta.from_json(meta.to_json(), "again")
    assert again == meta and again.to_dict() == meta.to_dict()
    assert json.loads(meta.to_json())["params"] == meta.spec.params_dict(meta.params)


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("batch", [1, 2])
def test_sample_outputs_fit_the_declared_shapes_and_candidates_equal_dense(name, batch):
    meta = _meta(name)
    layout = meta.spec
    rng = np.random.RandomState(7)
    outputs = layout.sample(meta, rng, batch)
    shape = (None, 3) + tuple(meta.input_size)
    check_interface(meta, meta.input_name, shape, list(zip(meta.outputs, [o.shape for o in outputs])), "example")
    dense = layout.decode(outputs, meta, batch)
    assert len(dense) == batch
    for conf in (0.0, 0.3, 0.7, 0.95):
        fast = layout.candidates(outputs, meta, conf, batch)
        for d, f in zip(dense, fast):
            scores = d.scores if d.scores.ndim == 1 else d.scores.max(axis=1) if d.scores.shape[0] else d.scores[:, 0]
            keep = scores > np.float32(conf)
            fast_scores = f.scores if f.scores.ndim == 1 else f.scores.max(axis=1) if f.scores.shape[0] else \
                f.scores[:, 0]
            passing = fast_scores > np.float32(conf)
            np.testing.assert_array_equal(f.boxes[passing], d.boxes[keep])
            np.testing.assert_array_equal(f.scores[passing], d.scores[keep])
    info = LetterboxInfo(1.0, 0, 0, 1.0, 1.0, tuple(meta.input_size), tuple(meta.input_size))
    for multi_label in (True, False):
        dets = postprocess(outputs, meta, [info] * batch, conf=0.3, iou=0.5, max_det=50, multi_label=multi_label)
        assert len(dets) == batch
        for det in dets:
            assert np.isfinite(det.boxes).all() and (det.scores > 0.3).all() and len(det.scores) <= 50
            assert ((det.class_ids >= 0) & (det.class_ids < meta.num_classes)).all()


@pytest.mark.parametrize("name", DETECTORS)
def test_wrong_class_counts_and_shapes_are_refused_in_one_line(name):
    meta = _meta(name)
    layout = meta.spec
    outputs = layout.sample(meta, np.random.RandomState(0), 1)
    shapes = list(zip(meta.outputs, [o.shape for o in outputs]))
    input_shape = (None, 3) + tuple(meta.input_size)
    refused = 0
    for classes in (1, meta.num_classes + 1, meta.num_classes + 5):
        other = _meta(name, classes)
        try:
            check_interface(other, other.input_name, input_shape, shapes, "m.onnx")
        except MetadataError as exc:
            assert "\n" not in str(exc) and "re-export" in str(exc)
            refused += 1
    free = set(layout.output_shape(meta, i)[-1] for i in range(layout.output_count(meta)))
    assert refused == 3 or None in free or name in ("detections", "dets_labels"), name  # rows do not say C
    with pytest.raises(MetadataError):
        check_interface(meta, meta.input_name, input_shape, [(n, s[:-1] + (s[-1] + 1,)) for n, s in shapes], "m.onnx")
    with pytest.raises(MetadataError, match="outputs"):
        check_interface(meta, meta.input_name, input_shape, shapes[:-1] + [("stranger", shapes[-1][1])], "m.onnx")


@pytest.mark.parametrize("name", DETECTORS)
def test_layout_options_are_checked_by_the_layouts_rules(name):
    """`edgecsp export --onnx --layout NAME --param K=V`: a key the layout lacks, or a value its rule refuses, is
    one InputError, never a TypeError from the option parsing."""
    from edgecsp.errors import InputError
    from edgecsp.export.attach import _checked_params
    from edgecsp.runtime.layouts import get_layout

    layout = get_layout(name)
    with pytest.raises(InputError, match="has no parameter"):
        _checked_params(layout, {"no_such_parameter": 1})
    for field in layout.fields:
        for bad in ("x", [["a"]], 1e300, -5, {"k": 1}):
            try:
                field.rule(bad, field.name)
            except Exception:  # noqa: BLE001 - the rule refuses it: so must _checked_params, in one line
                with pytest.raises(InputError) as info:
                    _checked_params(layout, {field.name: bad})
                assert "\n" not in str(info.value) and field.name in str(info.value)
