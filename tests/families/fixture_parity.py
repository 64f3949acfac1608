"""What the parity tests on ``../shared/fixtures/modern/`` share: the fixture's reference rows, how edgecsp's
detections differ from them, the fixture models imported with `edgecsp export --onnx`, and an ONNX Runtime run.
(Imported by the test files next to it; pytest collects only test_*.py.)"""
import contextlib
import io
import json
import os

import numpy as np


def reference(folder):
    """The fixture's ``reference.json``."""
    with open(os.path.join(folder, "reference.json")) as handle:
        return json.load(handle)


def reference_rows(folder, image, source, pixels, clip_to=None):
    """Reference rows ``[x1, y1, x2, y2, score, class]`` of ``image`` from ``source`` in ``pixels`` ("input" or
    "orig"); ``clip_to`` (H, W): clipped as edgecsp clips to the frame (most families do not clip)."""
    rows = np.array(reference(folder)["images"][image + ".jpg"]["detections"][source][pixels], np.float64)
    if clip_to:
        rows[:, 0:4:2] = np.clip(rows[:, 0:4:2], 0, clip_to[1])
        rows[:, 1:4:2] = np.clip(rows[:, 1:4:2], 0, clip_to[0])
    return rows


def differences(det, rows):
    """Largest box and score differences of ``det`` from ``rows``, after checking the count and the classes row by
    row (same order)."""
    assert len(det.scores) == len(rows), "edgecsp found {} boxes, the reference {}".format(len(det.scores), len(rows))
    assert det.class_ids.tolist() == rows[:, 5].astype(int).tolist()
    if not len(rows):
        return 0.0, 0.0
    return float(np.abs(det.boxes - rows[:, :4]).max()), float(np.abs(det.scores - rows[:, 4]).max())


def describe(folder, files, names, out_dir):
    """Each fixture ONNX of ``files`` through `edgecsp export --onnx FILE --names` with no layout option:
    ``{file: (described path, what the export printed)}``."""
    from edgecsp.cli import main

    names_file = os.path.join(str(out_dir), "names.txt")
    with open(names_file, "w") as handle:
        handle.write("\n".join(names) + "\n")
    found = {}
    for name in files:
        out = os.path.join(str(out_dir), name.replace(".onnx", "-edgecsp.onnx"))
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            assert main(["export", "--onnx", os.path.join(folder, name), "--names", names_file, "-o", out]) == 0
        found[name] = (out, log.getvalue())
    return found


def run_onnx(path, x):
    """``(ModelMeta, outputs in the metadata's order)`` of the described ONNX at ``path`` on input ``x``."""
    import onnxruntime

    from edgecsp.backends import read_artefact_meta

    meta = read_artefact_meta(path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return meta, session.run(list(meta.outputs), {meta.input_name: x})
