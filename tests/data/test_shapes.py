"""Synthetic shapes dataset: determinism, exact boxes, COCO export and the video with its ground truth."""
import json
import os

import numpy as np
import pytest

from edgecsp.data.shapes import (MAX_IOU, MAX_OBJECTS, SHAPE_CLASSES, dataset_sample, generate_dataset,
                                 generate_video, render_sample, video_gt_path)
from edgecsp.errors import InputError
from edgecsp.evaluation import evaluate_detections, load_coco_ground_truth, load_video_ground_truth

pytestmark = pytest.mark.opencv

LUMA = np.array([0.114, 0.587, 0.299])


def test_same_seed_same_sample_and_different_seed_differs():
    a = render_sample(np.random.default_rng(7), (256, 256))
    b = render_sample(np.random.default_rng(7), (256, 256))
    c = render_sample(np.random.default_rng(8), (256, 256))
    assert a[0].tobytes() == b[0].tobytes()
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert a[0].tobytes() != c[0].tobytes()


def test_types_shapes_and_counts():
    for seed in range(20):
        image, boxes, labels = render_sample(np.random.default_rng(seed), (192, 256))
        assert image.dtype == np.uint8 and image.shape == (192, 256, 3)
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
        assert labels.dtype == np.int64
        assert 1 <= len(labels) <= MAX_OBJECTS
        assert labels.min() >= 0 and labels.max() < len(SHAPE_CLASSES)


def test_masks_do_not_change_the_random_stream():
    plain = render_sample(np.random.default_rng(3), (128, 160))
    with_masks = render_sample(np.random.default_rng(3), (128, 160), return_masks=True)
    assert plain[0].tobytes() == with_masks[0].tobytes()
    assert with_masks[3].shape == (len(plain[2]), 128, 160)


def test_boxes_are_tight_around_the_masks_and_inside_the_image():
    for seed in range(30):
        image, boxes, labels, masks = render_sample(np.random.default_rng(seed), (160, 224), return_masks=True)
        for box, mask in zip(boxes, masks):
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
            assert 0 <= box[0] < box[2] <= 224 and 0 <= box[1] < box[3] <= 160
            # the first and last covered row/column really hold shape pixels: the box is tight on all sides
            x1, y1, x2, y2 = box.astype(int)
            assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()
            assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()


