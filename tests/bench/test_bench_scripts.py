"""The benchmark scripts' own logic (scripts/bench_ultralytics.py, bench_rapid_layout.py, train_ultralytics.py):
what they compare and how they report, on synthetic rows and on the reports saved in docs/ and models/.

The measurements themselves are not tests (they take minutes and need Ultralytics' reference venv); these check
that a saved report renders into exactly what the docs show, and that detections are matched as documented.
"""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import bench_ultralytics  # noqa: E402  (standard library only at import: Ultralytics runs in its own venv)
import train_ultralytics  # noqa: E402


def test_frames_are_matched_by_class_and_iou():
    a = [[0, 0, 10, 10, 0.9, "circle"], [20, 20, 30, 30, 0.8, "star"]]
    same = bench_ultralytics.compare([a, a], [a, a])
    assert (same["matched"], same["frames_same_count"], same["max_box_diff_px"]) == (4, 2, 0)
    other_class = [[0, 0, 10, 10, 0.9, "square"], [20, 20, 30, 30, 0.8, "star"]]
    shifted = [[0, 0, 10, 16, 0.9, "circle"]]  # IoU 10/16 = 0.625: matched, 6 px apart
    result = bench_ultralytics.compare([a, a], [other_class, shifted])
    assert result["matched"] == 2 and result["max_box_diff_px"] == 6
    assert result["differing_frames"] == [[1, 2, 1]]
    assert bench_ultralytics.match(a, [[0, 0, 10, 25, 0.9, "circle"]]) == []  # IoU 0.4 < 0.5


def test_skipped_section_says_why():
    reason = bench_ultralytics.skip_reason("/nowhere/model.pt", None)
    assert "scripts/ultralytics_env.py" in reason
    assert "Skipped: " + reason in bench_ultralytics.markdown({"skipped": reason})
    assert "train it first" in bench_ultralytics.skip_reason("/nowhere/model.pt", sys.executable)


def test_the_saved_vs_ultralytics_report_is_what_docs_show():
    with open(os.path.join(ROOT, "docs", "benchmarks.json")) as handle:
        report = json.load(handle)["ultralytics"]
    with open(os.path.join(ROOT, "docs", "benchmarks.md")) as handle:
        docs = handle.read()
    section = bench_ultralytics.markdown(report)
    assert section in docs
    rows = dict(((r["size"], r["precision"]), r) for r in report["rows"])
    assert set(rows) == {(s, p) for s in (320, 640) for p in ("fp32", "float", "int8")}
    for row in rows.values():  # same network, same thresholds: the FP32 rows find the same boxes
        assert row["ratio"] == pytest.approx(row["edgecsp_fps"] / row["ultralytics_fps"])
    assert rows[320, "fp32"]["detections"]["matched"] == rows[320, "fp32"]["detections"]["edgecsp"]


def test_the_saved_rapid_layout_report_is_what_docs_show():
    import bench_rapid_layout

    with open(os.path.join(ROOT, "docs", "rapid_layout.json")) as handle:
        report = json.load(handle)
    with open(os.path.join(ROOT, "docs", "benchmarks.md")) as handle:
        assert bench_rapid_layout.markdown_section(report) in handle.read()


def test_the_model_card_markdown_is_rendered_from_its_json():
    with open(os.path.join(ROOT, "models", "shapes_yolov8n.json")) as handle:
        card = json.load(handle)
    with open(os.path.join(ROOT, "models", "shapes_yolov8n.md")) as handle:
        assert handle.read() == train_ultralytics.card_markdown(card)


def test_training_time_adds_up_a_resumed_run(tmp_path):
    weights = tmp_path / "run" / "weights"
    weights.mkdir(parents=True)
    rows = ["epoch,time", "1,60.5", "2,121.0", "3,50.0", "4,100.25"]  # the clock restarts when a run resumes
    (tmp_path / "run" / "results.csv").write_text("\n".join(rows) + "\n")
    assert train_ultralytics._train_seconds(str(weights / "last.pt")) == pytest.approx(221.2, abs=0.05)
