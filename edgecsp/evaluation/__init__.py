"""Accuracy evaluation: COCO-style detection mAP in numpy, the COCO library check, artefact evaluation and
comparison (``edgecsp eval`` / ``edgecsp compare``)."""
from edgecsp.evaluation.artefact import EvalConfig, evaluate, evaluate_artefact
from edgecsp.evaluation.compare import CompareResult, compare_artefacts
from edgecsp.data.coco import CocoDataset, coco_class_names, load_coco_ground_truth, load_video_ground_truth
from edgecsp.evaluation.detection_map import COCO_IOU_THRESHOLDS, average_precision, box_iou, evaluate_detections

__all__ = ["COCO_IOU_THRESHOLDS", "CocoDataset", "CompareResult", "EvalConfig", "average_precision", "box_iou",
           "coco_class_names", "compare_artefacts", "evaluate", "evaluate_artefact", "evaluate_detections",
           "load_coco_ground_truth", "load_video_ground_truth"]
