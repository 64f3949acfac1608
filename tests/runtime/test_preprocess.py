import numpy as np
import pytest

from edgecsp.errors import InputError, MetadataError
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.preprocess import letterbox, preprocess, resize_plain, scale_boxes_back


def _meta(**kw):
    base = dict(names=["a", "b"], input_size=(64, 64), heads=[HeadMeta(32, [(10.0, 13.0)])])
    base.update(kw)
    return yolo_meta(**base)


def _forward(box, info):
    """Map an original-frame box into network-input pixels (the inverse of scale_boxes_back)."""
    x1, y1, x2, y2 = box
    return [x1 * info.scale_x + info.pad_x, y1 * info.scale_y + info.pad_y,
            x2 * info.scale_x + info.pad_x, y2 * info.scale_y + info.pad_y]


def test_letterbox_hand_computed_wide_image():
    image = np.full((100, 200, 3), 7, dtype=np.uint8)  # h=100, w=200
    out, info = letterbox(image, (64, 64), pad_value=114)
    # scale = min(64/100, 64/200) = 0.32 -> 64 x 32 resized, 32 rows of padding split 16 / 16
    assert info.scale == pytest.approx(0.32)
    assert (info.pad_x, info.pad_y) == (0, 16)
    assert info.orig_shape == (100, 200) and info.input_shape == (64, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[:16] == 114).all() and (out[48:] == 114).all()
    assert (out[16:48] == 7).all()


def test_letterbox_odd_padding_puts_extra_pixel_bottom_right():
    image = np.full((100, 300, 3), 7, dtype=np.uint8)
    out, info = letterbox(image, (64, 64))
    # scale 64/300 -> resized height round(21.33) = 21; 43 pad rows: 21 on top, 22 below
    assert info.pad_y == 21 and info.pad_x == 0
    assert (out[:21] == 114).all() and (out[21:42] == 7).all() and (out[42:] == 114).all()
    tall = np.full((300, 100, 3), 7, dtype=np.uint8)
    out, info = letterbox(tall, (64, 64))
    assert info.pad_x == 21 and info.pad_y == 0
    assert (out[:, :21] == 114).all() and (out[:, 21:42] == 7).all() and (out[:, 42:] == 114).all()


def test_letterbox_is_deterministic_and_scales_up():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (37, 53, 3)).astype(np.uint8)
    a, ia = letterbox(image, (96, 128), pad_value=0)
    b, ib = letterbox(image.copy(), (96, 128), pad_value=0)
    assert a.tobytes() == b.tobytes() and ia == ib
    assert ia.scale == pytest.approx(min(96 / 37.0, 128 / 53.0)) and ia.scale > 1


def test_letterbox_accepts_gray_and_bgra():
    gray = np.full((10, 20), 9, dtype=np.uint8)
    out, _ = letterbox(gray, (32, 32))
    assert out.shape == (32, 32, 3) and out[16, 16].tolist() == [9, 9, 9]
    bgra = np.zeros((10, 20, 4), dtype=np.uint8)
    assert letterbox(bgra, (32, 32))[0].shape == (32, 32, 3)


def test_bad_images_raise_input_error():
    with pytest.raises(InputError):
        letterbox(None, (32, 32))
    with pytest.raises(InputError):
        letterbox(np.zeros((0, 5, 3), np.uint8), (32, 32))
    with pytest.raises(InputError):
        letterbox(np.zeros((5, 5, 3), np.float32), (32, 32))
    with pytest.raises(InputError):
        preprocess([], _meta())


def test_resize_plain_has_separate_scales_and_no_padding():
    out, info = resize_plain(np.zeros((100, 200, 3), np.uint8), (64, 64))
    assert out.shape == (64, 64, 3)
    assert (info.pad_x, info.pad_y) == (0, 0)
    assert info.scale_x == pytest.approx(0.32) and info.scale_y == pytest.approx(0.64)


