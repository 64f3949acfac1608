"""Host-side export: registry/darknet model -> ONNX with edgecsp metadata -> simplified -> verified."""
