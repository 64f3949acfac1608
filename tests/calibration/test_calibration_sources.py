"""Calibration sources: seeded sampling, fingerprints, runtime preprocessing, and one-line errors for bad sources."""
import json
import os

import numpy as np
import pytest

from tests.gates import optional

from edgecsp.calibration import CalibrationConfig, CalibrationSet, select_samples
from edgecsp.calibration.config import int8_options
from edgecsp.errors import InputError
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.preprocess import preprocess

pytestmark = [pytest.mark.opencv]

cv2 = optional("cv2")


def meta(size=(32, 48)):
    return yolo_meta(names=["a", "b"], input_size=size, heads=[HeadMeta(8, [(8.0, 8.0)])], outputs=["p8"],
                     model="calib-test")


def write_images(folder, count, shape=(20, 30)):
    os.makedirs(str(folder), exist_ok=True)
    for i in range(count):
        cv2.imwrite(os.path.join(str(folder), "img{}.png".format(i)), np.full(shape + (3,), 10 * i, np.uint8))
    return str(folder)


def test_folder_sampling_is_seeded_and_fingerprinted(tmp_path):
    folder = write_images(tmp_path / "imgs", 6)
    a = select_samples(folder, 3, seed=1)
    assert [s.name for s in a.samples] == [s.name for s in select_samples(folder, 3, seed=1).samples]
    assert a.fingerprint() == select_samples(folder, 3, seed=1).fingerprint()
    by_seed = dict((k, select_samples(folder, 3, seed=k)) for k in range(6))
    assert len(set(tuple(s.name for s in v.samples) for v in by_seed.values())) > 1  # the seed matters
    for other in by_seed.values():  # different samples, different fingerprint
        assert (other.fingerprint() == a.fingerprint()) == (sorted(other.samples) == sorted(a.samples))
    everything = select_samples(folder, 6, seed=5)
    assert [s.name for s in everything.samples] == ["img{}.png".format(i) for i in range(6)]
    # a file whose size changes changes the fingerprint
    before = everything.fingerprint()
    with open(os.path.join(folder, "img0.png"), "ab") as handle:
        handle.write(b"\0")
    assert select_samples(folder, 6).fingerprint() != before


def test_batches_come_from_the_runtime_preprocess(tmp_path):
    folder = write_images(tmp_path / "imgs", 4)
    calib = CalibrationSet(CalibrationConfig(folder, count=4), meta(), batch_size=2)
    batches = list(calib)
    assert len(calib) == 2 and calib.num_samples == 4 and len(batches) == 2
    frames = list(calib.frames())
    expected = preprocess(frames[:2], meta())[0]
    assert batches[0].dtype == np.float32 and batches[0].shape == (2, 3, 32, 48)
    np.testing.assert_array_equal(batches[0], expected)
    assert list(calib)[1].tobytes() == batches[1].tobytes()  # re-iterable, same data each pass


def test_coco_json_video_and_synthetic_sources(tmp_path):
    from edgecsp.data.shapes import generate_dataset, generate_video

    coco = generate_dataset(str(tmp_path / "ds"), 5, seed=3, size=(48, 64))
    assert select_samples(coco, 5).kind == "coco"
    assert len(list(select_samples(coco, 2, seed=4).frames())) == 2
    video = str(tmp_path / "clip.mp4")
    generate_video(video, 12, seed=2, size=(48, 64))
    clip = select_samples(video, 4)
    assert clip.kind == "video" and clip.settings["every"] == 3
    frames = list(clip.frames())
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    assert select_samples(video, 2, every=5).settings["every"] == 5
    synthetic = select_samples("shapes:7", 3)
    assert synthetic.kind == "shapes" and len(list(synthetic.frames())) == 3
    assert synthetic.fingerprint() != select_samples("shapes:8", 3).fingerprint()


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty_folder", "contains no images"),
    ("empty_file", "is an empty file"),
    ("too_few", "has 2 images, fewer than --count 5"),
    ("not_a_video", "not a readable video"),
    ("coco_missing_images", "annotations do not match the images: 1 of the 1"),
    ("coco_no_images", "lists no images"),
])
def test_bad_sources_fail_in_one_line(tmp_path, case, message):
    spec = str(tmp_path / case)
    if case == "empty_folder":
        os.makedirs(spec)
    elif case == "empty_file":
        open(spec + ".mp4", "w").close()
        spec += ".mp4"
    elif case == "too_few":
        write_images(spec, 2)
    elif case == "not_a_video":
        spec += ".mp4"
        with open(spec, "w") as handle:
            handle.write("not a video")
    elif case.startswith("coco"):
        spec += ".json"
        images = [{"id": 1, "file_name": "gone.jpg", "width": 4, "height": 4}] if case == "coco_missing_images" else []
        with open(spec, "w") as handle:
            json.dump({"images": images, "annotations": [], "categories": []}, handle)
    count = 5 if case == "too_few" else 1
    with pytest.raises(InputError, match=message) as info:
        select_samples(spec, count)
    assert "\n" not in str(info.value)


