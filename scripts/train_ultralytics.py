#!/usr/bin/env python
"""Train YOLOv8n (or YOLO11n) with Ultralytics on edgecsp's shapes data, offline, and ship its ONNX and card.

    .venv/bin/python scripts/train_ultralytics.py                   # YOLOv8n: data, train, yolo val, export, card
    .venv/bin/python scripts/train_ultralytics.py --model yolo11n   # the same for YOLO11n
    .venv/bin/python scripts/train_ultralytics.py --stage compare   # edgecsp eval vs yolo val, FP32/FP16/INT8

Run it with edgecsp's .venv: it writes the data with `edgecsp.data.shapes` (training set seed 0, validation held
out: seed 1000, 300 images, as in the README) in COCO and YOLO layouts, then runs Ultralytics in the reference
venv of scripts/ultralytics_env.py (built on first use, offline: ULTRALYTICS_ENV) as a subprocess of this same
file (``--worker``): edgecsp never imports Ultralytics (AGPL-3.0), and Ultralytics never runs in .venv.

Stages (``--stage``; ``all`` runs them all, in this order):
* train: ``YOLO("<model>.yaml").train(...)`` from random init, CPU, seed 0, deterministic; validation only after
  the last epoch (``val=False``: Ultralytics still validates the final model).
* val: ``model.val()`` of the trained weights on the held-out set (Ultralytics' defaults: conf 0.001, IoU 0.7,
  300 detections, rect batches).
* export: ONNX opset 13, simplified, static 1x3xHxW, into models/shapes_<model>.onnx (and the weights,
  models/shapes_<model>.pt, which Ultralytics' own exports need).
* card: models/shapes_<model>.json + .md: a documentation record (not an `edgecsp export --card` card: that
  names a registry model; this model is imported with `edgecsp export --onnx`).
* compare (scripts/ultralytics_accuracy.py): `edgecsp eval` and `yolo val` on the ONNX and its FP32/FP16/INT8
  IRs; the table goes into the card.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(ROOT, ".cache", "ultralytics-runs")
MODELS = os.path.join(ROOT, "models")
VAL_SEED, VAL_COUNT = 1000, 300  # the README's held-out set
TRAIN_SEED = 0
STAGES = ("data", "train", "val", "export", "card", "compare")


# ------------------------------------------------------------------------------------- Ultralytics side (worker)


def _worker(job):
    """Runs in the reference venv: one Ultralytics call, its result as the last stdout line (JSON)."""
    import torch
    import ultralytics
    from ultralytics import YOLO

    op = job["op"]
    if op == "train" and job.get("resume"):  # an interrupted run goes on from its last.pt, same arguments
        model = YOLO(job["resume"])
        model.train(resume=True)
        result = {"seconds": _train_seconds(job["resume"]), "best": str(model.trainer.best), "resumed": True}
    elif op == "train":
        model = YOLO(job["model"] + ".yaml")  # random init: no weights are downloaded or loaded
        start = time.time()
        model.train(data=job["data"], epochs=job["epochs"], imgsz=job["imgsz"], batch=job["batch"], device="cpu",
                    workers=job["workers"], seed=TRAIN_SEED, deterministic=True, project=job["project"],
                    name=job["name"], exist_ok=True, plots=False, val=False, amp=False, pretrained=False,
                    close_mosaic=job["close_mosaic"])
        result = {"seconds": round(time.time() - start, 1), "best": str(model.trainer.best)}
    elif op == "val":
        model = YOLO(job["weights"], task="detect")
        metrics = model.val(data=job["data"], imgsz=job["imgsz"], batch=job.get("batch", 1), device="cpu",
                            plots=False, project=job["project"], name=job["name"], exist_ok=True,
                            **job.get("options", {}))
        result = {"map50": float(metrics.box.map50), "map50_95": float(metrics.box.map),
                  "per_class_ap50": [float(v) for v in metrics.box.ap50],
                  "speed_ms": {k: round(float(v), 2) for k, v in metrics.speed.items()}}
    elif op == "export":
        model = YOLO(job["weights"], task="detect")
        path = model.export(imgsz=job["imgsz"], device="cpu", batch=1, dynamic=False, **job["options"])
        result = {"path": str(path)}
    else:
        raise ValueError("unknown worker op " + op)
    result["versions"] = {"ultralytics": ultralytics.__version__, "torch": torch.__version__}
    if "result" not in job:  # a caller that reads the last stdout line
        print(json.dumps(result))
        return
    with open(job["result"] + ".tmp", "w") as handle:
        json.dump(result, handle)
    os.replace(job["result"] + ".tmp", job["result"])


def _train_seconds(last):
    """Training time of a run from its results.csv (the cumulative `time` column), resumed parts included."""
    import csv

    with open(os.path.join(os.path.dirname(os.path.dirname(last)), "results.csv")) as handle:
        rows = list(csv.DictReader(handle))
    total, previous = 0.0, 0.0
    for row in rows:  # a resumed run starts its clock again: add up each stretch
        now = float(row["time"])
        if now < previous:
            total += previous
        previous = now
    return round(total + previous, 1)


def run_worker(job, log):
    """Run one Ultralytics call in the reference venv; its JSON result."""
    sys.path.insert(0, HERE)
    from ultralytics_env import ensure_venv, ultralytics_environ

    python = ensure_venv(log=lambda line: print("ultralytics_env: pip install " + line, flush=True))
    job = dict(job, result=os.path.join(WORK, "worker-result.json"))
    if os.path.exists(job["result"]):
        os.remove(job["result"])
    with open(log, "a") as handle:  # Ultralytics' own output (progress, metrics) goes to the log
        code = subprocess.call([python, os.path.abspath(__file__), "--worker", json.dumps(job)],
                               env=ultralytics_environ(), stdout=handle, stderr=subprocess.STDOUT, cwd=WORK)
    if code != 0 or not os.path.isfile(job["result"]):
        raise SystemExit("Ultralytics {} failed (exit {}): see {}".format(job["op"], code, log))
    with open(job["result"]) as handle:
        return json.load(handle)


# ------------------------------------------------------------------------------------------ edgecsp side


def data_dirs(count):
    return (os.path.join(WORK, "data", "shapes-seed{}-{}".format(TRAIN_SEED, count)),
            os.path.join(WORK, "data", "shapes-seed{}-{}".format(VAL_SEED, VAL_COUNT)))


def write_data(count):
    """The training and held-out sets, COCO + YOLO layouts (kept when already complete)."""
    sys.path.insert(0, ROOT)
    from edgecsp.data.shapes import generate_dataset

    train_dir, val_dir = data_dirs(count)
    for folder, n, seed, val in ((val_dir, VAL_COUNT, VAL_SEED, None), (train_dir, count, TRAIN_SEED, val_dir)):
        if not os.path.isfile(os.path.join(folder, "annotations.json")):
            shutil.rmtree(folder, ignore_errors=True)
            generate_dataset(folder, n, seed, yolo=True, yolo_val=val)
            print("data: {} images of seed {} in {}".format(n, seed, folder), flush=True)
    return train_dir, val_dir


def _sha256(path):
    sys.path.insert(0, ROOT)
    from edgecsp._files import file_sha256

    return file_sha256(path)


def _card(args, names, stem, train, val, command):
    return {
        "name": stem,
        "kind": "documentation record of an imported model (not an `edgecsp export --card` card: no registry "
                "model); import the ONNX with `edgecsp export --onnx {}.onnx`".format(stem),
        "description": "Ultralytics {} trained from random init (its {}.yaml) on edgecsp's synthetic 'shapes' data; "
                       "exported by Ultralytics to ONNX".format(args.model.upper(), args.model),
        "onnx": stem + ".onnx", "onnx_sha256": _sha256(os.path.join(MODELS, stem + ".onnx")),
        "weights": stem + ".pt", "weights_sha256": _sha256(os.path.join(MODELS, stem + ".pt")),
        "classes": names, "input_size": [args.imgsz, args.imgsz],
        "export": {"format": "onnx", "opset": 13, "simplify": True, "dynamic": False, "batch": 1,
                   "layout": "anchor_free (1, 4+5, N): cx, cy, w, h, class scores; NMS in the runtime"},
        "data": {"generator": "edgecsp.data.shapes.generate_dataset (edgecsp data shapes --format yolo)",
                 "train_seed": TRAIN_SEED, "train_count": args.count, "val_seed": VAL_SEED, "val_count": VAL_COUNT,
                 "sizes": "varied: 320x320, 288x384, 384x288 (h x w)"},
        "metrics": {"map50": round(val["map50"], 4), "map50_95": round(val["map50_95"], 4),
                    "per_class_ap50": {n: round(v, 4) for n, v in zip(names, val["per_class_ap50"])},
                    "evaluator": "Ultralytics model.val() of the trained weights (PyTorch) on the held-out set: "
                                 "conf 0.001, IoU 0.7, max_det 300, rect batches of 1, imgsz {}".format(args.imgsz)},
        "training": {"model": args.model + ".yaml", "pretrained": False, "epochs": args.epochs, "imgsz": args.imgsz,
                     "batch": args.batch, "close_mosaic": args.close_mosaic, "seed": TRAIN_SEED,
                     "deterministic": True, "device": "cpu", "seconds": train["seconds"],
                     "cpu": "{} cores".format(os.cpu_count()), "versions": train["versions"],
                     "command": command, "note": train.get("note")},
    }


def card_markdown(doc):
    m, t, d = doc["metrics"], doc["training"], doc["data"]
    lines = ["# Model card: {}".format(doc["name"]), "", doc["description"] + ".", "",
             "A documentation record: `{}` is imported with `edgecsp export --onnx` (Ultralytics' metadata gives "
             "the names, letterbox and NMS rule); `edgecsp export --card` does not read it.".format(doc["onnx"]), "",
             "| | |", "|---|---|",
             "| ONNX | `{}` (sha256 `{}`), opset 13, static 1x3x{}x{}, anchor_free |".format(
                 doc["onnx"], doc["onnx_sha256"][:16], *doc["input_size"]),
             "| weights | `{}` (sha256 `{}`), for Ultralytics' own exports |".format(
                 doc["weights"], doc["weights_sha256"][:16]),
             "| classes | {} |".format(", ".join(doc["classes"])),
             "| data | train: {} images of seed {}; held out: {} images of seed {} ({}) |".format(
                 d["train_count"], d["train_seed"], d["val_count"], d["val_seed"], d["sizes"]),
             "", "## Measured accuracy (`yolo val`)", "",
             "mAP@0.5 **{:.4f}**, mAP@0.5:0.95 {:.4f}. {}.".format(m["map50"], m["map50_95"], m["evaluator"]), "",
             "| class | AP@0.5 |", "|---|---|"]
    lines += ["| {} | {:.4f} |".format(n, v) for n, v in m["per_class_ap50"].items()]
    lines += ["", "## Training", "", "`{}`".format(t["command"]), "",
              "{} epochs at imgsz {}, batch {} (mosaic off for the last {}), from random init, seed {}, on the CPU "
              "({}): {:.0f} s. Ultralytics {}, torch {}.".format(
                  t["epochs"], t["imgsz"], t["batch"], t["close_mosaic"], t["seed"], t["cpu"], t["seconds"],
                  t["versions"]["ultralytics"], t["versions"]["torch"]) + (
                  " The run was {}.".format(t["note"]) if t.get("note") else ""), ""]
    if "evaluators" in doc:
        e = doc["evaluators"]
        lines += ["## Two evaluators, one model", "", "`{}`: the held-out set, each artefact measured by "
                  "Ultralytics' `val` and by `edgecsp eval` (IRs built by `edgecsp build --target cpu`; INT8 "
                  "calibrated on 300 training images).".format(e["command"]), "",
                  "| " + " | ".join(e["columns"]) + " |", "|" + "---|" * len(e["columns"])]
        lines += ["| {} | {} | {} | {:.2f} | {:.2f} |".format(*row) for row in e["table"]]
        lines.append("")
    if "ci_check" in doc:
        c = doc["ci_check"]
        lines += ["CI (`tests/families/test_shapes_yolov8n.py`) holds `edgecsp eval` on the first {} held-out images "
                  "to mAP@0.5 {:.4f}, mAP@0.5:0.95 {:.4f}: `{}`.".format(c["images"], c["map50"], c["map50_95"],
                                                                        c["command"]), ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model", default="yolov8n", choices=("yolov8n", "yolo11n"))
    p.add_argument("--count", type=int, default=1000, help="training images (seed 0)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--close-mosaic", type=int, default=5, help="last epochs without mosaic")
    p.add_argument("--workers", type=int, default=2, help="dataloader workers")
    p.add_argument("--stage", default="all", choices=("all",) + STAGES)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(json.loads(args.worker))
    stages = STAGES if args.stage == "all" else (args.stage,)
    command = "python scripts/train_ultralytics.py " + " ".join(argv if argv is not None else sys.argv[1:])
    os.makedirs(WORK, exist_ok=True)
    stem = "shapes_" + args.model
    name = "{}-{}img-{}ep-{}px".format(args.model, args.count, args.epochs, args.imgsz)
    run_dir = os.path.join(WORK, name)
    log = os.path.join(WORK, name + ".log")
    record = os.path.join(WORK, name + ".json")
    state = json.load(open(record)) if os.path.isfile(record) else {}

    def save():  # after each stage: a later stage that fails keeps what the earlier ones measured
        with open(record + ".tmp", "w") as handle:
            json.dump(state, handle, indent=1)
        os.replace(record + ".tmp", record)

    train_dir, val_dir = write_data(args.count)
    weights = os.path.join(run_dir, "weights", "best.pt")
    if "train" in stages:
        print("train: {} ({} epochs, imgsz {}): log {}".format(args.model, args.epochs, args.imgsz, log), flush=True)
        last = os.path.join(run_dir, "weights", "last.pt")
        resume = last if os.path.isfile(last) and not os.path.isfile(weights + ".done") else None
        if resume:
            print("train: resuming the interrupted run from " + last, flush=True)
        state["train"] = run_worker({"op": "train", "model": args.model, "resume": resume,
                                     "data": os.path.join(train_dir, "data.yaml"),
                                     "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
                                     "workers": args.workers, "close_mosaic": args.close_mosaic, "project": WORK,
                                     "name": name}, log)
        if state["train"].get("resumed"):
            state["train"]["note"] = ("interrupted and resumed from its last.pt with the same arguments (Ultralytics "
                                      "resume=True); the time is all parts")
        state["command"] = command
        save()
        open(weights + ".done", "w").close()  # a later run with these arguments trains afresh only if removed
        print("train: {:.0f} s".format(state["train"]["seconds"]), flush=True)
    if "val" in stages:
        state["val"] = run_worker({"op": "val", "weights": weights, "data": os.path.join(val_dir, "data.yaml"),
                                   "imgsz": args.imgsz, "project": WORK, "name": name + "-val"}, log)
        save()
        print("yolo val: mAP@0.5 {map50:.4f}, mAP@0.5:0.95 {map50_95:.4f}".format(**state["val"]), flush=True)
    if "export" in stages:
        out = run_worker({"op": "export", "weights": weights, "imgsz": args.imgsz,
                          "options": {"format": "onnx", "opset": 13, "simplify": True}}, log)
        os.makedirs(MODELS, exist_ok=True)
        for src, dst in ((out["path"], stem + ".onnx"), (weights, stem + ".pt")):
            shutil.copyfile(src, os.path.join(MODELS, dst + ".tmp"))
            os.replace(os.path.join(MODELS, dst + ".tmp"), os.path.join(MODELS, dst))
        print("export: models/{0}.onnx, models/{0}.pt".format(stem), flush=True)
    if "card" in stages:
        sys.path.insert(0, ROOT)
        from edgecsp.data.shapes import SHAPE_CLASSES
        from edgecsp._files import write_text_atomic
        from edgecsp.models.card import write_card

        doc = _card(args, list(SHAPE_CLASSES), stem, state["train"], state["val"], state.get("command", command))
        write_card(os.path.join(MODELS, stem + ".json"), doc)
        write_text_atomic(os.path.join(MODELS, stem + ".md"), card_markdown(doc))
        print("card: models/{0}.json, models/{0}.md".format(stem), flush=True)
    if "compare" in stages:
        sys.path.insert(0, HERE)
        from ultralytics_accuracy import main as compare

        compare(["--model", args.model, "--count", str(args.count), "--imgsz", str(args.imgsz)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
