"""Import darknet models (``.cfg`` + ``.weights``) as PyTorch modules for edgecsp's export path.

``cfg`` parses the text with line numbers, ``graph`` checks every layer and computes its shape, ``weights``
reads and writes ``.weights`` files (numpy only) and ``model`` builds the PyTorch module (torch). Only what is
used is imported: reading or writing weights needs no torch.

    from edgecsp.darknet import load_darknet
    model = load_darknet("yolov4-tiny.cfg", "yolov4-tiny.weights", "coco.names")  # forward -> yolo_raw heads
"""
from edgecsp.darknet.cfg import DarknetCfg, parse_cfg, parse_cfg_text
from edgecsp.darknet.graph import NetworkPlan, plan_network
from edgecsp.darknet.weights import WeightsHeader, expected_floats, random_weights, read_weights, write_weights

__all__ = ["DarknetCfg", "NetworkPlan", "WeightsHeader", "build_model", "expected_floats", "load_darknet",
           "load_for_export", "parse_cfg", "parse_cfg_text", "plan_network", "random_weights", "read_weights",
           "write_weights"]


def load_darknet(cfg_path, weights_path, names_file=None, input_size=None):
    """The PyTorch model for a darknet cfg + weights (eval mode); see ``edgecsp.darknet.model``."""
    from edgecsp._lazy import require

    require("torch", "building darknet models")
    from edgecsp.darknet.model import load_darknet as _load

    return _load(cfg_path, weights_path, names_file, input_size)


def build_model(plan, params=None, names=None):
    """The PyTorch model for a planned network and its parameters (``random_weights``/``read_weights``)."""
    from edgecsp._lazy import require

    require("torch", "building darknet models")
    from edgecsp.darknet.model import build_model as _build

    return _build(plan, params, names)


def load_for_export(cfg_path, weights_path, names_file=None, input_size=None):
    """(model, name, source, sha256) for ``edgecsp export --darknet``."""
    from edgecsp._lazy import require

    require("torch", "exporting darknet models")
    from edgecsp.darknet.model import load_for_export as _load

    return _load(cfg_path, weights_path, names_file, input_size)
