"""COCO-annotated image sets and video ground truth on disk: loaders, image lists, and ``CocoDataset``.

A neutral data module (below calibration and evaluation, which both read it). ``CocoDataset`` is checked
against its images before anything is run on it; it is used by ``edgecsp eval``, by INT8 accuracy control
(validation data) and, for its file list, by calibration.
Image paths are the json's ``file_name`` under ``images_dir`` (default: the json's folder), or their base
name there, so both ``--images DATASET`` and ``--images DATASET/images`` work. Python 3.6 compatible.
"""
import json
import os

import numpy as np

from edgecsp.errors import InputError
from edgecsp.runtime.sources import read_image
from edgecsp.validate import positive_int


def coco_file_names(annotations_json):
    """The ``file_name`` of every image a COCO json lists, in file order (InputError when it lists none)."""
    try:
        with open(annotations_json, "r") as handle:
            coco = json.load(handle)
        names = [str(image["file_name"]) for image in coco["images"]]
    except (IOError, OSError) as exc:
        raise InputError("cannot read COCO annotations {}: {}".format(annotations_json, exc.strerror or exc))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError("{} is not a COCO json with an images list ({}: {})".format(
            annotations_json, type(exc).__name__, exc))
    if not names:
        raise InputError("{} lists no images: pass a COCO json with an images list".format(annotations_json))
    return names


def resolve_image_paths(file_names, images_dir, annotations_json, option="--images"):
    """The path of each ``file_names`` entry under ``images_dir``; InputError when any is missing.

    ``option`` names the flag that sets the folder; None means there is none (the json's own folder is used).
    """
    fix = ("pass {} with the folder they are in".format(option) if option else
           "keep the annotations json in the folder its file_name entries are relative to")
    if not os.path.isdir(images_dir):
        raise InputError("image folder {} does not exist: {} ({} lists the images)".format(
            images_dir, fix, annotations_json))
    paths, missing = [], []
    for name in file_names:
        path = os.path.join(images_dir, name)
        if not os.path.isfile(path):
            path = os.path.join(images_dir, os.path.basename(name))
        if not os.path.isfile(path):
            missing.append(name)
        paths.append(path)
    if missing:
        raise InputError("annotations do not match the images: {} of the {} images {} lists are not in {} "
                         "(first: {}); {}".format(len(missing), len(file_names), annotations_json, images_dir,
                                                  missing[0], fix))
    return paths


class CocoDataset(object):
    """Images and ground truth of a COCO detection json; ``limit`` keeps the first images only.

    ``names`` are the category names in label order, ``ground_truths[i]`` is ``(boxes xyxy, labels)`` of
    image ``i``, ``image(i)`` reads it (BGR) and checks its size against the annotations.
    """

    def __init__(self, annotations_json, images_dir=None, limit=None, option="--images"):
        annotations_json = str(annotations_json)
        if not os.path.isfile(annotations_json):
            raise InputError("annotations {} not found: pass a COCO detection json (edgecsp data shapes writes "
                             "one)".format(annotations_json))
        self.annotations = annotations_json
        self.images_dir = images_dir or os.path.dirname(os.path.abspath(annotations_json))
        images, ground_truths = load_coco_ground_truth(annotations_json)
        if limit is not None:
            limit = positive_int(limit, "the image limit")
            images, ground_truths = images[:limit], ground_truths[:limit]
        if not images:
            raise InputError("{} lists no images: nothing to evaluate".format(annotations_json))
        self.records = images
        self.ground_truths = ground_truths
        self.names = coco_class_names(annotations_json)
        self.category_ids = self._category_ids(annotations_json)
        self.paths = resolve_image_paths([im["file_name"] for im in images], self.images_dir, annotations_json,
                                         option)
        if not sum(len(labels) for _, labels in ground_truths):
            raise InputError("{} has no ground-truth boxes for its {} images: mAP cannot be computed; pass "
                             "annotations with boxes".format(annotations_json, len(images)))

    @staticmethod
    def _category_ids(path):
        with open(path, "r") as handle:
            return sorted(int(c["id"]) for c in json.load(handle)["categories"])

    def __len__(self):
        return len(self.records)

    def image(self, index):
        """Image ``index`` as BGR uint8; InputError when it is unreadable or not the size the json says."""
        image = read_image(self.paths[index])
        record = self.records[index]
        if image.shape[:2] != (record["height"], record["width"]):
            raise InputError("annotations do not match the images: {} is {}x{} but {} says {}x{} (w x h); pass "
                             "the images these annotations were made for".format(
                                 self.paths[index], image.shape[1], image.shape[0], self.annotations,
                                 record["width"], record["height"]))
        return image

    def label_map(self, model_names):
        """``model class index -> dataset label, or -1`` (list); InputError when they cannot be matched.

        Classes match by name when the model knows every category (its other classes map to -1 and their
        detections are dropped); a model whose names differ but whose count is the same is matched by index
        (a model exported without names); anything else cannot be scored against these annotations.
        """
        model_names = list(model_names)
        index = dict((name, i) for i, name in enumerate(self.names))
        if set(self.names) <= set(model_names) and len(set(model_names)) == len(model_names):
            return [index.get(name, -1) for name in model_names]
        if len(model_names) == len(self.names):
            return list(range(len(model_names)))
        raise InputError("the model's {} classes ({}) do not match the {} categories of {} ({}): mAP cannot be "
                         "computed; evaluate on annotations of the model's classes".format(
                             len(model_names), ", ".join(model_names[:6]), len(self.names), self.annotations,
                             ", ".join(self.names[:6])))


