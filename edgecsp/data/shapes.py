"""A deterministic synthetic detection dataset, "shapes": filled shapes on textured, noisy backgrounds.

The class is the shape (``SHAPE_CLASSES``); the colour is random and carries no class information. Backgrounds
mix a colour gradient, low-frequency blobs, optional stripes and gaussian noise, so a detector has to look at
outlines rather than colours. Each shape gets a colour whose luma differs from the background under it by at
least ``MIN_LUMA_CONTRAST``, so it stays visible, also after lossy video coding.

Boxes are the tight axis-aligned box of the drawn pixels (anti-aliased coverage >= 50%), computed from the
shape's mask, so rotated shapes get exact boxes. Box convention: ``x1, y1`` is the first covered pixel column /
row and ``x2, y2`` is one past the last one (so ``x2 - x1`` is the width in pixels, as in COCO ``[x, y, w, h]``).

Everything is a pure function of the seed (``numpy.random.Generator``); OpenCV only draws. Files written here:

* ``generate_dataset``: ``<out_dir>/images/000000.jpg ...`` and ``<out_dir>/annotations.json`` (COCO; category
  ids start at 1 in ``SHAPE_CLASSES`` order; ``area`` is the mask area in pixels). With ``yolo=True`` also the
  layout Ultralytics trains on (``write_yolo_labels``): ``labels/000000.txt ...`` and ``data.yaml``.
* ``generate_video``: the video at ``path`` (fourcc ``mp4v``) and its ground truth at ``video_gt_path(path)``,
  i.e. ``<stem>.gt.jsonl`` next to it: ``clip.mp4`` -> ``clip.gt.jsonl``. Line 1 is a header
  ``{"format": "edgecsp-video-gt", "version": 1, "names": [...], "frames": N, "width": W, "height": H,
  "fps": F, "seed": S, "video": "clip.mp4"}``; then one line per frame
  ``{"frame": i, "boxes": [[x1, y1, x2, y2], ...], "labels": [...], "ids": [...]}`` where ``labels`` index
  ``names`` and ``ids`` are track ids that stay constant while an object is in view.
"""
import json
import math
import os

import numpy as np

from edgecsp._files import Staged, check_space, write_bytes_atomic
from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.validate import non_negative_int, number_in, positive_int

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross")
CIRCLE, SQUARE, TRIANGLE, STAR, CROSS = range(len(SHAPE_CLASSES))

SCALE_RANGE = (0.08, 0.40)  # shape diameter as a fraction of the shorter image side (log-uniform)
MAX_OBJECTS = 6
MAX_IOU = 0.3  # a new box overlaps no earlier box more than this ...
MAX_OCCLUSION = 0.3  # ... and covers at most this fraction of an earlier (larger, underlying) box
MIN_LUMA_CONTRAST = 50.0  # |luma(shape) - luma(background under it)|, 0..255
VARIED_SIZES = ((320, 320), (288, 384), (384, 288))  # (h, w) picked per image when size=None

VIDEO_MIN_SIDE = 32.0  # smallest shape diameter in a video, pixels: boxes stay >= 24 px after mp4v coding
VIDEO_VISIBLE_FRACTION = 0.5  # an object cut by the frame border is ground truth once this much is inside
VIDEO_LUMA_CONTRAST = 50.0  # against the whole background's luma range (1st..99th percentile)
GT_FORMAT = "edgecsp-video-gt"
GT_VERSION = 1

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ON = 128  # coverage threshold (of 255) for "pixel belongs to the shape"
_LUMA = np.array([0.114, 0.587, 0.299], np.float32)  # BGR
_PLACEMENT_TRIES = 24
_COLOUR_TRIES = 8


def _cv2():
    return require("cv2", "drawing the synthetic shapes dataset")


def _gauss_table():
    # Gaussian quantiles of 256 equiprobable bins: random bytes through this table are gaussian noise at a
    # tenth of the cost of Generator.standard_normal. Bisection on erf keeps this stdlib-only on Python 3.6.
    def quantile(p):
        lo, hi = -10.0, 10.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    return np.array([quantile((i + 0.5) / 256.0) for i in range(256)], np.float32).reshape(1, 256)


_GAUSS = []


def _noise(rng, cv2, h, w, sigma):
    if not _GAUSS:
        _GAUSS.append(_gauss_table())
    raw = np.frombuffer(rng.bytes(h * w * 3), np.uint8).reshape(h, w, 3)
    return cv2.LUT(raw, _GAUSS[0] * np.float32(sigma))


