import numpy as np
import pytest

from tests.gates import optional

cv2 = optional("cv2")

from edgecsp.errors import InputError  # noqa: E402
from edgecsp.runtime import sources as sources_mod  # noqa: E402
from edgecsp.runtime.sources import Frame, open_source  # noqa: E402

pytestmark = [pytest.mark.opencv]

W, H, N = 64, 48, 12


def _write_video(path, frames=N, fps=10.0, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened(), "this OpenCV build cannot write " + fourcc  # pip's OpenCV 4.x writes mp4v and MJPG
    for i in range(frames):
        writer.write(np.full((H, W, 3), 10 + (230 * i) // max(1, frames - 1), dtype=np.uint8))
    writer.release()
    return path


def test_video_file_round_trip(tmp_path):
    path = _write_video(tmp_path / "clip.mp4")
    with open_source(str(path)) as source:
        assert source.kind == "video"
        assert source.length == N
        assert source.fps == pytest.approx(10.0, rel=0.01)
        frames = list(source)
    assert [f.index for f in frames] == list(range(N))
    assert all(isinstance(f, Frame) and f.image_bgr.shape == (H, W, 3) for f in frames)
    assert frames[0].name == "clip.mp4"
    brightness = [float(f.image_bgr.mean()) for f in frames]
    assert brightness == sorted(brightness) and brightness[-1] - brightness[0] > 150
    assert not source.truncated
    assert source._cap is None  # released by the with block


def test_folder_of_images_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / "img{}.png".format(i)), np.full((8, 9, 3), i, dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._img3.png").write_bytes(b"macOS resource fork")
    source = open_source(str(tmp_path))
    assert source.kind == "folder" and source.length == 3 and source.fps is None
    frames = list(source)
    assert [f.name for f in frames] == ["img1.png", "img2.png", "img10.png"]
    assert [int(f.image_bgr[0, 0, 0]) for f in frames] == [1, 2, 10]  # PNG is lossless
    assert [f.index for f in frames] == [0, 1, 2]


def test_single_image(tmp_path):
    cv2.imwrite(str(tmp_path / "one.jpg"), np.zeros((5, 7, 3), np.uint8))
    with open_source(str(tmp_path / "one.jpg")) as source:
        frames = list(source)
    assert source.kind == "image" and source.length == 1
    assert len(frames) == 1 and frames[0].image_bgr.shape == (5, 7, 3) and frames[0].name == "one.jpg"


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(InputError, match="no images"):
        open_source(str(tmp_path))
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        open_source(str(tmp_path))
    with pytest.raises(InputError):
        open_source("")


def test_unreadable_image(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"this is not a png")
    with pytest.raises(InputError, match="bad.png"):
        open_source(str(tmp_path / "bad.png"))
    cv2.imwrite(str(tmp_path / "good.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="bad.png"):
        list(open_source(str(tmp_path)))
    frames = list(open_source(str(tmp_path), skip_unreadable=True))
    assert [f.name for f in frames] == ["good.png"]


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "fake.mp4"
    path.write_text("hello, I am not a video\n" * 20)
    with pytest.raises(InputError, match="fake.mp4"):
        open_source(str(path))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_source(str(empty))


@pytest.mark.parametrize("keep", [0.5, 0.9])
@pytest.mark.parametrize("ext,fourcc", [("mp4", "mp4v"), ("avi", "MJPG")])
def test_truncated_video(tmp_path, keep, ext, fourcc):
    # mp4 keeps its index at the end (truncated: cannot open); avi streams (truncated: fewer frames)
    data = _write_video(tmp_path / ("full." + ext), frames=30, fourcc=fourcc).read_bytes()
    cut = tmp_path / ("cut." + ext)
    cut.write_bytes(data[:int(len(data) * keep)])
    try:
        with open_source(str(cut)) as source:
            count = sum(1 for _ in source)
    except InputError as exc:
        assert "cut." + ext in str(exc) and "\n" not in str(exc)
    else:
        assert 0 < count < 30
        assert source.length == 30 and source.truncated


class _FakeCapture(object):
    """Stands in for cv2.VideoCapture: opens, reports frames, returns none (a damaged file or dead camera)."""

    targets = []

    def __init__(self, target):
        self.targets.append(target)
        self.released = False

    def isOpened(self):
        return True

    def get(self, prop):
        return 25.0 if prop == cv2.CAP_PROP_FPS else 10.0

    def read(self):
        return False, None

    def release(self):
        self.released = True


def test_reported_frames_but_none_decoded_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCapture)
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="yields no frames") as info:
        open_source(str(path))
    assert "broken.mp4" in str(info.value) and "reports 10" in str(info.value)


def test_camera_index_and_url_specs(monkeypatch):
    _FakeCapture.targets = []
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCapture)
    with pytest.raises(InputError, match="camera 0"):
        open_source("0")
    with pytest.raises(InputError, match=r"\*\*\*@cam.local"):
        open_source("rtsp://admin:secret@cam.local/stream1")
    assert _FakeCapture.targets == [0, "rtsp://admin:secret@cam.local/stream1"]


def test_credentials_hidden_from_names():
    assert sources_mod._hide_credentials("rtsp://u:p@host:554/x") == "rtsp://***@host:554/x"
    assert sources_mod._hide_credentials("http://host/x") == "http://host/x"


def test_a_camera_index_is_ascii_digits_only():
    """'²' and '٣' pass str.isdigit(); int() refuses the first and reads the second: neither is a camera index."""
    from edgecsp.errors import InputError
    from edgecsp.runtime.sources import open_source
    from edgecsp.validate import ascii_digits

    assert ascii_digits("0") and ascii_digits("12") and not ascii_digits("²") and not ascii_digits("٣")
    assert not ascii_digits("1\n") and not ascii_digits("") and not ascii_digits(3)
    for spec in ("²", "٣"):
        with pytest.raises(InputError, match="does not exist"):
            open_source(spec)
