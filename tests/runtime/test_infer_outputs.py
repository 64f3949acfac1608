"""What `edgecsp infer` users reach for, in the runtime: --classes, a classifier's top-k, YOLO label files, an
image path for --save, --show's display check, and folders with unreadable images or videos in them."""
import os

import numpy as np
import pytest

from tests.gates import optional

cv2 = optional("cv2")

from edgecsp.errors import InputError  # noqa: E402
from edgecsp.runtime.layouts.classify import Classification, class_records, top_classes  # noqa: E402
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta  # noqa: E402
from edgecsp.runtime.meta import ModelMeta  # noqa: E402
from edgecsp.runtime.nms import Detections  # noqa: E402
from edgecsp.runtime.pipeline import DetectOptions, run_pipeline  # noqa: E402
from edgecsp.runtime.postprocess import class_ids_of, postprocess  # noqa: E402
from edgecsp.runtime.preprocess import preprocess  # noqa: E402
from edgecsp.runtime.sinks import (ImageFileSink, ImageFolderSink, LabelFolderSink, display_problem,  # noqa: E402
                                   sink_for)
from edgecsp.runtime.sinks.labels import class_lines, yolo_lines  # noqa: E402
from edgecsp.runtime.sources import Frame, Source, open_source  # noqa: E402

pytestmark = [pytest.mark.opencv]

NAMES = ["person", "bicycle", "car", "Dog"]


def test_classes_are_names_or_ids_and_an_unknown_one_lists_the_models_classes():
    assert class_ids_of(None, NAMES) is None
    assert class_ids_of(["car", "0"], NAMES) == (0, 2)
    assert class_ids_of(["dog", "person,3"], NAMES) == (0, 3)  # case-insensitive, comma-separated
    assert class_ids_of([1], NAMES) == (1,)
    with pytest.raises(InputError) as info:
        class_ids_of(["cat"], NAMES)
    message = str(info.value)
    assert message.startswith("--classes cat:") and "0 person, 1 bicycle, 2 car, 3 Dog" in message
    assert "\n" not in message
    with pytest.raises(InputError, match="--classes 4:"):
        class_ids_of(["4"], NAMES)  # an id past the last class
    many = ["class{}".format(i) for i in range(1000)]
    with pytest.raises(InputError, match=r"29 class29 \.\.\. and 970 more \(ids up to 999\)"):
        class_ids_of(["zebra"], many)
    assert class_ids_of(["tench, Tinca tinca"], ["tench, Tinca tinca", "goldfish"]) == (0,)  # a name with a comma


def _raw_outputs(seed=0):
    # one yolo_raw head, 2 anchors, 3 classes at 32x32: random logits give boxes of every class
    rng = np.random.RandomState(seed)
    return [rng.randn(1, 2 * (5 + 3), 4, 4).astype(np.float32) * 3.0]


RAW_META = yolo_meta(names=["a", "b", "c"], input_size=(32, 32), heads=[HeadMeta(8, [(8.0, 8.0), (16.0, 16.0)])])


@pytest.mark.parametrize("multi_label", [True, False])
def test_classes_keep_only_those_classes_before_nms(multi_label):
    outputs = _raw_outputs()
    _, infos = preprocess([np.zeros((32, 32, 3), np.uint8)], RAW_META)
    run = lambda **kw: postprocess(outputs, RAW_META, infos, conf=0.05, iou=0.5, multi_label=multi_label, **kw)[0]
    every = run()
    assert set(every.class_ids.tolist()) == {0, 1, 2}
    kept = run(classes=(1, 2))
    assert set(kept.class_ids.tolist()) == {1, 2}
    # per-class NMS: the same detections as filtering afterwards
    wanted = (every.class_ids == 1) | (every.class_ids == 2)
    assert np.allclose(kept.boxes, every.boxes[wanted]) and np.allclose(kept.scores, every.scores[wanted])
    # class-agnostic NMS: boxes of the dropped class no longer suppress the kept ones
    agnostic_all = postprocess(outputs, RAW_META, infos, conf=0.05, iou=0.3, multi_label=multi_label,
                               class_agnostic=True)[0]
    agnostic_kept = postprocess(outputs, RAW_META, infos, conf=0.05, iou=0.3, multi_label=multi_label,
                                class_agnostic=True, classes=(1,))[0]
    assert set(agnostic_kept.class_ids.tolist()) == {1}
    one_class = postprocess(outputs, RAW_META, infos, conf=0.05, iou=0.3, multi_label=multi_label, classes=(1,))[0]
    assert np.allclose(agnostic_kept.boxes, one_class.boxes)  # one class left: agnostic NMS is per-class NMS
    suppressed_before = int((agnostic_all.class_ids == 1).sum())
    if multi_label:  # this seed: some class-1 boxes were suppressed by another class's
        assert len(agnostic_kept.scores) > suppressed_before
    assert len(agnostic_kept.scores) >= suppressed_before