def _check_size(size):
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError("size must be (height, width), got {!r}: pass two integers such as (256, 256)".format(size))
    if h < 32 or w < 32:
        raise InputError("size {}x{} (h x w) is too small for the shapes dataset: use at least 32x32".format(h, w))
    return h, w


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng must be a numpy.random.Generator, got {}: use numpy.random.default_rng(seed)".format(
            type(rng).__name__))


def _check_seed(seed):
    return non_negative_int(seed, "seed")


# ---------------------------------------------------------------------------------------------------- drawing


def _shape_param(rng, kind):
    """The per-instance shape parameter: star inner radius, cross arm half-width (fractions of the size)."""
    if kind == STAR:
        return float(rng.uniform(0.38, 0.5))
    if kind == CROSS:
        return float(rng.uniform(0.24, 0.36))
    return 0.0


def _unit_outline(kind, angle, param):
    """Polygon (N, 2) with circumradius 1 around the origin, rotated by ``angle``; None for the circle."""
    if kind == CIRCLE:
        return None
    if kind == SQUARE:
        t = angle + np.pi / 4 + np.arange(4) * (np.pi / 2)
        r = np.ones(4)
    elif kind == TRIANGLE:
        t = angle - np.pi / 2 + np.arange(3) * (2 * np.pi / 3)
        r = np.ones(3)
    elif kind == STAR:
        t = angle - np.pi / 2 + np.arange(10) * (np.pi / 5)
        r = np.where(np.arange(10) % 2 == 0, 1.0, param)
    elif kind == CROSS:
        a = param
        pts = np.array([(a, 1), (a, a), (1, a), (1, -a), (a, -a), (a, -1), (-a, -1), (-a, -a), (-1, -a),
                        (-1, a), (-a, a), (-a, 1)], np.float64) / math.hypot(1.0, a)
        c, s = math.cos(angle), math.sin(angle)
        return pts @ np.array([[c, s], [-s, c]])
    else:
        raise ValueError("unknown shape kind {}".format(kind))
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rasterize(cv2, kind, cx, cy, radius, angle, param):
    """Anti-aliased coverage (uint8, 255 = inside) of one shape on a canvas just large enough.

    Returns ``(alpha, x0, y0)``: the canvas and the image position of its top-left pixel.
    """
    x0 = int(math.floor(cx - radius)) - 2
    y0 = int(math.floor(cy - radius)) - 2
    x1 = int(math.ceil(cx + radius)) + 3
    y1 = int(math.ceil(cy + radius)) + 3
    alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
    one = 1 << _SHIFT
    outline = _unit_outline(kind, angle, param)
    if outline is None:
        centre = (int(round((cx - x0) * one)), int(round((cy - y0) * one)))
        cv2.circle(alpha, centre, int(round(radius * one)), 255, -1, cv2.LINE_AA, _SHIFT)
    else:
        pts = np.round((outline * radius + (cx - x0, cy - y0)) * one).astype(np.int32)
        cv2.fillPoly(alpha, [pts], 255, cv2.LINE_AA, _SHIFT)
    return alpha, x0, y0


