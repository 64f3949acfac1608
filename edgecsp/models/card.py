"""Model cards: a JSON record next to shipped weights saying what the model is and how well it does.

A card names the registry model and its constructor arguments, the weights file (relative to the card), the
class names, input size, anchors, strides, decode form and letterbox, and the measured accuracy. ``edgecsp
export --card models/shapes_tiny_csp.json`` needs nothing else.
"""
import os
from typing import NamedTuple

from edgecsp._files import write_json_atomic
from edgecsp.errors import InputError
from edgecsp.runtime.schema import Field, confined_path, free_json, optional, read_file, read_record, text


class ModelCard(NamedTuple):
    path: str  # the card file itself
    name: str
    model: str  # registry name
    weights: str  # absolute path to the checkpoint
    kwargs: dict  # constructor arguments for create_model (names, width...)
    card: dict  # the whole JSON document


CARD_FIX = "a card is a JSON object with 'model' (a registry name) and 'weights' (a file next to the card)"
CARD_FIELDS = [
    Field("model", text(128), required=True),
    Field("weights", text(4096), required=True),
    Field("name", optional(text(256))),
    Field("kwargs", free_json(64), default={}),
]


def load_card(path):
    """Read a model card; the weights path is resolved relative to the card's folder and must stay inside it."""
    if not os.path.isfile(path):
        raise InputError("model card {} not found: pass a JSON card such as models/shapes_tiny_csp.json".format(path))
    doc = read_file(path, "model card", CARD_FIX, error=InputError)
    fields = read_record(doc, CARD_FIELDS, "model card " + path, CARD_FIX, error=InputError)
    if not all(isinstance(k, str) and k.isidentifier() for k in fields["kwargs"]):
        raise InputError("model card {}: field kwargs must map argument names to values: {}".format(path, CARD_FIX))
    weights = confined_path(os.path.dirname(os.path.abspath(path)), fields["weights"], "weights",
                            "keep the weights in the card's folder (or below it) and name them relative to it")
    return ModelCard(path, fields["name"] or fields["model"], fields["model"], weights, dict(fields["kwargs"]), doc)


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
              "Every training image is rendered by `edgecsp.data.shapes.render_sample`{} and letterboxed by the "
              "runtime's own `letterbox`, so training and inference see identical geometry.".format(
                  " at the source sizes (HxW) " + ", ".join("{}x{}".format(*s) for s in t["source_sizes"])
                  if t.get("source_sizes") else ""), ""]
    return "\n".join(lines)