def test_occlusion_is_limited():
    for seed in range(40):
        _, boxes, _ = render_sample(np.random.default_rng(seed), (256, 256))
        b = boxes.astype(np.float64)
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                iw = max(0.0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
                ih = max(0.0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
                inter = iw * ih
                union = np.prod(b[i, 2:] - b[i, :2]) + np.prod(b[j, 2:] - b[j, :2]) - inter
                assert inter / union < MAX_IOU


def test_shapes_contrast_with_the_background_around_them():
    # the last shape lies on top of everything: its pixels differ in luma from the box corners around it
    for seed in range(30):
        image, boxes, _, masks = render_sample(np.random.default_rng(seed), (256, 256), return_masks=True)
        x1, y1, x2, y2 = boxes[-1].astype(int)
        luma = image[y1:y2, x1:x2].astype(np.float64) @ LUMA
        inside = masks[-1][y1:y2, x1:x2]
        # corners: pixels of the box at least 2 px away from the shape, so anti-aliasing does not blur them
        far = ~np.pad(inside, 2)[4:, 4:] & ~np.pad(inside, 2)[:-4, :-4] & ~inside
        if far.sum() < 20:
            continue
        assert abs(luma[inside].mean() - luma[far].mean()) > 35, seed


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError):
        render_sample(np.random.default_rng(0), (16, 16))
    with pytest.raises(InputError):
        render_sample(0, (64, 64))
    with pytest.raises(InputError):
        generate_dataset("/tmp/never-written", 0, seed=1)
    with pytest.raises(InputError):
        generate_dataset("/tmp/never-written", 2, seed=-1)


def test_generate_dataset_writes_coco_that_reads_back(tmp_path):
    import cv2

    path = generate_dataset(str(tmp_path / "ds"), 12, seed=5)
    assert path == str(tmp_path / "ds" / "annotations.json")
    with open(path) as f:
        coco = json.load(f)
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
    assert [c["name"] for c in coco["categories"]] == list(SHAPE_CLASSES)
    assert len(coco["images"]) == 12
    assert len({(im["height"], im["width"]) for im in coco["images"]}) > 1  # size=None varies the size
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)
    assert all(a["iscrowd"] == 0 and 0 < a["area"] <= a["bbox"][2] * a["bbox"][3] for a in coco["annotations"])

    images, gts = load_coco_ground_truth(path)
    assert sum(len(labels) for _, labels in gts) == len(coco["annotations"])
    for index, (info, (boxes, labels)) in enumerate(zip(images, gts)):
        pixels = cv2.imread(os.path.join(str(tmp_path / "ds"), info["file_name"]))
        ref_image, ref_boxes, ref_labels = dataset_sample(5, index)
        assert pixels.shape == ref_image.shape == (info["height"], info["width"], 3)
        smooth = lambda im: cv2.blur(im, (5, 5)).astype(int)  # noqa: E731  (JPEG drops fine noise)
        assert np.abs(smooth(pixels) - smooth(ref_image)).mean() < 3  # the same picture, up to JPEG coding
        assert np.array_equal(boxes, ref_boxes) and np.array_equal(labels, ref_labels)
    # ground truth as predictions scores perfectly: the loader's label mapping agrees with the writer's
    preds = [(b, np.ones(len(b)), l) for b, l in gts]
    assert evaluate_detections(preds, gts, len(SHAPE_CLASSES))["map50_95"] == 1.0
    assert not [n for n in os.listdir(str(tmp_path / "ds" / "images")) if n.startswith(".")]  # no temp files


def test_generate_dataset_is_deterministic_and_fixed_size_works(tmp_path):
    a = generate_dataset(str(tmp_path / "a"), 3, seed=11, size=(96, 128))
    b = generate_dataset(str(tmp_path / "b"), 3, seed=11, size=(96, 128))
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()
    for name in ("000000.jpg", "000002.jpg"):
        with open(str(tmp_path / "a" / "images" / name), "rb") as fa, \
                open(str(tmp_path / "b" / "images" / name), "rb") as fb:
            assert fa.read() == fb.read()
    images, _ = load_coco_ground_truth(a)
    assert {(im["height"], im["width"]) for im in images} == {(96, 128)}


def test_generate_video_frames_match_ground_truth(tmp_path):
    import cv2

    video = str(tmp_path / "clip.mp4")
    gt_path = generate_video(video, 40, seed=2)
    assert gt_path == video_gt_path(video) == str(tmp_path / "clip.gt.jsonl")
    assert sorted(os.listdir(str(tmp_path))) == ["clip.gt.jsonl", "clip.mp4"]  # no temp files left
    cap = cv2.VideoCapture(video)
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (360, 640, 3)
        count += 1
    cap.release()
    assert count == 40
    with open(gt_path) as f:
        lines = f.read().splitlines()
    assert len(lines) == 41  # header + one line per frame
    header, gts = load_video_ground_truth(gt_path)
    assert header["names"] == list(SHAPE_CLASSES) and header["frames"] == 40 and header["fps"] == 25
    assert len(gts) == 40
    for boxes, labels in gts:
        assert len(boxes) >= 1 and len(boxes) == len(labels)
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 360).all()
    first = json.loads(lines[1])
    last = json.loads(lines[-1])
    assert first["boxes"] != last["boxes"]  # the shapes move
    big = [min(b[2] - b[0], b[3] - b[1]) for b in first["boxes"]]
    assert min(big) >= 24  # objects fully in view stay large enough to survive mp4v
    # the loader also accepts the video path itself
    assert load_video_ground_truth(video)[0] == header