def _mask_box(on):
    """Tight box (x1, y1, x2, y2), x2/y2 exclusive, of a boolean mask; None when it is empty."""
    cols = np.flatnonzero(on.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(on.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _clip_canvas(alpha, x0, y0, h, w):
    """The part of a canvas at (x0, y0) that lies inside an h x w image: (alpha view, image x, image y)."""
    cx0, cy0 = max(0, -x0), max(0, -y0)
    cx1 = min(alpha.shape[1], w - x0)
    cy1 = min(alpha.shape[0], h - y0)
    if cx1 <= cx0 or cy1 <= cy0:
        return None, 0, 0
    return alpha[cy0:cy1, cx0:cx1], x0 + cx0, y0 + cy0


def _blend(image, alpha, ix, iy, colour):
    """Paint ``colour`` into float32 ``image`` with coverage ``alpha`` (uint8) placed at (ix, iy), in place."""
    a = alpha.astype(np.float32) * np.float32(1.0 / 255.0)
    region = image[iy:iy + alpha.shape[0], ix:ix + alpha.shape[1]]
    region += (colour - region) * a[..., None]


def _background(rng, cv2, h, w, calm=False):
    """Float32 BGR texture: gradient + low-frequency blobs + optional stripes (no per-pixel noise yet).

    ``calm`` narrows the luma range (used for videos, whose shapes must contrast with every place they visit).
    """
    c0 = rng.uniform(20.0, 235.0, 3)
    c1 = c0 + rng.uniform(-40.0, 40.0, 3) if calm else rng.uniform(20.0, 235.0, 3)
    theta = rng.uniform(0.0, 2 * np.pi)
    gh, gw = (int(v) for v in rng.integers(3, 9, 2))
    blob_sd = rng.uniform(4.0, 10.0) if calm else rng.uniform(8.0, 30.0)
    ys = np.linspace(0.0, 1.0, gh)[:, None]
    xs = np.linspace(0.0, 1.0, gw)[None, :]
    t = xs * math.cos(theta) + ys * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    low = c0 + t[..., None] * (c1 - c0) + rng.normal(0.0, blob_sd, (gh, gw, 3))
    # cubic to an intermediate grid, then linear: smooth like cubic at a tenth of the cost
    mid = cv2.resize(low.astype(np.float32), (max(2, w // 8), max(2, h // 8)), interpolation=cv2.INTER_CUBIC)
    image = cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.35:
        period = rng.uniform(6.0, 40.0)
        phi = rng.uniform(0.0, np.pi)
        amp = rng.uniform(3.0, 8.0, 3) if calm else rng.uniform(6.0, 25.0, 3)
        phase = rng.uniform(0.0, 2 * np.pi)
        k = np.float32(2 * np.pi / period)
        u = (np.arange(w, dtype=np.float32) * np.float32(math.cos(phi) * k))[None, :] + \
            (np.arange(h, dtype=np.float32) * np.float32(math.sin(phi) * k))[:, None]
        image += np.sin(u + np.float32(phase))[..., None] * amp.astype(np.float32)
    return image


def _with_luma(colour, target):
    """``colour`` blended towards black or white until its luma is ``target`` (hue roughly kept)."""
    luma = float(colour @ _LUMA)
    if target < luma:
        return colour * np.float32(target / max(luma, 1e-6))
    return 255.0 - (255.0 - colour) * np.float32((255.0 - target) / max(255.0 - luma, 1e-6))


def _contrasting_colour(rng, region, alpha):
    """A random BGR colour whose luma differs from the coverage-weighted mean of ``region`` by the minimum."""
    a = alpha.astype(np.float32)
    mean = float((region * a[..., None]).sum(axis=(0, 1)) @ _LUMA) / max(float(a.sum()), 1.0)
    candidates = rng.integers(0, 256, (_COLOUR_TRIES, 3)).astype(np.float32)
    diff = np.abs(candidates @ _LUMA - mean)
    ok = np.flatnonzero(diff >= MIN_LUMA_CONTRAST)
    if ok.size:
        return candidates[ok[0]]
    # none contrasts enough: darken or brighten one, towards the side with more room
    margin = MIN_LUMA_CONTRAST + 10.0
    return _with_luma(candidates[0], mean - margin if mean >= 127.5 else mean + margin)


def _overlap_ok(box, boxes):
    """True when ``box`` keeps IoU < MAX_IOU and occludes < MAX_OCCLUSION of every earlier box."""
    if not boxes:
        return True
    b = np.asarray(boxes, np.float64)
    iw = np.clip(np.minimum(b[:, 2], box[2]) - np.maximum(b[:, 0], box[0]), 0, None)
    ih = np.clip(np.minimum(b[:, 3], box[3]) - np.maximum(b[:, 1], box[1]), 0, None)
    inter = iw * ih
    area_old = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    area_new = (box[2] - box[0]) * (box[3] - box[1])
    iou = inter / (area_old + area_new - inter)
    return bool(np.all(iou < MAX_IOU) and np.all(inter < MAX_OCCLUSION * area_old))


# ---------------------------------------------------------------------------------------------------- images


def render_sample(rng, size=(256, 256), return_masks=False):
    """Draw one image: ``(image_bgr uint8 HxWx3, boxes float32 (K, 4) xyxy pixels, labels int64 (K,))``.

    1 to ``MAX_OBJECTS`` shapes, fully inside the image, larger ones first so that smaller ones lie on top.
    With ``return_masks=True`` a fourth item holds each shape's full drawn mask (bool, K x H x W, before
    occlusion by later shapes); the random stream consumed is the same either way.
    """
    _check_rng(rng)
    h, w = _check_size(size)
    cv2 = _cv2()
    image = _background(rng, cv2, h, w)
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    short = min(h, w)
    diameters = np.sort(np.exp(rng.uniform(math.log(SCALE_RANGE[0] * short), math.log(SCALE_RANGE[1] * short),
                                           count)))[::-1]
    kinds = rng.integers(0, len(SHAPE_CLASSES), count)
    boxes, labels, masks = [], [], []
    for diameter, kind in zip(diameters, kinds):
        kind = int(kind)
        angle = float(rng.uniform(0.0, 2 * np.pi))
        param = _shape_param(rng, kind)
        alpha, _, _ = _rasterize(cv2, kind, 0.0, 0.0, 0.5 * float(diameter), angle, param)
        local = _mask_box(alpha >= _ON)  # in canvas pixels
        # canvas top-left (px, py) keeps the whole box inside the image: px + bx1 <= w and px + bx0 >= 0
        xs = rng.integers(-local[0], w - local[2] + 1, _PLACEMENT_TRIES)
        ys = rng.integers(-local[1], h - local[3] + 1, _PLACEMENT_TRIES)
        for px, py in zip(xs, ys):
            box = (local[0] + int(px), local[1] + int(py), local[2] + int(px), local[3] + int(py))
            if _overlap_ok(box, boxes):
                break
        else:
            continue  # no room left for this one: fewer objects in this image
        visible, ix, iy = _clip_canvas(alpha, int(px), int(py), h, w)
        region = image[iy:iy + visible.shape[0], ix:ix + visible.shape[1]]
        colour = _contrasting_colour(rng, region, visible)
        _blend(image, visible, ix, iy, colour)
        boxes.append(box)
        labels.append(kind)
        if return_masks:
            mask = np.zeros((h, w), bool)
            mask[iy:iy + visible.shape[0], ix:ix + visible.shape[1]] = visible >= _ON
            masks.append(mask)
    image += _noise(rng, cv2, h, w, rng.uniform(2.0, 10.0))
    out = (np.clip(image, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4),
           np.asarray(labels, np.int64))
    if return_masks:
        return out + (np.asarray(masks, bool).reshape(-1, h, w),)
    return out


def dataset_sample(seed, index, size=None, return_masks=False):
    """Image ``index`` of ``generate_dataset(seed=seed, size=size)``, rendered in memory (same pixels before
    JPEG coding, same boxes); it does not depend on the dataset's count."""
    rng = np.random.default_rng([_check_seed(seed), int(index)])
    h, w = _check_size(size) if size is not None else VARIED_SIZES[int(rng.integers(len(VARIED_SIZES)))]
    return render_sample(rng, (h, w), return_masks=return_masks)


def generate_dataset(out_dir, count, seed, size=None, yolo=False, yolo_val=None):
    """Write ``count`` images and a COCO ``annotations.json`` under ``out_dir``; return the json's path.

    ``size=(h, w)`` fixes the image size; ``None`` picks one of ``VARIED_SIZES`` per image (exercises
    letterboxing). Images are ``images/NNNNNN.jpg`` (quality 95); image ids start at 1. The json is written
    last, so a folder with an ``annotations.json`` is complete. ``yolo=True`` also writes the YOLO txt layout
    (``write_yolo_labels``; ``yolo_val``: the folder its ``data.yaml`` names for validation).
    """
    if yolo_val is not None and not yolo:
        raise InputError("a YOLO validation folder needs the YOLO layout: pass yolo=True (--format yolo)")
    seed = _check_seed(seed)
    count = positive_int(count, "count")
    fixed = None if size is None else _check_size(size)
    cv2 = _cv2()
    image_dir = os.path.join(out_dir, "images")
    try:
        os.makedirs(image_dir, exist_ok=True)
    except OSError as exc:
        raise InputError("cannot create {}: {}; pass a writable out_dir".format(image_dir, exc.strerror))
    images, annotations = [], []
    for index in range(int(count)):
        image, boxes, labels, masks = dataset_sample(seed, index, fixed, return_masks=True)
        h, w = image.shape[:2]
        name = "{:06d}.jpg".format(index)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError("OpenCV failed to encode a JPEG")
        write_bytes_atomic(os.path.join(image_dir, name), encoded.tobytes())
        image_id = index + 1
        images.append({"id": image_id, "file_name": "images/" + name, "width": w, "height": h})
        for box, label, mask in zip(boxes.tolist(), labels.tolist(), masks):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "area": float(mask.sum()), "iscrowd": 0})
    coco = {
        "info": {"description": "edgecsp synthetic shapes", "seed": seed, "version": 1,
                 "size": None if fixed is None else list(fixed)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPE_CLASSES)],
    }
    if yolo:
        _write_yolo(out_dir, coco, yolo_val)
    path = os.path.join(out_dir, "annotations.json")
    write_bytes_atomic(path, json.dumps(coco).encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------------- YOLO layout


def yolo_label_lines(annotations, image):
    """The YOLO label lines of one COCO image's ``annotations``: ``class cx cy w h``, class from 0, the box
    normalised by the image's width and height (6 decimals: under 0.001 px at these sizes)."""
    w, h = float(image["width"]), float(image["height"])
    lines = []
    for ann in annotations:
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        lines.append("{:d} {:.6f} {:.6f} {:.6f} {:.6f}".format(
            int(ann["category_id"]) - 1, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h))
    return lines


def _yaml_string(text):
    return json.dumps(str(text))  # a JSON string is a YAML double-quoted scalar: no PyYAML needed


def _write_yolo(out_dir, coco, val_dir=None):
    label_dir = os.path.join(out_dir, "labels")
    try:
        os.makedirs(label_dir, exist_ok=True)
    except OSError as exc:
        raise InputError("cannot create {}: {}; pass a writable folder".format(label_dir, exc.strerror))
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in coco["images"]:
        # Ultralytics finds images/<name>.jpg's labels at labels/<name>.txt; an image without objects gets an
        # empty file (a background image, not a missing label)
        stem = os.path.splitext(os.path.basename(image["file_name"]))[0]
        lines = yolo_label_lines(by_image.get(image["id"], []), image)
        write_bytes_atomic(os.path.join(label_dir, stem + ".txt"), "".join(l + "\n" for l in lines).encode("ascii"))
    root = os.path.abspath(out_dir)
    val = os.path.join(os.path.abspath(val_dir), "images") if val_dir else "images"
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    text = ["# the YOLO layout of {} (edgecsp data shapes --format yolo); annotations.json holds the same "
            "boxes".format(_yaml_string(coco["info"]["description"] + ", seed {}".format(coco["info"]["seed"]))),
            "path: " + _yaml_string(root), "train: images", "val: " + _yaml_string(val), "names:"]
    text += ["  {}: {}".format(i, _yaml_string(n)) for i, n in enumerate(names)]
    write_bytes_atomic(os.path.join(out_dir, "data.yaml"), ("\n".join(text) + "\n").encode("utf-8"))


def write_yolo_labels(out_dir, val_dir=None):
    """Write the YOLO txt layout of the dataset in ``out_dir`` (its ``annotations.json``); return data.yaml's path.

    ``labels/NNNNNN.txt`` beside ``images/`` (``class cx cy w h``, normalised) and ``data.yaml`` (``path`` this
    folder, ``train: images``, ``val``: this folder's images or ``val_dir``'s, ``names``), the boxes of
    annotations.json: Ultralytics trains and validates on the same images ``edgecsp eval`` reads.
    """
    path = os.path.join(out_dir, "annotations.json")
    try:
        with open(path) as handle:
            coco = json.load(handle)
    except (OSError, ValueError) as exc:
        raise InputError("cannot read {}: {}; write the dataset first (edgecsp data shapes {})".format(
            path, exc, out_dir))
    _write_yolo(out_dir, coco, val_dir)
    return os.path.join(out_dir, "data.yaml")


# ---------------------------------------------------------------------------------------------------- video


def video_gt_path(video_path):
    """Where ``generate_video`` puts the ground truth of ``video_path``: ``<stem>.gt.jsonl`` next to it."""
    return os.path.splitext(video_path)[0] + ".gt.jsonl"


class _Mover(object):
    __slots__ = ("id", "kind", "radius", "param", "angle", "omega", "pos", "vel", "colour", "state")

    def fully_inside(self, h, w):
        (x, y), r = self.pos, self.radius
        return r <= x <= w - r and r <= y <= h - r

    def gone(self, h, w):
        """Entirely outside the frame and moving further away."""
        (x, y), (vx, vy), r = self.pos, self.vel, self.radius
        return (x < -r and vx <= 0) or (x > w + r and vx >= 0) or (y < -r and vy <= 0) or (y > h + r and vy >= 0)


def _video_colour(rng, luma_lo, luma_hi):
    # the shape moves over the whole background: contrast against its whole luma range, not one spot
    candidates = rng.integers(0, 256, (_COLOUR_TRIES, 3)).astype(np.float32)
    luma = candidates @ _LUMA
    margin = np.maximum(luma_lo - luma, luma - luma_hi)
    ok = np.flatnonzero(margin >= VIDEO_LUMA_CONTRAST)
    if ok.size:
        return candidates[ok[0]]
    if luma_lo >= 255.0 - luma_hi:
        return _with_luma(candidates[0], max(0.0, luma_lo - VIDEO_LUMA_CONTRAST - 10.0))
    return _with_luma(candidates[0], min(255.0, luma_hi + VIDEO_LUMA_CONTRAST + 10.0))


def _new_mover(rng, ident, h, w, colour_range):
    m = _Mover()
    m.id = ident
    m.kind = int(rng.integers(len(SHAPE_CLASSES)))
    short = min(h, w)
    lo = max(VIDEO_MIN_SIDE, 0.09 * short)
    hi = max(lo, 0.30 * short)
    m.radius = 0.5 * float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
    m.param = _shape_param(rng, m.kind)
    m.angle = float(rng.uniform(0.0, 2 * np.pi))
    m.omega = 0.0 if m.kind == CIRCLE else float(np.radians(rng.uniform(-1.5, 1.5)))
    speed, heading = rng.uniform(1.0, 3.5), rng.uniform(0.0, 2 * np.pi)
    m.vel = np.array([speed * math.cos(heading), speed * math.sin(heading)])
    m.colour = _video_colour(rng, *colour_range)
    m.state = "bounce"  # "bounce" | "enter" (no walls until fully inside) | "leave" (no walls)
    return m


def _free(pos, radius, movers):
    return all(np.hypot(*(pos - o.pos)) > radius + o.radius + 4.0 for o in movers)


def _spawn_entering(rng, movers, ident, h, w, colour_range):
    m = _new_mover(rng, ident, h, w, colour_range)
    edge = int(rng.integers(4))
    r, speed = m.radius, float(np.hypot(*m.vel))
    along = rng.uniform(0.2, 0.8)
    inward = rng.uniform(-0.5, 0.5)  # heading spread around the inward normal, radians
    if edge == 0:  # left
        m.pos, normal = np.array([-r, along * h]), 0.0
    elif edge == 1:  # right
        m.pos, normal = np.array([w + r, along * h]), np.pi
    elif edge == 2:  # top
        m.pos, normal = np.array([along * w, -r]), np.pi / 2
    else:  # bottom
        m.pos, normal = np.array([along * w, h + r]), -np.pi / 2
    m.vel = speed * np.array([math.cos(normal + inward), math.sin(normal + inward)])
    m.state = "enter"
    return m if _free(m.pos, r, movers) else None


def _step(movers, h, w):
    """Advance one frame: move, rotate, bounce off walls and (elastically, equal masses) off each other."""
    for m in movers:
        m.pos = m.pos + m.vel
        m.angle += m.omega
        if m.state == "enter" and m.fully_inside(h, w):
            m.state = "bounce"
        if m.state == "bounce":
            (x, y), r = m.pos, m.radius
            if (x < r and m.vel[0] < 0) or (x > w - r and m.vel[0] > 0):
                m.vel[0] = -m.vel[0]
            if (y < r and m.vel[1] < 0) or (y > h - r and m.vel[1] > 0):
                m.vel[1] = -m.vel[1]
    for i, a in enumerate(movers):
        for b in movers[i + 1:]:
            d = b.pos - a.pos
            dist = float(np.hypot(*d))
            if 0.0 < dist < a.radius + b.radius:
                n = d / dist
                approach = float((b.vel - a.vel) @ n)
                if approach < 0.0:
                    a.vel = a.vel + approach * n
                    b.vel = b.vel - approach * n
    return [m for m in movers if m.state == "bounce" or not m.gone(h, w)]


def generate_video(path, frames, seed, size=(360, 640), fps=25):
    """Write a video of moving shapes to ``path`` (mp4v) and its ground truth; return the ground-truth path.

    Shapes move at constant velocity, rotate slowly, bounce off the borders and off each other; now and then
    one enters from a border or leaves through one. The background texture is static, the noise is new each
    frame. Ground truth goes to ``video_gt_path(path)`` (``<stem>.gt.jsonl``, format in the module docstring).
    """
    seed = _check_seed(seed)
    frames = positive_int(frames, "frames")
    h, w = _check_size(size)
    number_in(fps, "fps", 0.0, low_open=True)
    stem, ext = os.path.splitext(path)
    if not ext:
        raise InputError("video path {!r} has no extension: use a name such as clip.mp4".format(path))
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise InputError("cannot create folder {} ({}): pick another video path".format(folder, exc.strerror))
    cv2 = _cv2()
    rng = np.random.default_rng([seed, 0x5649444F])  # "VIDO": a stream distinct from generate_dataset's
    background = _background(rng, cv2, h, w, calm=True)
    luma = background @ _LUMA
    colour_range = (float(np.percentile(luma, 1)), float(np.percentile(luma, 99)))
    sigma = rng.uniform(3.0, 6.0)

    movers, next_id = [], 0
    for _ in range(int(rng.integers(2, 5))):
        m = _new_mover(rng, next_id, h, w, colour_range)
        r = m.radius
        for x, y in zip(rng.uniform(r, w - r, _PLACEMENT_TRIES), rng.uniform(r, h - r, _PLACEMENT_TRIES)):
            if _free(np.array([x, y]), r, movers):
                m.pos = np.array([x, y])
                movers.append(m)
                next_id += 1
                break

    gt_path = video_gt_path(path)
    # the video and its ground truth land together, the ground truth last: when it exists, the video is complete;
    # a stale ground truth is removed first, so it never sits next to the new video
    staged = Staged([path, gt_path], remove=[gt_path])
    tmp_video, tmp_gt = staged.staged
    writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    try:
        if not writer.isOpened():
            raise InputError("OpenCV cannot write {} with the mp4v codec: use a .mp4 or .avi path".format(path))
        lines = [json.dumps({"format": GT_FORMAT, "version": GT_VERSION, "names": list(SHAPE_CLASSES),
                             "frames": int(frames), "width": w, "height": h, "fps": fps, "seed": seed,
                             "video": os.path.basename(path)})]
        for index in range(int(frames)):
            image, boxes, labels, ids = _render_frame(cv2, background, movers)
            image += _noise(rng, cv2, h, w, sigma)
            check_space(staged.folder, path)  # OpenCV's writer only warns, frame after frame, on a full disk
            writer.write(np.clip(image, 0, 255).astype(np.uint8))
            lines.append(json.dumps({"frame": index, "boxes": boxes, "labels": labels, "ids": ids}))

            events = rng.random(2)
            if (events[0] < 0.02 and len(movers) < MAX_OBJECTS) or not movers:
                m = _spawn_entering(rng, movers, next_id, h, w, colour_range)
                if m is not None:
                    movers.append(m)
                    next_id += 1
            bouncing = [m for m in movers if m.state == "bounce"]
            if events[1] < 0.01 and len(bouncing) > 1:
                bouncing[int(rng.integers(len(bouncing)))].state = "leave"
            movers = _step(movers, h, w)
        writer.release()
        with open(tmp_gt, "wb") as handle:
            handle.write(("\n".join(lines) + "\n").encode("utf-8"))
        staged.commit()
    except Exception as exc:  # a full or unwritable destination: one line (edgecsp._files.write_failure)
        raise staged.failure(exc) or exc
    finally:
        writer.release()
        staged.abort()
    return gt_path


def _render_frame(cv2, background, movers):
    """Draw the movers on a copy of the background: (float32 image, boxes, labels, ids) before noise."""
    h, w = background.shape[:2]
    image = background.copy()
    boxes, labels, ids = [], [], []
    for m in movers:
        alpha, x0, y0 = _rasterize(cv2, m.kind, m.pos[0], m.pos[1], m.radius, m.angle, m.param)
        visible, ix, iy = _clip_canvas(alpha, x0, y0, h, w)
        if visible is None:
            continue
        _blend(image, visible, ix, iy, m.colour)
        on = visible >= _ON
        box = _mask_box(on)
        if box is None or on.sum() < VIDEO_VISIBLE_FRACTION * (alpha >= _ON).sum():
            continue
        boxes.append([box[0] + ix, box[1] + iy, box[2] + ix, box[3] + iy])
        labels.append(m.kind)
        ids.append(m.id)
    return image, boxes, labels, ids