def _read_json(path, what):
    try:
        with open(path, "r") as f:
            return json.load(f)
    except (IOError, OSError) as exc:
        raise InputError("cannot read {} {}: {}".format(what, path, exc.strerror or exc))
    except ValueError as exc:
        raise InputError("{} {} is not valid JSON ({}): regenerate or fix the file".format(what, path, exc))


def load_coco_ground_truth(annotations_json):
    """Read COCO detection annotations: ``(images, ground_truths)``.

    ``images`` lists each image's ``{"id", "file_name", "width", "height"}`` in file order; ``ground_truths[i]``
    is ``(boxes float32 (K, 4) xyxy, labels int64 (K,))`` for ``images[i]``. Category ids map to zero-based
    labels in ascending id order (``coco_class_names`` gives the names in that order). Crowd annotations
    (``iscrowd=1``) are skipped.
    """
    coco = _read_json(annotations_json, "COCO annotations")
    try:
        index = {cat["id"]: i for i, cat in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
        images = [{"id": im["id"], "file_name": im["file_name"], "width": int(im["width"]),
                   "height": int(im["height"])} for im in coco["images"]]
        per_image = {im["id"]: ([], []) for im in images}
        for ann in coco.get("annotations", []):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            boxes, labels = per_image[ann["image_id"]]
            boxes.append((x, y, x + w, y + h))
            labels.append(index[ann["category_id"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("{} is not COCO detection json ({}: {}): it needs images, annotations with bbox and "
                         "categories".format(annotations_json, exc.__class__.__name__, exc))
    ground_truths = [(np.asarray(per_image[im["id"]][0], np.float32).reshape(-1, 4),
                      np.asarray(per_image[im["id"]][1], np.int64)) for im in images]
    return images, ground_truths


def coco_class_names(annotations_json):
    """Category names of a COCO json, in the zero-based label order ``load_coco_ground_truth`` uses."""
    coco = _read_json(annotations_json, "COCO annotations")
    try:
        return [cat["name"] for cat in sorted(coco["categories"], key=lambda c: c["id"])]
    except (KeyError, TypeError) as exc:
        raise InputError("{} has no valid categories list ({})".format(annotations_json, exc))


def load_video_ground_truth(gt_path):
    """Read a video ground-truth file (``edgecsp.data.shapes`` format): ``(header, ground_truths)``.

    ``gt_path`` is the ``<stem>.gt.jsonl`` file, or the video itself, whose ground truth is then looked up
    next to it. ``header`` holds at least ``names``, ``frames``, ``width``, ``height``, ``fps``;
    ``ground_truths[i]`` is ``(boxes float32 (K, 4) xyxy, labels int64 (K,))`` of frame ``i``.
    """
    if not gt_path.endswith(".jsonl"):
        gt_path = os.path.splitext(gt_path)[0] + ".gt.jsonl"  # the convention of data.shapes.video_gt_path
    try:
        with open(gt_path, "r") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
    except (IOError, OSError) as exc:
        raise InputError("cannot read video ground truth {}: {}".format(gt_path, exc.strerror or exc))
    try:
        header = json.loads(lines[0])
        if header.get("format") != "edgecsp-video-gt":
            raise ValueError("first line is not an edgecsp-video-gt header")
        frames = [json.loads(line) for line in lines[1:]]
        ground_truths = []
        for i, fr in enumerate(frames):
            if fr["frame"] != i:
                raise ValueError("line {} holds frame {}, expected {}".format(i + 2, fr["frame"], i))
            ground_truths.append((np.asarray(fr["boxes"], np.float32).reshape(-1, 4),
                                  np.asarray(fr["labels"], np.int64)))
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise InputError("{} is not a valid video ground-truth file ({}): regenerate it with "
                         "edgecsp.data.generate_video".format(gt_path, exc))
    if len(ground_truths) != header.get("frames", len(ground_truths)):
        raise InputError("{} has {} frame lines but its header says {}: the file is truncated, regenerate "
                         "it".format(gt_path, len(ground_truths), header["frames"]))
    return header, ground_truths

