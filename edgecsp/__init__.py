"""edgecsp: take trained CSP detectors to the edge.

Importing this package needs only numpy; torch, onnx, onnxruntime, openvino, tensorrt and pycuda are imported
by the module that needs them, on first use (see ``edgecsp._lazy``).
"""
import logging

from edgecsp.errors import EdgeCSPError

# edgecsp's warnings (a skipped image, a short video) show whatever level a library gives the root logger
# (OpenVINO's converter sets it to ERROR): the package's own logger holds WARNING
logging.getLogger("edgecsp").setLevel(logging.WARNING)

__version__ = "0.1.0"
__all__ = ["EdgeCSPError", "__version__"]
