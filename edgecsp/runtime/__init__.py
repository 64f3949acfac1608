"""The on-device runtime: numpy + OpenCV only, Python 3.6 compatible.

Nothing here imports torch, onnx, export, models or calibration: this subpackage is what ships to a Jetson.
"""
