"""Datasets for training and checking detectors: ``edgecsp.data.shapes`` (a deterministic synthetic one, numpy
1.17+ and OpenCV; host-only) and ``edgecsp.data.coco`` (COCO-annotated images and video ground truth; the device
build's calibration reads it). Import the submodule you need: this package imports neither, so the device half
does not load the host-only generator."""
