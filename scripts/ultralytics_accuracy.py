#!/usr/bin/env python
"""Two evaluators, one model: `edgecsp eval` and Ultralytics' `val` on the same ONNX / OpenVINO IRs and images.

    .venv/bin/python scripts/ultralytics_accuracy.py      # after scripts/train_ultralytics.py (or its --stage compare)

On models/shapes_<model>.onnx and the held-out shapes set (seed 1000, 300 images):
* edgecsp: `edgecsp export --onnx`, then `edgecsp build --target cpu` FP32 / FP16 / INT8 (calibrated on 300 of the
  training images, seed 0), each with `--input float` so that Ultralytics can run the very same IR (edgecsp's
  default IR takes uint8 BGR frames; Ultralytics feeds float RGB), and the default uint8 IRs as well;
* `edgecsp eval` with COCO's settings (conf 0.001, IoU 0.6, 100 per image, the family's best-class NMS, COCO's AP)
  and with `--ultralytics` (conf 0.001, IoU 0.7 multi-label, 300 per image, Ultralytics' AP);
* Ultralytics `YOLO(path).val()` of the ONNX, of edgecsp's float-input IRs (a `*_openvino_model/` folder with the
  IR and the metadata.yaml of Ultralytics' own export: that is how Ultralytics finds an IR) and of Ultralytics' own
  `format="openvino"` exports of the same weights (FP32, `quantize=16`, `quantize=8` calibrated on the same 300
  training images).
Writes .cache/ultralytics-runs/accuracy-<model>.json, prints the table (markdown) and records it in the model card.
"""
import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from train_ultralytics import MODELS, WORK, card_markdown, run_worker, write_data  # noqa: E402

CALIB_COUNT = 300
CI_IMAGES = 50  # the first images of the held-out set, which tests/families/test_shapes_yolov8n.py regenerates


def edgecsp(argv, log):
    """One edgecsp command, in-process; prints it (the README quotes these)."""
    from edgecsp.cli import main

    line = "edgecsp " + " ".join(argv)
    print("$ " + line.replace(ROOT + "/", ""), flush=True)
    log.append(line)
    code = main(list(argv))
    if code != 0:
        raise SystemExit("{} exited {}".format(line, code))


def edgecsp_eval(artefact, val_dir, out, ultralytics, log, limit=None):
    report = out + (".ultralytics" if ultralytics else ".coco") + ("-{}".format(limit) if limit else "") + ".json"
    argv = ["eval", "--engine", artefact, "--data", os.path.join(val_dir, "annotations.json"), "--report", report,
            "--no-progress"] + (["--ultralytics"] if ultralytics else []) + (
                ["--limit", str(limit)] if limit else [])
    edgecsp(argv, log)
    with open(report) as handle:
        result = json.load(handle)["artefact"]
    return {"map50": result["map50"], "map50_95": result["map50_95"], "options": result["options"],
            "coco_library": {k: result["coco"][k] for k in ("map50", "map50_95")} if result.get("coco") else None}


def yolo_val(weights, val_dir, imgsz, log_path, name):
    out = run_worker({"op": "val", "weights": weights, "data": os.path.join(val_dir, "data.yaml"), "imgsz": imgsz,
                      "project": WORK, "name": name}, log_path)
    return {"map50": out["map50"], "map50_95": out["map50_95"]}


def plugin_precision_eval(xml, val_dir):
    """`edgecsp eval --ultralytics` of an IR run with the plugin's own choice of precision (Ultralytics' OpenVINO
    backend sets none; edgecsp runs an FP32 IR in f32): None where the CPU has no bf16 (the plugin picks f32)."""
    import openvino as ov
    from edgecsp.backends import open_runner
    from edgecsp.data.coco import CocoDataset
    from edgecsp.evaluation.artefact import ULTRALYTICS_AP, ULTRALYTICS_OPTIONS, evaluate_runner

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    dataset = CocoDataset(os.path.join(val_dir, "annotations.json"))
    with open_runner(xml, inference_precision="bf16") as runner:
        result = evaluate_runner(runner, dataset, ULTRALYTICS_OPTIONS, coco=False, progress=False,
                                 ap_method=ULTRALYTICS_AP)
    return {"map50": result["map50"], "map50_95": result["map50_95"], "options": result["options"]}


