"""CSP model zoo in PyTorch: one file per family (cspnet.py, yolo.py), each registering named variants."""
from edgecsp.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
