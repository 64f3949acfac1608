"""A COCO-annotated image set on disk, checked against its images before anything is run on it.

Used by ``edgecsp eval``, by INT8 accuracy control (validation data) and, for its file list, by calibration.
Image paths are the json's ``file_name`` under ``images_dir`` (default: the json's folder), or their base
name there, so both ``--images DATASET`` and ``--images DATASET/images`` work. Python 3.6 compatible.
"""
import json
import os

from edgecsp.errors import InputError
from edgecsp.evaluation.detection_map import coco_class_names, load_coco_ground_truth
from edgecsp.runtime.sources import read_image


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
            if isinstance(limit, bool) or int(limit) < 1:
                raise InputError("the image limit must be a positive integer, got {!r}".format(limit))
            images, ground_truths = images[:int(limit)], ground_truths[:int(limit)]
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
