"""Model cards: a JSON record next to shipped weights saying what the model is and how well it does.

A card names the registry model and its constructor arguments, the weights file (relative to the card), the
class names, input size, anchors, strides, decode form and letterbox, and the measured accuracy. ``edgecsp
export --card models/shapes_tiny_csp.json`` needs nothing else.
"""
import json
import os
from typing import NamedTuple

from edgecsp.errors import InputError


class ModelCard(NamedTuple):
    path: str  # the card file itself
    name: str
    model: str  # registry name
    weights: str  # absolute path to the checkpoint
    kwargs: dict  # constructor arguments for create_model (names, width...)
    card: dict  # the whole JSON document


def load_card(path):
    """Read a model card; the weights path is resolved relative to the card's folder."""
    if not os.path.isfile(path):
        raise InputError("model card {} not found: pass a JSON card such as models/shapes_tiny_csp.json".format(path))
    try:
        with open(path) as f:
            doc = json.load(f)
        model, weights = doc["model"], doc["weights"]
    except (ValueError, KeyError) as exc:
        raise InputError("{} is not a valid model card ({}): it needs JSON keys 'model' and 'weights'".format(
            path, exc))
    weights = os.path.join(os.path.dirname(os.path.abspath(path)), weights)
    return ModelCard(path, doc.get("name", model), model, weights, dict(doc.get("kwargs", {})), doc)


def write_card(path, doc):
    """Write a card atomically (temp file + rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
