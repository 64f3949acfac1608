"""Datasets for training and checking detectors; ``shapes`` is a deterministic synthetic one (numpy + OpenCV)."""
from edgecsp.data.shapes import (SHAPE_CLASSES, dataset_sample, generate_dataset, generate_video, render_sample,
                                 video_gt_path)

__all__ = ["SHAPE_CLASSES", "dataset_sample", "generate_dataset", "generate_video", "render_sample", "video_gt_path"]
