"""Accuracy evaluation in numpy: COCO-style detection mAP and ground-truth loaders."""
from edgecsp.evaluation.detection_map import (COCO_IOU_THRESHOLDS, average_precision, box_iou, coco_class_names,
                                              evaluate_detections, load_coco_ground_truth,
                                              load_video_ground_truth)

__all__ = ["COCO_IOU_THRESHOLDS", "average_precision", "box_iou", "coco_class_names", "evaluate_detections",
           "load_coco_ground_truth", "load_video_ground_truth"]
