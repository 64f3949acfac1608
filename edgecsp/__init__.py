"""edgecsp: take trained CSP detectors to the edge.

Importing this package needs only numpy; torch, onnx, onnxruntime, openvino, tensorrt and pycuda are imported
by the module that needs them, on first use (see ``edgecsp._lazy``).
"""
from edgecsp.errors import EdgeCSPError

__version__ = "0.1.0"
__all__ = ["EdgeCSPError", "__version__"]
