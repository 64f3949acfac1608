"""Model cards: a JSON record next to shipped weights saying what the model is and how well it does.

A card names the registry model and its constructor arguments, the weights file (relative to the card), the
class names, input size, anchors, strides, decode form and letterbox, and the measured accuracy. ``edgecsp
export --card models/shapes_tiny_csp.json`` needs nothing else.
"""
import json
import os
from typing import NamedTuple

from edgecsp._files import write_json_atomic
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
    """Write a card atomically (edgecsp._files: unique staged name, fsync, rename)."""
    write_json_atomic(path, doc, indent=2, sort_keys=False)


def card_markdown(doc):
    """The human-readable model card (models/<name>.md) rendered from the JSON card."""
    m = doc.get("metrics", {})
    t = doc.get("training", {})
    lines = [
        "# Model card: {}".format(doc["name"]),
        "",
        doc.get("description", ""),
        "",
        "| | |",
        "|---|---|",
        "| registry model | `{}` |".format(doc["model"]),
        "| weights | `{}` (sha256 `{}`) |".format(doc["weights"], doc.get("weights_sha256", "?")[:16]),
        "| classes | {} |".format(", ".join(doc.get("classes", []))),
        "| input | {}x{} (HxW), {} |".format(doc["input_size"][0], doc["input_size"][1], doc.get("input", "")),
        "| letterbox | pad value {}; {} |".format(doc["letterbox"]["pad_value"], doc["letterbox"]["rule"]),
        "| decode | {} |".format(doc.get("decode", "")),
        "",
        "## Heads",
        "",
        "| stride | anchors (w, h px) | scale_x_y | new_coords |",
        "|---|---|---|---|",
    ]
    for h in doc.get("heads", []):
        lines.append("| {} | {} | {} | {} |".format(h["stride"], ", ".join("{:g}x{:g}".format(*a) for a in h["anchors"]),
                                                    h["scale_x_y"], h["new_coords"]))
    lines += ["", "## Measured accuracy", "",
              "mAP@0.5 **{}**, mAP@0.5:0.95 {}".format(m.get("map50"), m.get("map50_95")), "",
              "Validation: {}.  ".format(m.get("validation", "")),
              "Pipeline: {}.".format(m.get("pipeline", "")), "",
              "| class | AP@0.5 |", "|---|---|"]
    for name, ap in m.get("per_class_ap50", {}).items():
        lines.append("| {} | {} |".format(name, ap))
    lines += ["", "## Training", "",
              "`{}` — {} steps of {} images, AdamW lr {}, seed {}, {} s on the CPU (torch {}).".format(
                  t.get("command", ""), t.get("steps"), t.get("batch"), t.get("lr"), t.get("seed"), t.get("seconds"),
                  t.get("torch")),
              "Every training image is rendered by `edgecsp.data.shapes.render_sample` and letterboxed by the "
              "runtime's own `letterbox`, so training and inference see identical geometry.", ""]
    return "\n".join(lines)