def as_ultralytics_ir(xml, metadata_yaml, folder):
    """A folder Ultralytics loads as an OpenVINO model: `<name>_openvino_model/` with the IR and metadata.yaml."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for path in (xml, xml[:-4] + ".bin"):
        os.link(path, os.path.join(folder, os.path.basename(path)))
    shutil.copyfile(metadata_yaml, os.path.join(folder, "metadata.yaml"))
    return folder


def points(value):
    return "{:.2f}".format(100.0 * value)


def table(rows):
    lines = ["| artefact | evaluator | settings | mAP@0.5 | mAP@0.5:0.95 |", "|---|---|---|---|---|"]
    for artefact, evaluator, settings, result in rows:
        lines.append("| {} | {} | {} | {} | {} |".format(artefact, evaluator, settings, points(result["map50"]),
                                                        points(result["map50_95"])))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="yolov8n")
    p.add_argument("--count", type=int, default=1000, help="training images (seed 0), as scripts/train_ultralytics.py")
    p.add_argument("--imgsz", type=int, default=256)
    args = p.parse_args(argv)
    stem = "shapes_" + args.model
    onnx_src, pt_src = (os.path.join(MODELS, stem + ext) for ext in (".onnx", ".pt"))
    for path in (onnx_src, pt_src):
        if not os.path.isfile(path):
            raise SystemExit("{} not found: run python scripts/train_ultralytics.py --model {} first".format(
                path, args.model))
    train_dir, val_dir = write_data(args.count)
    work = os.path.join(WORK, "accuracy-" + args.model)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log_path = os.path.join(WORK, "accuracy-{}.log".format(args.model))
    commands = []
    start = time.time()

    # edgecsp: import, then FP32 / FP16 / INT8 IRs, float input (for both evaluators) and uint8 input (its default)
    onnx = os.path.join(work, stem + ".onnx")
    edgecsp(["export", "--onnx", onnx_src, "-o", onnx], commands)
    calib = ["--calib", os.path.join(train_dir, "annotations.json"), "--count", str(CALIB_COUNT)]
    irs = {}
    for precision in ("fp32", "fp16", "int8"):
        for form in ("float", "uint8"):
            xml = os.path.join(work, "edgecsp-{}-{}".format(precision, form), "{}-cpu-{}.xml".format(stem, precision))
            os.makedirs(os.path.dirname(xml))
            edgecsp(["build", "--target", "cpu", "--precision", precision, "--input", form, onnx, "-o", xml] +
                    (calib if precision == "int8" else []), commands)
            irs[precision, form] = xml

    # Ultralytics' own OpenVINO exports of the same weights (from a copy: it writes next to the .pt)
    pt = os.path.join(work, stem + ".pt")
    shutil.copyfile(pt_src, pt)
    own = {}
    for precision, options in (("fp32", {}), ("fp16", {"quantize": 16}),
                               ("int8", {"quantize": 8, "data": os.path.join(train_dir, "data.yaml"),
                                         "split": "train", "fraction": CALIB_COUNT / float(args.count)})):
        out = run_worker({"op": "export", "weights": pt, "imgsz": args.imgsz,
                          "options": dict(format="openvino", **options)}, log_path)
        folder = os.path.join(work, "ultralytics-{}_openvino_model".format(precision))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(out["path"].rstrip("/"), folder)
        own[precision] = folder
        commands.append("yolo export model={} format=openvino imgsz={}{}".format(
            os.path.basename(pt), args.imgsz, "".join(" {}={}".format(k, os.path.basename(str(v)) if k == "data" else v)
                                                      for k, v in options.items())))
    metadata = os.path.join(own["fp32"], "metadata.yaml")

    rows, results = [], {}

    def add(artefact, evaluator, settings, result):
        rows.append((artefact, evaluator, settings, result))
        results.setdefault(artefact, {})["{} ({})".format(evaluator, settings)] = result
        print("{:40s} {:22s} {:28s} mAP@0.5 {}  mAP@0.5:0.95 {}".format(
            artefact, evaluator, settings, points(result["map50"]), points(result["map50_95"])), flush=True)

    add("ONNX (ONNX Runtime)", "yolo val", "its defaults",
        yolo_val(onnx_src, val_dir, args.imgsz, log_path, "val-onnx"))
    add("ONNX (ONNX Runtime)", "edgecsp eval", "--ultralytics",
        edgecsp_eval(onnx, val_dir, os.path.join(work, "onnx"), True, commands))
    add("ONNX (ONNX Runtime)", "edgecsp eval", "COCO (default)",
        edgecsp_eval(onnx, val_dir, os.path.join(work, "onnx"), False, commands))
    ci = edgecsp_eval(onnx, val_dir, os.path.join(work, "onnx"), False, commands, limit=CI_IMAGES)
    for precision in ("fp32", "fp16", "int8"):
        name = "edgecsp {} IR".format(precision.upper())
        folder = as_ultralytics_ir(irs[precision, "float"], metadata,
                                   os.path.join(work, "edgecsp-{}-float_openvino_model".format(precision)))
        add(name, "yolo val", "its defaults",
            yolo_val(folder, val_dir, args.imgsz, log_path, "val-edgecsp-" + precision))
        add(name, "edgecsp eval", "--ultralytics",
            edgecsp_eval(irs[precision, "float"], val_dir, irs[precision, "float"][:-4], True, commands))
        add(name, "edgecsp eval", "COCO (default)",
            edgecsp_eval(irs[precision, "float"], val_dir, irs[precision, "float"][:-4], False, commands))
        add(name + ", uint8 input (default)", "edgecsp eval", "--ultralytics",
            edgecsp_eval(irs[precision, "uint8"], val_dir, irs[precision, "uint8"][:-4], True, commands))
        if precision == "fp32":  # Ultralytics lets the plugin choose the precision: bf16 on CPUs with AMX
            result = plugin_precision_eval(irs[precision, "float"], val_dir)
            if result is not None:
                add(name + " run in bf16 (as Ultralytics runs it here)", "edgecsp eval", "--ultralytics", result)
    for precision in ("fp32", "fp16", "int8"):
        add("Ultralytics {} IR".format(precision.upper()), "yolo val", "its defaults",
            yolo_val(own[precision], val_dir, args.imgsz, log_path, "val-ultralytics-" + precision))

    record = {"model": stem, "val": {"seed": 1000, "count": 300, "dir": val_dir},
              "calibration": {"seed": 0, "count": CALIB_COUNT, "source": train_dir}, "results": results,
              "ci_check": dict(ci, images=CI_IMAGES, seed=1000), "commands": commands,
              "seconds": round(time.time() - start, 1)}
    with open(os.path.join(WORK, "accuracy-{}.json".format(args.model)), "w") as handle:
        json.dump(record, handle, indent=1)
    print(table(rows))

    card_path = os.path.join(MODELS, stem + ".json")
    if os.path.isfile(card_path):
        from edgecsp._files import write_text_atomic
        from edgecsp.models.card import write_card

        with open(card_path) as handle:
            doc = json.load(handle)
        doc["evaluators"] = {"table": [[a, e, s, round(100 * r["map50"], 2), round(100 * r["map50_95"], 2)]
                                       for a, e, s, r in rows],
                             "columns": ["artefact", "evaluator", "settings", "mAP@0.5", "mAP@0.5:0.95"],
                             "command": "python scripts/ultralytics_accuracy.py --model {}".format(args.model)}
        doc["ci_check"] = {"images": CI_IMAGES, "seed": 1000, "map50": round(ci["map50"], 6),
                           "map50_95": round(ci["map50_95"], 6),
                           "command": "edgecsp data shapes VAL --count {} --seed 1000; edgecsp export --onnx {}.onnx "
                                      "-o M.onnx; edgecsp eval --engine M.onnx --data VAL/annotations.json".format(
                                          CI_IMAGES, stem)}
        write_card(card_path, doc)
        write_text_atomic(os.path.join(MODELS, stem + ".md"), card_markdown(doc))
        print("card: {} and .md updated".format(card_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
