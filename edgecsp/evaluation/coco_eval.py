"""COCO mAP through a COCO library (faster-coco-eval, else pycocotools): an independent check of the numpy mAP.

``edgecsp.evaluation.detection_map`` counts the way pycocotools does; running the real library on the same
detections catches a drift between the two. Only the "all areas, 100 detections" numbers are read: mAP@0.5:0.95,
mAP@0.5 and the per-class AP@0.5 from the accumulated precision array. The library is imported on first use.
"""
import contextlib
import copy
import io
import json

import numpy as np

from edgecsp._lazy import available
from edgecsp.errors import InputError, MissingDependency

LIBRARIES = ("faster_coco_eval", "pycocotools")
INSTALL_HINT = "pip install 'edgecsp[eval]' (faster-coco-eval) or pip install pycocotools"


def coco_library():
    """``(name, COCO class, COCOeval class)`` of the first installed COCO library; MissingDependency otherwise."""
    if available("faster_coco_eval"):
        from faster_coco_eval import COCO, COCOeval_faster

        return "faster_coco_eval", COCO, COCOeval_faster
    if available("pycocotools"):
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return "pycocotools", COCO, COCOeval
    raise MissingDependency("a COCO library is needed for the independent mAP check but neither faster-coco-eval "
                            "nor pycocotools is installed: {} (or pass --no-coco)".format(INSTALL_HINT))


def library_version(name):
    module = __import__(name)
    return "{} {}".format(name, getattr(module, "__version__", "?"))


def to_coco_results(predictions, image_ids, category_ids):
    """COCO result dicts of per-image ``(boxes xyxy, scores, labels)`` (labels index ``category_ids``)."""
    results = []
    for image_id, (boxes, scores, labels) in zip(image_ids, predictions):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        for box, score, label in zip(boxes, np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1)):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": image_id, "category_id": int(category_ids[int(label)]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return results


def _load_ground_truth(annotations_json):
    with open(annotations_json, "r") as handle:
        data = json.load(handle)
    data = copy.copy(data)
    # pycocotools reads area (for the area ranges) and iscrowd from every annotation; COCO jsons made by
    # other tools often omit them
    annotations = []
    for ann in data.get("annotations", []):
        ann = dict(ann)
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
        annotations.append(ann)
    data["annotations"] = annotations
    data.setdefault("info", {})
    return data


def coco_map(annotations_json, results, image_ids=None, max_detections=100):
    """Evaluate COCO ``results`` (dicts: image_id, category_id, bbox xywh, score) against ``annotations_json``.

    ``image_ids`` restricts the evaluation to those images (default: all). Returns ``{"library", "map50_95",
    "map50", "per_class"}`` with ``per_class`` = {zero-based label: AP@0.5} for the categories with ground
    truth (labels in ascending category-id order, as ``load_coco_ground_truth``).
    """
    name, coco_class, eval_class = coco_library()
    try:
        data = _load_ground_truth(annotations_json)
    except (IOError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError("{} is not COCO detection json the COCO library can read ({}: {})".format(
            annotations_json, type(exc).__name__, exc))
    category_ids = sorted(int(c["id"]) for c in data["categories"])
    with contextlib.redirect_stdout(io.StringIO()):  # both libraries print progress lines
        ground_truth = coco_class()
        ground_truth.dataset = data
        ground_truth.createIndex()
        ids = sorted(ground_truth.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
        with_gt = set(a["category_id"] for a in data["annotations"]
                      if a["image_id"] in set(ids) and not a.get("iscrowd", 0))
        per_class = {}
        if not results:  # the libraries cannot load an empty result list: every AP is 0
            return {"library": library_version(name), "map50_95": 0.0 if with_gt else float("nan"),
                    "map50": 0.0 if with_gt else float("nan"),
                    "per_class": dict((category_ids.index(c), 0.0) for c in sorted(with_gt))}
        detections = ground_truth.loadRes(copy.deepcopy(list(results)))
        evaluator = eval_class(ground_truth, detections, "bbox")
        evaluator.params.imgIds = ids
        evaluator.params.maxDets = [1, 10, int(max_detections)]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = np.asarray(evaluator.eval["precision"])  # [iou, recall, class, area, max dets]
    iou_thresholds = np.asarray(evaluator.params.iouThrs)
    at50 = int(np.argmin(np.abs(iou_thresholds - 0.5)))
    categories = list(evaluator.params.catIds)
    ap50, ap_all = [], []
    for k, category in enumerate(categories):
        if category not in with_gt:
            continue
        curve50 = precision[at50, :, k, 0, -1]
        curves = precision[:, :, k, 0, -1]
        value50 = float(curve50[curve50 > -1].mean()) if np.any(curve50 > -1) else 0.0
        per_class[category_ids.index(category)] = value50
        ap50.append(value50)
        ap_all.append(float(curves[curves > -1].mean()) if np.any(curves > -1) else 0.0)
    return {"library": library_version(name), "map50_95": float(np.mean(ap_all)) if ap_all else float("nan"),
            "map50": float(np.mean(ap50)) if ap50 else float("nan"), "per_class": per_class}