CLS_META = ModelMeta(names=NAMES, input_size=(8, 8), task="classify", letterbox=False, layout="classify",
                     params={"probabilities": False}, outputs=["logits"], model="test-classifier")


def test_top_classes_are_softmax_probabilities_best_first():
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]], np.float32)
    first, second = top_classes(logits, CLS_META, k=3)
    expected = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert first.class_ids.tolist() == [1, 3, 2]
    assert np.allclose(first.scores, expected[[1, 3, 2]], atol=1e-6)
    assert second.class_ids[0] == 0
    only = top_classes(logits, CLS_META, k=5, classes=(0, 2))[0]  # k larger than the classes allowed
    assert only.class_ids.tolist() == [2, 0] and np.allclose(only.scores, expected[[2, 0]], atol=1e-6)
    assert class_records(first, NAMES)[0] == {"class_id": 1, "name": "bicycle", "score": round(float(expected[1]), 5)}
    assert class_lines(first, NAMES)[0] == "{:.2f} bicycle".format(expected[1])


def test_yolo_lines_are_normalised_centre_size_and_score():
    det = Detections(np.array([[10.0, 20.0, 30.0, 60.0]], np.float32), np.array([0.875], np.float32),
                     np.array([2], np.int64))
    assert yolo_lines(det, 100, 80) == ["2 0.2 0.5 0.2 0.5 0.875"]


class _Frames(Source):
    def __init__(self, kind, name, count=2):
        Source.__init__(self, name, length=count, fps=10.0)
        self.kind, self.count = kind, count

    def __iter__(self):
        for i in range(self.count):
            yield Frame(i, np.zeros((8, 10, 3), np.uint8), os.path.basename(self.name))


def _detections():
    return Detections(np.array([[0.0, 0.0, 5.0, 4.0]], np.float32), np.array([0.5], np.float32),
                      np.array([1], np.int64))


