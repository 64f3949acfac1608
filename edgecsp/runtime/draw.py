"""Draw results on a BGR frame: one box and a "label score" tag per detection, a stable colour per class; a
classifier's best classes as a list of tags in the top-left corner.

Python 3.6 compatible; OpenCV is imported on first use.
"""
import colorsys

from edgecsp._lazy import require

_GOLDEN = 0.618033988749895


def class_color(class_id):
    """A BGR colour for ``class_id``: the same in every run and on every device, well spread between classes."""
    # Golden-ratio steps around the hue circle keep neighbouring ids far apart without a palette table.
    hue = (int(class_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _text_color(bgr):
    # Black on light tags, white on dark ones (perceived luminance).
    luminance = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_detections(image, det, names=None, thickness=None, show_score=True):
    """Draw ``det`` (a Detections in ``image`` pixels) onto the BGR ``image`` in place and return it."""
    cv2 = require("cv2", "drawing detections")
    names = list(names) if names is not None else []
    h, w = image.shape[:2]
    # Scale line and font with the frame so labels stay legible on 4K and do not swamp 320x240.
    line = thickness or max(1, int(round(0.002 * (h + w))))
    font_scale = max(0.35, line / 3.0)
    font_thick = max(1, line - 1)
    for box, score, cid in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist()):
        cid = int(cid)
        color = class_color(cid)
        x1, y1, x2, y2 = [int(round(v)) for v in box]
        cv2.rectangle(image, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
        label = names[cid] if 0 <= cid < len(names) else str(cid)
        if show_score:
            label = "{} {:.2f}".format(label, score)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thick)
        # Tag above the box, or inside it when the box touches the top edge.
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
        left = max(0, min(x1, w - tw - 2))  # keep the whole tag inside the frame at the right edge
        cv2.rectangle(image, (left, top), (left + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(image, label, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    _text_color(color), font_thick, cv2.LINE_AA)
    return image


def draw_classes(image, result, names=None):
    """Draw a classifier's ``result`` (a Classification, best first) as "name score" tags stacked in the top-left
    corner of the BGR ``image``, in place; returns it."""
    cv2 = require("cv2", "drawing classes")
    names = list(names) if names is not None else []
    h, w = image.shape[:2]
    line = max(1, int(round(0.002 * (h + w))))
    font_scale = max(0.35, line / 3.0)
    font_thick = max(1, line - 1)
    top = 0
    for cid, score in zip(result.class_ids.tolist(), result.scores.tolist()):
        cid = int(cid)
        label = "{} {:.2f}".format(names[cid] if 0 <= cid < len(names) else str(cid), score)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thick)
        color = class_color(cid)
        cv2.rectangle(image, (0, top), (tw + 4, top + th + base + 4), color, -1)
        cv2.putText(image, label, (2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, _text_color(color),
                    font_thick, cv2.LINE_AA)
        top += th + base + 4
    return image


def draw_result(image, result, names=None):
    """Draw a Detections or a Classification on ``image`` in place (``draw_detections`` / ``draw_classes``)."""
    if hasattr(result, "boxes"):
        return draw_detections(image, result, names)
    return draw_classes(image, result, names)