def test_unreadable_image_is_skipped_with_a_warning_and_recorded(tmp_path, caplog):
    folder = write_images(tmp_path / "imgs", 2)
    with open(os.path.join(folder, "broken.jpg"), "wb") as handle:
        handle.write(b"not a jpeg")
    calibration = CalibrationSet(CalibrationConfig(folder, count=3), meta())
    assert len(calibration.samples.samples) == 3
    calibration.verify()
    assert "cannot decode image" in caplog.text and "broken.jpg" in caplog.text
    assert sorted(s.name for s in calibration.samples.samples) == ["img0.png", "img1.png"]
    assert len(list(calibration)) == 2 and calibration.num_samples == 2
    data = calibration.provenance("0" * 64, {"tool": "test"})["data"]
    assert data["skipped"] == 1 and data["skipped_samples"] == ["broken.jpg"] and data["samples"] == 2
    # the fingerprint is that of the images used: the same as a folder without the broken one
    os.remove(os.path.join(folder, "broken.jpg"))
    clean = CalibrationSet(CalibrationConfig(folder, count=2), meta()).verify()
    assert clean.fingerprint() == calibration.fingerprint() and clean.samples.describe()["skipped"] == 0


def test_all_unreadable_or_too_few_left_for_a_batch_is_one_line_error(tmp_path):
    folder = str(tmp_path / "broken")
    os.makedirs(folder)
    for name in ("a.jpg", "b.png"):
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(b"not an image")
    with pytest.raises(InputError, match="2 of the 2 chosen images cannot be decoded") as info:
        CalibrationSet(CalibrationConfig(folder, count=2), meta()).verify()
    assert "\n" not in str(info.value)


def test_videos_in_a_calibration_folder_are_named_in_a_warning(tmp_path, caplog):
    folder = write_images(tmp_path / "imgs", 2)
    with open(os.path.join(folder, "clip.mp4"), "wb") as handle:
        handle.write(b"x")
    samples = select_samples(folder, 2)
    assert [s.name for s in samples.samples] == ["img0.png", "img1.png"]
    assert "not its 1 video (clip.mp4)" in caplog.text
    os.remove(os.path.join(folder, "img0.png"))
    os.remove(os.path.join(folder, "img1.png"))
    with pytest.raises(InputError, match="only 1 video \\(clip.mp4\\)"):
        select_samples(folder, 1)


def test_options_become_configs():
    calibration, accuracy = int8_options({"calib": "shapes:1", "calib_count": 10, "max_drop": 0.5,
                                          "val_data": "val.json"})
    assert calibration == CalibrationConfig("shapes:1", count=10)
    assert accuracy.max_drop == 0.5 and accuracy.data == "val.json" and accuracy.metric == "map50"
    assert int8_options({}) == (None, None)
    with pytest.raises(InputError, match="need validation data: pass --data"):
        int8_options({"max_drop": 1.0})
    with pytest.raises(InputError, match="unknown INT8 build option workspace_mib"):
        int8_options({"workspace_mib": 1})
    with pytest.raises(InputError, match="--count must be a positive integer"):
        CalibrationConfig("shapes:0", count=0).checked()
    with pytest.raises(InputError, match="INT8 needs calibration data"):
        CalibrationConfig(None, count=4).checked()
