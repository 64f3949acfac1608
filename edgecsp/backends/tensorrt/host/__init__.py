"""The host half of the TensorRT backend: what prepares a device bundle and never runs on the device (the bundle
writer, the operator-matrix lint, graph fitting, the FP16 range check, histogram calibration, the trtexec line).
It needs onnx (and onnxruntime for the checks) on first use; the device half (the engine build from a bundle,
the runner, manifests, the calibrator) is the package above, which never imports this one at module level.
"""