def test_label_files_are_named_per_image_or_per_video_frame(tmp_path):
    sink = sink_for("--save-txt", str(tmp_path / "labels"))
    assert isinstance(sink, LabelFolderSink)
    sink.open([_Frames("video", "/data/clip one.mp4"), _Frames("folder", "/data/imgs")], NAMES)
    for index in range(2):
        sink.write(0, Frame(index, np.zeros((8, 10, 3), np.uint8), "clip one.mp4"), _detections())
    sink.write(1, Frame(0, np.zeros((8, 10, 3), np.uint8), "a.jpg"), _detections())
    sink.write(1, Frame(1, np.zeros((8, 10, 3), np.uint8), "a.png"), Detections(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
    assert sorted(os.listdir(str(tmp_path / "labels-0"))) == ["clip_one_0.txt", "clip_one_1.txt"]
    assert sorted(os.listdir(str(tmp_path / "labels-1"))) == ["a.txt", "a_png.txt"]
    assert (tmp_path / "labels-0" / "clip_one_1.txt").read_text() == "1 0.25 0.25 0.5 0.5 0.5\n"
    assert (tmp_path / "labels-1" / "a_png.txt").read_text() == ""  # nothing found: an empty label file
    assert [p for _, p in sink.close()] == [str(tmp_path / "labels-0"), str(tmp_path / "labels-1")]


def test_save_takes_an_image_path_for_an_image_source_only(tmp_path):
    assert isinstance(sink_for("--save", "out.PNG"), ImageFileSink)
    assert isinstance(sink_for("--save", "out"), ImageFolderSink)
    sink = sink_for("--save", str(tmp_path / "out.png"))
    with pytest.raises(InputError, match="is an image but the source .* is a folder: give a folder"):
        sink.open([_Frames("folder", "imgs")], NAMES)
    with pytest.raises(InputError, match="is an image but the source is a video: give a video path"):
        sink.open([_Frames("video", "clip.mp4")], NAMES)
    sink.open([_Frames("image", "in.jpg", count=1)], NAMES)
    sink.write(0, Frame(0, np.zeros((8, 10, 3), np.uint8), "in.jpg"), _detections(),
               np.full((8, 10, 3), 200, np.uint8))
    assert sink.close() == [("annotated output", str(tmp_path / "out.png"))]
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # a PNG, as asked, not a JPEG
    with pytest.raises(InputError, match="--save out.gif: .*an image path"):
        sink_for("--save", "out.gif")


def test_a_folder_of_images_keeps_their_names_and_formats(tmp_path):
    sink = sink_for("--save", str(tmp_path / "annotated"))
    sink.open([_Frames("folder", "imgs")], NAMES)
    for i, name in enumerate(["a.png", "b.jpg"]):
        sink.write(0, Frame(i, np.zeros((8, 10, 3), np.uint8), name), _detections(), np.zeros((8, 10, 3), np.uint8))
    assert sorted(os.listdir(str(tmp_path / "annotated"))) == ["a.png", "b.jpg"]
    assert (tmp_path / "annotated" / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_show_needs_a_gui_opencv_and_a_display():
    gui = "  GUI:                           GTK3\n    GTK+:                        YES (ver 3.24.20)\n"
    assert display_problem(gui, {"DISPLAY": ":0"}, "linux") is None
    assert display_problem(gui, {"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert "DISPLAY is not set" in display_problem(gui, {}, "linux")
    assert display_problem(gui, {}, "darwin") is None  # macOS and Windows windows need no DISPLAY
    assert "no GUI backend" in display_problem("  GUI:                           NONE\n", {"DISPLAY": ":0"}, "linux")
    # OpenCV 4.1 (JetPack 4.6) lists the backends under an empty GUI: line
    old_gtk = "  GUI: \n    GTK+ 3.x:                    YES (ver 3.22.30)\n    GThread :                    YES\n\n  Media I/O: \n"
    assert display_problem(old_gtk, {"DISPLAY": ":0"}, "linux") is None
    old_headless = "  GUI: \n\n  Media I/O: \n    ZLib:                        YES\n"
    assert "no GUI backend" in display_problem(old_headless, {"DISPLAY": ":0"}, "linux")


def _write_folder(folder, names):
    os.makedirs(str(folder))
    for i, name in enumerate(names):
        cv2.imwrite(os.path.join(str(folder), name), np.full((6, 8, 3), 40 * i, np.uint8))
    return str(folder)


def test_a_folder_skips_unreadable_images_and_names_its_videos(tmp_path, caplog):
    folder = _write_folder(tmp_path / "imgs", ["img1.png", "img3.png"])
    (tmp_path / "imgs" / "img2.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "imgs" / "clip.mp4").write_bytes(b"a video")
    (tmp_path / "imgs" / "b.avi").write_bytes(b"another")
    with open_source(folder, skip_unreadable=True) as source:
        assert "reading its 3 images, not its 2 videos (b.avi, clip.mp4)" in caplog.text
        assert [f.name for f in source] == ["img1.png", "img3.png"]
        assert source.skipped == 1
    assert "skipping cannot decode image" in caplog.text and "img2.jpg" in caplog.text
    os.remove(os.path.join(folder, "img1.png"))
    os.remove(os.path.join(folder, "img3.png"))
    os.remove(os.path.join(folder, "img2.jpg"))
    with pytest.raises(InputError, match=r"no images .*only 2 videos \(b.avi, clip.mp4\)"):
        open_source(folder)


def test_pipeline_runs_a_classifier_and_counts_skipped_images(tmp_path):
    from edgecsp.runtime.runner import BaseRunner

    meta = CLS_META._replace(names=["blue", "green", "red"], channel_order="BGR")

    class ColourRunner(BaseRunner):
        """Logits: the frame's mean B, G, R (the network takes BGR here): a red frame is class 2."""

        ARTEFACT_IS_FILE = False

        def _activate(self):
            self._bind(meta, "images", (1, 3, 8, 8), ["logits"])

        def _deactivate(self):
            pass

        def _infer(self, batch):
            return [batch.mean(axis=(2, 3)) * 20.0]

    folder = str(tmp_path / "imgs")
    os.makedirs(folder)
    cv2.imwrite(os.path.join(folder, "1.png"), np.dstack([np.zeros((8, 8)), np.zeros((8, 8)),
                                                          np.full((8, 8), 255)]).astype(np.uint8))
    cv2.imwrite(os.path.join(folder, "2.png"), np.dstack([np.full((8, 8), 255), np.zeros((8, 8)),
                                                          np.zeros((8, 8))]).astype(np.uint8))
    (tmp_path / "imgs" / "3.png").write_bytes(b"broken")
    seen = []
    with ColourRunner("colour") as runner, open_source(folder, skip_unreadable=True) as source:
        result = run_pipeline(runner, source, DetectOptions(top_k=2), sync=True,
                              callback=lambda stream, frame, res: seen.append(res))
    # red first, then blue; blue first, then green and red tie: the lower id wins
    assert [r.class_ids.tolist() for r in seen] == [[2, 0], [0, 1]] and isinstance(seen[0], Classification)
    assert result.frames == 2 and result.summary["skipped"] == 1 and result.summary["task"] == "classify"
    assert result.detections == 0