def test_generate_video_is_deterministic(tmp_path):
    a = generate_video(str(tmp_path / "a.mp4"), 15, seed=9, size=(120, 160))
    b = generate_video(str(tmp_path / "b.mp4"), 15, seed=9, size=(120, 160))
    c = generate_video(str(tmp_path / "c.mp4"), 15, seed=10, size=(120, 160))
    read = lambda p: open(p).read().splitlines()[1:]  # noqa: E731  (the header names the video file)
    assert read(a) == read(b)
    assert read(a) != read(c)


def _read_yolo_labels(path, width, height):
    """(boxes xyxy pixels, labels) of one YOLO label file."""
    rows = np.loadtxt(path, ndmin=2) if os.path.getsize(path) else np.zeros((0, 5))
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), rows[:, 0].astype(np.int64)


def test_yolo_layout_labels_equal_the_coco_boxes(tmp_path):
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "train"
    path = generate_dataset(str(out), 10, seed=3, yolo=True, yolo_val=str(tmp_path / "val"))
    images, gts = load_coco_ground_truth(path)  # annotations.json is still written, and complete
    labels = sorted(os.listdir(str(out / "labels")))
    assert labels == ["{:06d}.txt".format(i) for i in range(10)]
    for info, (boxes, classes) in zip(images, gts):
        stem = os.path.splitext(os.path.basename(info["file_name"]))[0]
        yolo_boxes, yolo_classes = _read_yolo_labels(str(out / "labels" / (stem + ".txt")), info["width"],
                                                     info["height"])
        assert np.array_equal(yolo_classes, classes)  # class ids from 0 in SHAPE_CLASSES order, same order
        assert np.abs(yolo_boxes - boxes).max() < 1e-3  # 6 decimals of the normalised box: < 0.001 px here
        with open(str(out / "labels" / (stem + ".txt"))) as handle:
            for line in handle.read().splitlines():
                cls, *values = line.split()
                assert int(cls) in range(len(SHAPE_CLASSES)) and all(0 < float(v) <= 1 for v in values)
    with open(str(out / "data.yaml")) as handle:
        data = yaml.safe_load(handle)
    assert data["names"] == dict(enumerate(SHAPE_CLASSES))
    assert data["path"] == str(out) and data["train"] == "images"
    assert data["val"] == str(tmp_path / "val" / "images")  # the held-out folder, absolute


def test_yolo_layout_of_an_existing_dataset_and_its_own_val(tmp_path):
    from edgecsp.data.shapes import write_yolo_labels

    out = str(tmp_path / "ds")
    generate_dataset(out, 4, seed=8, size=(96, 128))
    assert not os.path.exists(os.path.join(out, "labels"))  # COCO only unless asked
    yaml_path = write_yolo_labels(out)
    with open(yaml_path) as handle:
        text = handle.read()
    assert 'train: images\nval: "images"\n' in text and '  4: "cross"' in text
    with open(os.path.join(out, "labels", "000001.txt")) as handle:
        first = handle.readline().split()
    _, boxes, classes = dataset_sample(8, 1, (96, 128))
    x1, y1, x2, y2 = boxes[0]
    assert int(first[0]) == classes[0]
    assert [float(v) for v in first[1:]] == pytest.approx([(x1 + x2) / 256, (y1 + y2) / 192, (x2 - x1) / 128,
                                                          (y2 - y1) / 96], abs=1e-6)
    with pytest.raises(InputError, match="edgecsp data shapes"):
        write_yolo_labels(str(tmp_path / "nothing-here"))
    with pytest.raises(InputError, match="yolo=True"):
        generate_dataset(str(tmp_path / "x"), 1, seed=0, yolo_val=out)


def test_data_cli_writes_the_yolo_layout(tmp_path, capsys):
    from edgecsp.cli import main

    out = str(tmp_path / "cli")
    assert main(["data", "shapes", out, "--count", "3", "--seed", "1000", "--format", "yolo"]) == 0
    assert "labels/" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["annotations.json", "data.yaml", "images", "labels"]
    assert main(["data", "shapes", str(tmp_path / "y"), "--count", "1", "--val", out]) == 3  # --val needs yolo
    assert "--format yolo" in capsys.readouterr().err
