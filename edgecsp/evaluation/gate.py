"""The validation metric an INT8 accuracy gate measures (``--max-drop``), handed to backends as a callback.

Backends never import evaluation: ``edgecsp.build`` attaches a :class:`DetectionValidation` to the
``AccuracyControl`` it passes down (``AccuracyControl.validator``), and the backend calls it with anything that
has ``meta`` and ``infer(batch)``. The numbers are those of the deployed pipeline (the runtime's ``detect``).
"""
import os

from edgecsp.data.coco import CocoDataset
from edgecsp.evaluation.artefact import predict, score
from edgecsp.evaluation.detection_map import evaluate_detections


class DetectionValidation(object):
    """mAP (``metric``: "map50" or "map50_95", a fraction) of a runner on a COCO validation set.

    The contract backends rely on: ``name``, ``len()``, ``check_classes(names)``, ``score(runner, indices=None)``
    and ``per_image(runner, indices)`` (the metric and one value per image, as NNCF's accuracy control wants).
    """

    def __init__(self, annotations, images=None, metric="map50"):
        self.dataset = CocoDataset(annotations, images, option="--images")
        self.metric = metric
        self.name = os.path.basename(str(annotations))

    def __len__(self):
        return len(self.dataset)

    def check_classes(self, model_names):
        """InputError now when the validation classes cannot be matched to the model's."""
        self.dataset.label_map(model_names)

    def score(self, runner, indices=None):
        # type: (object, object) -> float
        predictions, _ = predict(runner, self.dataset, indices=indices)
        return score(predictions, self.dataset, indices, coco=False)[self.metric]

    def per_image(self, runner, indices):
        """``(metric over indices, [metric of each image])``; an image without ground truth counts 1 when the
        runner found nothing there, else 0."""
        indices = list(indices)
        predictions, _ = predict(runner, self.dataset, indices=indices)
        metric = score(predictions, self.dataset, indices, coco=False)[self.metric]
        per_image = []
        for pred, index in zip(predictions, indices):
            value = evaluate_detections([pred], [self.dataset.ground_truths[index]],
                                        len(self.dataset.names))[self.metric]
            per_image.append(value if value == value else float(len(pred[1]) == 0))
        return metric, per_image


def validation_for(accuracy):
    """The DetectionValidation an ``AccuracyControl`` asks for."""
    return DetectionValidation(accuracy.data, accuracy.images, accuracy.metric)
