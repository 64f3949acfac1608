#!/usr/bin/env python
"""Train the shipped demo detector (shapes_tiny_csp) on generated "shapes" data, on the CPU.

    python scripts/train_demo.py                 # defaults: ~15 min on 2 cores
    python scripts/train_demo.py --steps 200     # a quick smoke run

Writes models/<model>.pt (the EMA weights, a plain state_dict loadable with torch.load(weights_only=True)) and
models/<model>.json (the model card with the measured validation mAP).
"""
import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from edgecsp._files import atomic_output, write_text_atomic  # noqa: E402
from edgecsp.data.shapes import VARIED_SIZES  # noqa: E402
from edgecsp.export.metadata import meta_from_model  # noqa: E402
from edgecsp.models.card import card_markdown, write_card  # noqa: E402
from edgecsp.models import create_model  # noqa: E402
from edgecsp.training.trainer import SOURCE_SIZES, TrainConfig, evaluate_model, train  # noqa: E402


def held_out_set(seed, count):
    """The images the README evaluates on, as `edgecsp data shapes DIR --count N --seed S` writes them (JPEG, the
    generator's sizes): ``(image, boxes, labels)`` samples, so the card's mAP is the one users reproduce."""
    import tempfile

    from edgecsp.data.coco import CocoDataset
    from edgecsp.data.shapes import generate_dataset

    with tempfile.TemporaryDirectory() as folder:
        dataset = CocoDataset(generate_dataset(folder, count, seed))
        return [(dataset.image(i),) + tuple(dataset.ground_truths[i]) for i in range(len(dataset))]


def main(argv=None):
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in TrainConfig._fields:
        value = getattr(defaults, field)
        p.add_argument("--" + field.replace("_", "-"), type=type(value), default=value)
    p.add_argument("--eval-only", action="store_true", help="evaluate the saved weights and rewrite the card")
    p.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
    args = p.parse_args(argv)
    config = TrainConfig(**{f: getattr(args, f) for f in TrainConfig._fields})
    os.makedirs(args.out_dir, exist_ok=True)
    weights = os.path.join(args.out_dir, config.model + ".pt")
    if args.eval_only:
        model = create_model(config.model)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        seconds = 0.0
    else:
        print("training", config)
        model, seconds = train(config)
        with atomic_output(weights) as tmp:
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, tmp)
        print("saved", weights)
    with open(weights, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    meta = meta_from_model(model, config.model)
    metrics = evaluate_model(model, held_out_set(config.val_seed, config.val_count), meta)
    card = {
        "name": config.model,
        "model": config.model,
        "weights": os.path.basename(weights),
        "weights_sha256": digest,
        "kwargs": {},
        "description": "Tiny YOLOv4-style CSP detector (width 0.5, LeakyReLU, 2 heads) trained from scratch on the "
                       "synthetic 'shapes' data (edgecsp.data.shapes).",
        "classes": meta.names,
        "input_size": list(meta.input_size),
        "input": "RGB, float32 NCHW, pixel / 255",
        "letterbox": {"enabled": True, "pad_value": 114,
                      "rule": "scale = min(H/h0, W/w0), size rounded half up, padding split left/top = floor"},
        "heads": [dict(h._asdict(), anchors=[list(a) for a in h.anchors]) for h in meta.params.heads],
        "decode": "new_coords (xy = 2*sigmoid-0.5, wh = (2*sigmoid)^2 * anchor), in the runtime",
        "metrics": {
            "map50": round(float(metrics["map50"]), 4),
            "map50_95": round(float(metrics["map50_95"]), 4),
            "per_class_ap50": {meta.names[int(k)]: round(float(v), 4) for k, v in metrics["per_class"].items()},
            "validation": "`edgecsp data shapes DIR --count {} --seed {}` (training used seed {}): JPEG images of "
                          "the sizes (HxW) {}".format(config.val_count, config.val_seed, config.seed,
                                                ", ".join("{}x{}".format(*s) for s in VARIED_SIZES)),
            "pipeline": "PyTorch (EMA weights) + edgecsp.runtime letterbox/decode/NMS (conf 0.001, IoU 0.6) "
                        "+ edgecsp.evaluation 101-point COCO-style AP",
        },
        "training": dict(config._asdict(), seconds=round(seconds), torch=torch.__version__,
                         command="python scripts/train_demo.py " + " ".join(argv or sys.argv[1:])),
    }
    card_path = os.path.join(args.out_dir, config.model + ".json")
    if args.eval_only and os.path.exists(card_path):  # keep the record of the run that made the weights
        with open(card_path) as f:
            card["training"] = json.load(f).get("training", card["training"])
    card["training"].setdefault("source_sizes", [list(s) for s in SOURCE_SIZES])  # what train() renders
    write_card(card_path, card)
    write_text_atomic(os.path.join(args.out_dir, config.model + ".md"), card_markdown(card))
    print("mAP@0.5 {:.4f}  mAP@0.5:0.95 {:.4f}  ({:.0f} s) -> {}".format(
        metrics["map50"], metrics["map50_95"], seconds, weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