def test_preprocess_layout_channel_order_and_scale():
    frame = np.zeros((100, 200, 3), dtype=np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30  # B, G, R
    batch, infos = preprocess(frame, _meta())
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert len(infos) == 1 and infos[0].pad_y == 16
    centre = batch[0, :, 32, 32]
    np.testing.assert_allclose(centre, np.array([30, 20, 10]) / 255.0, rtol=1e-6)  # RGB
    np.testing.assert_allclose(batch[0, :, 0, 0], [114 / 255.0] * 3, rtol=1e-6)  # padding
    bgr, _ = preprocess([frame, frame], _meta(channel_order="BGR", scale=1.0))
    assert bgr.shape[0] == 2
    np.testing.assert_allclose(bgr[1, :, 32, 32], [10, 20, 30])


def test_preprocess_plain_resize_when_meta_says_so():
    batch, infos = preprocess(np.full((100, 200, 3), 50, np.uint8), _meta(letterbox=False))
    assert infos[0].pad_y == 0 and infos[0].scale_y == pytest.approx(0.64)
    assert np.allclose(batch, 50 / 255.0)  # no padding anywhere


def test_preprocess_rejects_unknown_channel_order():
    with pytest.raises(MetadataError):
        preprocess(np.zeros((8, 8, 3), np.uint8), _meta(channel_order="YUV"))


@pytest.mark.parametrize("resize", ["letterbox", "plain"])
@pytest.mark.parametrize("shape", [(100, 200), (300, 100), (37, 53), (480, 640)])
def test_scale_boxes_back_round_trip(resize, shape):
    image = np.zeros(shape + (3,), dtype=np.uint8)
    if resize == "letterbox":
        _, info = letterbox(image, (64, 96))
    else:
        _, info = resize_plain(image, (64, 96))
    h, w = shape
    boxes = np.array([[0, 0, w, h], [w * 0.1, h * 0.2, w * 0.5, h * 0.9]], dtype=np.float32)
    net = np.array([_forward(b, info) for b in boxes], dtype=np.float32)
    back = scale_boxes_back(net, info)
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    assert net[0, 0] != 0 or net[0, 1] != 0 or resize == "plain"  # the test really exercised padding


def test_scale_boxes_back_clips_and_keeps_input():
    _, info = letterbox(np.zeros((100, 200, 3), np.uint8), (64, 64))
    net = np.array([[-10.0, 0.0, 80.0, 64.0]], dtype=np.float32)
    back = scale_boxes_back(net, info)
    np.testing.assert_allclose(back, [[0, 0, 200, 100]])
    assert net[0, 0] == -10.0  # the caller's array is not modified
    assert scale_boxes_back(np.zeros((0, 4), np.float32), info).shape == (0, 4)
    # explicit orig_shape clips to it
    assert scale_boxes_back(net, info, (50, 60))[0].tolist() == [0, 0, 60, 50]


def test_a_stream_letterbox_buffer_gives_the_same_pixels_without_allocating():
    from edgecsp.runtime.preprocess import LetterboxBuffer, letterbox

    rng = np.random.RandomState(0)
    buffer = LetterboxBuffer()
    canvases = set()
    # landscape, portrait, same size again, exact fit, a smaller frame: the pad must follow every change
    for shape in ((360, 640), (640, 360), (640, 360), (256, 256), (100, 180), (360, 640)):
        image = rng.randint(0, 255, shape + (3,)).astype(np.uint8)
        want, want_info = letterbox(image, (256, 256), 114)
        got, info = buffer.letterbox(image, (256, 256), 114)
        np.testing.assert_array_equal(got, want)
        assert info == want_info
        canvases.add(got.__array_interface__["data"][0])
    assert len(canvases) == 1  # one canvas for the whole stream


def test_preprocess_with_buffers_equals_without(tmp_path):
    from edgecsp.runtime.preprocess import LetterboxBuffer

    meta = yolo_meta(names=["a"], input_size=(128, 96), heads=[HeadMeta(32, [(10.0, 10.0)])])
    frames = [np.random.RandomState(i).randint(0, 255, (90 + 10 * i, 160, 3)).astype(np.uint8) for i in range(3)]
    buffers = [LetterboxBuffer() for _ in frames]
    for _ in range(2):
        got, infos = preprocess(frames, meta, buffers=buffers)
        want, want_infos = preprocess(frames, meta)
        np.testing.assert_array_equal(got, want)
        assert infos == want_infos and got.flags["C_CONTIGUOUS"] and got.dtype == np.float32
