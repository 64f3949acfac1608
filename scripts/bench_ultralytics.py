"""`edgecsp infer` against Ultralytics' own predictor: end to end, same model, same video, same thresholds.

    python scripts/bench_ultralytics.py                  # models/shapes_yolov8n.pt at 320 and 640, 3 rounds
    python scripts/bench_ultralytics.py --quick          # 1 round, 100 frames
    python scripts/bench_ultralytics.py --json out.json --md out.md

For each input size, from the same trained weights (``--pt``):

* **Ultralytics**: ``YOLO(<stem>_openvino_model).predict(source=video, stream=True, imgsz=S, conf=0.25, iou=0.7,
  max_det=300, verbose=False)`` on its own ``export(format="openvino", imgsz=S)`` (FP32) and ``export(...,
  int8=True, data=calib.yaml)`` (NNCF), run by the reference venv's python (``scripts/ultralytics_env.py``,
  offline); every result's boxes are taken out as numpy arrays.
* **edgecsp**: ``edgecsp infer --engine IR video --save-json d.jsonl`` (``edgecsp.infer.infer``, the library call the
  CLI makes: pipelined, 3 requests in flight) on ``edgecsp build --target cpu`` of ``edgecsp export --onnx`` of
  Ultralytics' ``export(format="onnx", imgsz=S)``; INT8 with ``--calib`` on the same 300 shapes images Ultralytics
  calibrates on (``edgecsp data shapes --seed 0``, also written as the YOLO txt dataset its exporter reads).

Every run is a fresh process; edgecsp and Ultralytics alternate run by run (which of the two goes first flips
every round), and each fps is the median over the rounds. Both sides time the same span: the model is loaded,
compiled and warmed up first (Ultralytics: one predict on the video's first frame), then from the start of the
video to the last frame's detections; fps = frames / span. edgecsp writes its JSON lines inside that span,
Ultralytics keeps its boxes in memory.

**Execution precision.** On CPUs with bf16 units (AMX, AVX512-BF16) OpenVINO runs an f32 IR in bf16 unless it is
told otherwise. edgecsp pins its FP32 builds to f32; Ultralytics sets nothing (it pins f32 only on Windows, with
``core.set_property("CPU", {"INFERENCE_PRECISION_HINT": f32})``). So the FP32 row runs Ultralytics' predictor with
that same line applied in its process (its code untouched otherwise), and, where the plugin's default is not f32,
a "float, plugin default" row compares Ultralytics' FP32 IR as it runs by default with edgecsp's FP16 IR (which the
plugin runs in the same type). INT8 rows: each tool's own INT8 IR (NNCF; Ultralytics' MIXED preset with its head
kept float, edgecsp's PERFORMANCE preset with the head convolutions kept float), the float parts at the plugin's
choice on both sides.

Detections are compared frame by frame (counts, and boxes matched at IoU >= 0.5 of the same class) and against the
video's ground truth. Ultralytics (AGPL-3.0) is never imported here: it runs only in the reference venv's children
(``--child-export``, ``--child-predict``), which import nothing but the standard library from this file.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PT = os.path.join(ROOT, "models", "shapes_yolov8n.pt")
DEFAULT_WORK = os.path.join(ROOT, "engines", "bench", "ultralytics")
CONF, IOU, MAX_DET = 0.25, 0.7, 300  # Ultralytics' predict defaults; edgecsp gets the same
GOALS = {320: 1.5, 640: 1.2}  # issue 18: edgecsp fps / predictor fps, FP32 and INT8
CALIB_COUNT, CALIB_SEED = 300, 0
VIDEO_FRAMES, VIDEO_SIZE, VIDEO_SEED = 300, "360x640", 7  # benchmarks.py's clip.mp4
MATCH_IOU = 0.5
NETWORK_SECONDS = 6  # each network-alone measurement
_MARK = "BENCH-ULTRALYTICS "
# (key, label, edgecsp build precision, Ultralytics export, pin Ultralytics' CPU plugin to f32)
PRECISIONS = (("fp32", "FP32", "fp32", "fp32", True),
              ("float", "float, plugin default", "fp16", "fp32", False),
              ("int8", "INT8", "int8", "int8", False))


# -- children: what runs in a fresh process ----------------------------------------------------------------------
def child_export(job):
    """(reference venv) Ultralytics' ONNX, OpenVINO FP32 and INT8 exports of ``job["pt"]`` at ``job["size"]``."""
    from ultralytics import YOLO

    out = {}
    for key, kwargs in (("onnx", dict(format="onnx")), ("openvino", dict(format="openvino")),
                        ("openvino_int8", dict(format="openvino", int8=True, data=job["data"]))):
        out[key] = str(YOLO(job["pt"]).export(imgsz=job["size"], **kwargs))
    return out


def _pin_f32():
    """The line Ultralytics runs on Windows, applied here to every ov.Core its predictor makes."""
    import openvino as ov

    class Core(ov.Core):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.set_property("CPU", {"INFERENCE_PRECISION_HINT": ov.Type.f32})

    ov.Core = Core


def _compiled_precision(model):
    backend = getattr(model.predictor.model, "backend", model.predictor.model)
    compiled = getattr(backend, "ov_compiled_model", None)
    return None if compiled is None else compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def child_predict(job):
    """(reference venv) Ultralytics' predictor over the video: fps over the timed span and every frame's boxes."""
    if job["pin_f32"]:
        _pin_f32()
    import cv2
    import openvino
    import torch
    import ultralytics
    from ultralytics import YOLO

    capture = cv2.VideoCapture(job["video"])
    ok, first = capture.read()
    capture.release()
    if not ok:
        raise SystemExit("cannot read " + job["video"])
    model = YOLO(job["model"], task="detect")
    options = dict(imgsz=job["size"], conf=job["conf"], iou=job["iou"], max_det=job["max_det"], verbose=False)
    list(model.predict(source=first, **options))  # loads, compiles and warms up the predictor
    frames, speeds = [], []
    start, cpu = time.perf_counter(), time.process_time()
    for result in model.predict(source=job["video"], stream=True, **options):
        frames.append(result.boxes.data.cpu().numpy())
        speeds.append(result.speed)
        if len(frames) >= job["frames"]:
            break
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    names = model.predictor.model.names
    rows = [[[float(v) for v in r[:5]] + [names[int(r[5])]] for r in boxes.tolist()] for boxes in frames]
    speed = dict((k, sum(s[k] for s in speeds) / len(speeds)) for k in speeds[0])  # its profile, ms per frame
    return OrderedDict([("fps", len(frames) / seconds), ("frames", len(frames)), ("seconds", seconds),
                        ("ms_per_frame", dict(speed)), ("process_cpu_ms_per_frame", 1000.0 * cpu / len(frames)),
                        ("executed", _compiled_precision(model)), ("rows", rows),
                        ("versions", "ultralytics {}, torch {}, openvino {}".format(
                            ultralytics.__version__, torch.__version__.split("+")[0],
                            openvino.__version__.split("-")[0]))])


def child_infer(job):
    """(edgecsp's venv) ``edgecsp infer --engine ... --save-json ...`` through its library call; fps and every frame's
    boxes read back from the JSON lines."""
    sys.path.insert(0, ROOT)
    from edgecsp.backends.openvino.runner import OpenVINORunner
    from edgecsp.infer import InferConfig, infer

    executed = []
    activate = OpenVINORunner._activate

    def reading_precision(runner):  # only reads what the runner compiled
        activate(runner)
        executed.append(runner._request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT"))

    OpenVINORunner._activate = reading_precision
    result = infer(InferConfig(engine=job["engine"], source=job["video"], conf=job["conf"], iou=job["iou"],
                               max_det=job["max_det"], json=job["json"], max_frames=job["frames"], progress=False))
    s = result.summary
    with open(job["json"]) as lines:
        rows = [[d["box"] + [d["score"], d["name"]] for d in json.loads(line)["detections"]] for line in lines]
    os.remove(job["json"])
    return OrderedDict([("fps", s["fps"]), ("frames", result.frames), ("seconds", s["seconds"]),
                        ("ms_per_frame", s["ms_per_frame"]), ("cpu_ms_per_frame", s["cpu_ms_per_frame"]),
                        ("process_cpu_ms_per_frame", s.get("process_cpu_ms_per_frame")),
                        ("executed", executed[0].get_type_name() if executed else None), ("rows", rows)])


def child_network(job):
    """(edgecsp's venv) The network alone: edgecsp's runner as `infer` opens it (3 requests in flight), the first
    video frame preprocessed once and submitted over and over for ``job["seconds"]``: the fps no end-to-end run
    of that IR on this machine can beat."""
    sys.path.insert(0, ROOT)
    import cv2
    from edgecsp.backends import open_runner
    from edgecsp.infer import DEFAULT_IN_FLIGHT
    from edgecsp.runtime.preprocess import preprocess

    capture = cv2.VideoCapture(job["video"])
    ok, frame = capture.read()
    capture.release()
    runner = open_runner(job["engine"])
    runner.set_in_flight(DEFAULT_IN_FLIGHT)
    with runner:
        batch = preprocess([frame], runner.meta)[0]
        pending = [runner.submit(batch) for _ in range(DEFAULT_IN_FLIGHT * 4)]  # warm-up
        for handle in pending:
            handle.result()
        pending, count = [], 0
        start = time.perf_counter()
        while time.perf_counter() - start < job["seconds"]:
            pending.append(runner.submit(batch))
            count += 1
            if len(pending) >= DEFAULT_IN_FLIGHT:
                pending.pop(0).result()
        for handle in pending:
            handle.result()
        seconds = time.perf_counter() - start
    return OrderedDict([("fps", count / seconds), ("frames", count), ("in_flight", DEFAULT_IN_FLIGHT)])


CHILDREN = {"--child-export": child_export, "--child-predict": child_predict, "--child-infer": child_infer,
            "--child-network": child_network}


def run_child(python, flag, job, env=None, timeout=1800):
    """Run this file as ``flag`` in a fresh ``python``; the record it prints."""
    done = subprocess.run([python, os.path.abspath(__file__), flag, json.dumps(job)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, cwd=job.get("cwd"), timeout=timeout,
                          universal_newlines=True)
    lines = [line[len(_MARK):] for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode or not lines:
        raise RuntimeError("{} {} failed (exit {}):\n{}".format(flag, job.get("model") or job.get("engine") or
                                                                job.get("pt"), done.returncode, done.stdout[-4000:]))
    return json.loads(lines[-1])


# -- the parent: prepare, alternate, compare ----------------------------------------------------------------------
def _edgecsp(*args):
    subprocess.run([sys.executable, "-m", "edgecsp"] + [str(a) for a in args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def _sha256(path):
    sys.path.insert(0, ROOT)
    from edgecsp._files import file_sha256

    return file_sha256(path)


def skip_reason(pt, python):
    """Why the comparison cannot run here (None when it can)."""
    if python is None:
        return ("the Ultralytics reference venv (.cache/ultralytics-venv) is absent: `python "
                "scripts/ultralytics_env.py` builds it (about 2 min, 6.5 GB)")
    if not os.path.isfile(pt):
        return "the trained model {} is absent: train it first (scripts/train_ultralytics.py)".format(
            os.path.relpath(pt, ROOT))
    return None


def calibration_set(work, names):
    """300 shapes images (seed 0) as edgecsp writes them, with the YOLO txt labels and data.yaml Ultralytics'
    INT8 export reads (``edgecsp data shapes --format yolo``); returns (images folder, yaml path)."""
    sys.path.insert(0, ROOT)
    from edgecsp.data.shapes import SHAPE_CLASSES

    if list(names) != list(SHAPE_CLASSES):
        raise SystemExit("the model's classes {} are not the shapes classes {}: calibrate it on its own data".format(
            names, list(SHAPE_CLASSES)))
    folder = os.path.join(work, "calib")
    yaml_path = os.path.join(folder, "data.yaml")
    if not os.path.isfile(os.path.join(folder, "annotations.json")) or not os.path.isfile(yaml_path):
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        _edgecsp("data", "shapes", folder, "--count", CALIB_COUNT, "--seed", CALIB_SEED, "--format", "yolo")
    return os.path.join(folder, "images"), yaml_path


def model_names(pt, python, env):
    code = "import sys, json; from ultralytics import YOLO; print(json.dumps(list(YOLO(sys.argv[1]).names.values())))"
    out = subprocess.run([python, "-c", code, pt], stdout=subprocess.PIPE, env=env, check=True,
                         universal_newlines=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def prepare(pt, work, sizes, python, env, log):
    """Every export and build, once per source model (a changed .pt rebuilds them); {size: {side/precision: path}}."""
    names = model_names(pt, python, env)
    images, yaml_path = calibration_set(work, names)
    digest = _sha256(pt)
    artefacts = {}
    for size in sizes:
        folder = os.path.join(work, str(size))
        stamp = os.path.join(folder, "source.json")
        record = None
        if os.path.isfile(stamp):
            with open(stamp) as handle:
                record = json.load(handle)
        if record is None or record.get("sha256") != digest:
            log("prepare {}: Ultralytics exports (ONNX, OpenVINO FP32, INT8 on {} images)".format(size, CALIB_COUNT))
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            local = os.path.join(folder, os.path.basename(pt))
            shutil.copyfile(pt, local)  # Ultralytics writes its exports next to the .pt
            exports = run_child(python, "--child-export", {"pt": local, "size": size, "data": yaml_path,
                                                            "cwd": folder}, env=env)
            onnx = os.path.join(folder, "edgecsp.onnx")
            log("prepare {}: edgecsp export --onnx, build fp32 / fp16 / int8".format(size))
            _edgecsp("export", "--onnx", exports["onnx"], "-o", onnx)
            for precision in ("fp32", "fp16", "int8"):
                calib = ["--calib", images, "--count", CALIB_COUNT] if precision == "int8" else []
                _edgecsp("build", "--target", "cpu", "--precision", precision, onnx, "-o",
                         os.path.join(folder, "edgecsp-{}.xml".format(precision)), *calib)
            record = {"sha256": digest, "pt": pt, "exports": exports}
            with open(stamp + ".tmp", "w") as handle:
                json.dump(record, handle, indent=1)
            os.replace(stamp + ".tmp", stamp)
        artefacts[size] = dict([("edgecsp-" + p, os.path.join(folder, "edgecsp-{}.xml".format(p)))
                                for p in ("fp32", "fp16", "int8")] +
                               [("ultralytics-fp32", record["exports"]["openvino"]),
                                ("ultralytics-int8", record["exports"]["openvino_int8"])])
    return artefacts, names


def plugin_default_precision():
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def measure(artefacts, video, frames, rounds, python, env, work, log, precisions):
    """Every (size, precision) pair, edgecsp and Ultralytics alternating, over ``rounds``; raw records."""
    runs = OrderedDict()
    for r in range(rounds):
        for size, paths in artefacts.items():
            for key, _, build, export, pin in precisions:
                sides = [("edgecsp", sys.executable, "--child-infer", None,
                          {"engine": paths["edgecsp-" + build], "json": os.path.join(work, "run.jsonl")}),
                         ("ultralytics", python, "--child-predict", env,
                          {"model": paths["ultralytics-" + export], "size": size, "pin_f32": pin})]
                for side, exe, flag, child_env, job in (sides if r % 2 == 0 else sides[::-1]):
                    job.update(video=video, frames=frames, conf=CONF, iou=IOU, max_det=MAX_DET)
                    load = os.getloadavg()[0]
                    record = run_child(exe, flag, job, env=child_env)
                    record["load_1min"] = [load, os.getloadavg()[0]]
                    runs.setdefault((size, key, side), []).append(record)
                    log("round {}/{} {} {} {}: {:.1f} fps, {} detections (load {:.2f})".format(
                        r + 1, rounds, size, key, side, record["fps"], sum(len(f) for f in record["rows"]), load))
                # the ceiling: edgecsp's IR alone, as infer runs it, on one preprocessed frame (no video, no NMS)
                record = run_child(sys.executable, "--child-network", {"engine": paths["edgecsp-" + build],
                                                                        "video": video, "seconds": NETWORK_SECONDS})
                runs.setdefault((size, key, "network"), []).append(record)
                log("round {}/{} {} {} network alone: {:.1f} fps".format(r + 1, rounds, size, key, record["fps"]))
    return runs


def _detections(rows, ids):
    """[x1, y1, x2, y2, score, name] rows as the arrays edgecsp's matching takes (class names -> ``ids``)."""
    import numpy as np

    from edgecsp.runtime.nms import Detections

    return Detections(np.array([r[:4] for r in rows], np.float64).reshape(-1, 4),
                      np.array([r[4] for r in rows], np.float64), np.array([ids[r[-1]] for r in rows], np.int64))


def match(rows_a, rows_b):
    """One-to-one matches of two frames' [x1, y1, x2, y2, score, name] rows by edgecsp compare's rule (same name,
    IoU >= 0.5, best score first: ``edgecsp.evaluation.compare.match_detections``): [(i, j, iou)]."""
    sys.path.insert(0, ROOT)
    from edgecsp.evaluation.compare import match_detections
    from edgecsp.evaluation.detection_map import box_iou

    if not rows_a or not rows_b:
        return []
    ids = dict((name, i) for i, name in enumerate(sorted(set(r[-1] for r in rows_a + rows_b))))
    a, b = _detections(rows_a, ids), _detections(rows_b, ids)
    ious = box_iou(a.boxes, b.boxes)
    return [(i, j, float(ious[i, j])) for i, j in match_detections(a, b, MATCH_IOU)]


def compare(ours, theirs):
    """Frame-by-frame agreement of two runs' detections."""
    frames = min(len(ours), len(theirs))
    matched, box_diff, score_diff, differing = 0, 0.0, 0.0, []
    for f in range(frames):
        pairs = match(ours[f], theirs[f])
        matched += len(pairs)
        for i, j, _ in pairs:
            box_diff = max(box_diff, max(abs(x - y) for x, y in zip(ours[f][i][:4], theirs[f][j][:4])))
            score_diff = max(score_diff, abs(ours[f][i][4] - theirs[f][j][4]))
        if len(ours[f]) != len(theirs[f]):
            differing.append([f, len(ours[f]), len(theirs[f])])
    return OrderedDict([("frames", frames), ("edgecsp", sum(len(x) for x in ours[:frames])),
                        ("ultralytics", sum(len(x) for x in theirs[:frames])),
                        ("frames_same_count", frames - len(differing)), ("matched", matched),
                        ("max_box_diff_px", box_diff), ("max_score_diff", score_diff),
                        ("differing_frames", differing[:20])])


def against_truth(rows, video):
    """Precision and recall at IoU 0.5 (class by name) against the video's ground truth, or None."""
    sys.path.insert(0, ROOT)
    from edgecsp.data.coco import load_video_ground_truth
    from edgecsp.data.shapes import SHAPE_CLASSES
    from edgecsp.errors import InputError

    try:
        _, truth = load_video_ground_truth(video)
    except InputError:
        return None
    found = hits = total = 0
    for frame, (boxes, labels) in zip(rows, truth):
        gt = [list(map(float, b)) + [0.0, SHAPE_CLASSES[int(l)]] for b, l in zip(boxes, labels)]
        hits += len(match(frame, gt))
        found += len(frame)
        total += len(gt)
    return OrderedDict([("precision", hits / float(found) if found else None),
                        ("recall", hits / float(total) if total else None), ("objects", total)])


def summarise(runs, precisions, video):
    import numpy as np

    rows = []
    for size in sorted(set(k[0] for k in runs)):
        for key, label, build, export, pin in precisions:
            ours, theirs = runs.get((size, key, "edgecsp")), runs.get((size, key, "ultralytics"))
            if not ours or not theirs:
                continue
            fps_e = float(np.median([r["fps"] for r in ours]))
            fps_u = float(np.median([r["fps"] for r in theirs]))
            ratios = [a["fps"] / b["fps"] for a, b in zip(ours, theirs)]
            network = [r["fps"] for r in runs.get((size, key, "network"), [])]
            fps_n = float(np.median(network)) if network else None
            stable = all(r["rows"] == ours[0]["rows"] for r in ours) and all(
                r["rows"] == theirs[0]["rows"] for r in theirs)
            rows.append(OrderedDict([
                ("size", size), ("precision", key), ("label", label), ("edgecsp_artefact", build),
                ("ultralytics_export", export), ("ultralytics_pinned_f32", pin),
                ("edgecsp_executed", ours[0].get("executed")), ("ultralytics_executed", theirs[0].get("executed")),
                ("edgecsp_fps", fps_e), ("ultralytics_fps", fps_u), ("ratio", fps_e / fps_u),
                ("ratio_per_round", ratios), ("goal", GOALS.get(size) if key != "float" else None),
                ("network_fps", fps_n), ("network_fps_per_round", network),
                ("ceiling_ratio", None if fps_n is None else fps_n / fps_u),
                ("share_of_network", None if fps_n is None else fps_e / fps_n),
                ("edgecsp_fps_per_round", [r["fps"] for r in ours]),
                ("ultralytics_fps_per_round", [r["fps"] for r in theirs]),
                ("edgecsp_ms_per_frame", ours[0]["ms_per_frame"]),
                ("edgecsp_cpu_ms_per_frame", ours[0].get("cpu_ms_per_frame")),
                ("ultralytics_ms_per_frame", theirs[0]["ms_per_frame"]),
                ("process_cpu_ms_per_frame", OrderedDict(
                    (side, float(np.median([r["process_cpu_ms_per_frame"] for r in records])))
                    for side, records in (("edgecsp", ours), ("ultralytics", theirs)))),
                ("detections", compare(ours[0]["rows"], theirs[0]["rows"])),
                ("same_detections_every_round", stable),
                ("truth", OrderedDict([("edgecsp", against_truth(ours[0]["rows"], video)),
                                       ("ultralytics", against_truth(theirs[0]["rows"], video))])),
                ("load_1min", [r["load_1min"] for r in ours + theirs]),
                ("versions", theirs[0].get("versions"))]))
    return rows


def run(pt=DEFAULT_PT, work=DEFAULT_WORK, video=None, sizes=(320, 640), frames=VIDEO_FRAMES, rounds=3, log=print):
    """The whole comparison; a dict with ``skipped`` (the reason) or the measured rows, machine and load."""
    sys.path.insert(0, SCRIPTS)
    from ultralytics_env import ultralytics_environ, ultralytics_python

    sys.path.insert(0, ROOT)
    from edgecsp.bench import machine_info

    pt = os.path.abspath(pt)
    python = ultralytics_python()
    reason = skip_reason(pt, python)
    if reason:
        return OrderedDict([("skipped", reason)])
    started, load_start = time.time(), list(os.getloadavg())
    env = ultralytics_environ()
    os.makedirs(work, exist_ok=True)
    if video is None:
        video = os.path.join(work, "clip.mp4")
        if not os.path.isfile(video):
            _edgecsp("data", "video", video, "--frames", VIDEO_FRAMES, "--size", VIDEO_SIZE, "--seed", VIDEO_SEED)
    artefacts, names = prepare(pt, work, sizes, python, env, log)
    default = plugin_default_precision()
    precisions = [p for p in PRECISIONS if p[0] != "float" or default != "f32"]
    load_measure = list(os.getloadavg())
    runs = measure(artefacts, video, frames, rounds, python, env, work, log, precisions)
    return OrderedDict([("pt", os.path.relpath(pt, ROOT)), ("pt_sha256", _sha256(pt)), ("names", names),
                        ("video", os.path.relpath(video, ROOT)), ("frames", frames), ("rounds", rounds),
                        ("thresholds", {"conf": CONF, "iou": IOU, "max_det": MAX_DET}),
                        ("plugin_default_precision", default), ("machine", machine_info()),
                        ("load_start", load_start), ("load_measure_start", load_measure),
                        ("load_end", list(os.getloadavg())), ("minutes", (time.time() - started) / 60.0),
                        ("date", time.strftime("%Y-%m-%d %H:%M")), ("rows", summarise(runs, precisions, video))])


def markdown(report):
    """The "vs Ultralytics" section of docs/benchmarks.md."""
    out = ["## vs Ultralytics: `edgecsp infer` against Ultralytics' own predictor, same model and video", ""]
    if report.get("skipped"):
        return "\n".join(out + ["Skipped: {}.".format(report["skipped"]), ""])
    m = report["machine"]
    out += ["Model {} (sha256 {}), video {} ({} frames), conf {conf}, IoU {iou}, max_det {max_det}, each side's "
            "own rule (best class per box). Measured by `python scripts/bench_ultralytics.py` on **{}** ({}), {} "
            "cores, {}; {}. {} rounds, every run a fresh process, edgecsp and Ultralytics alternating; fps is the "
            "median over the rounds, from the first frame read to the last frame's detections (model loaded, "
            "compiled and warmed up before). Load average (1 min) {:.2f} at the start of the measurements, {:.2f} at "
            "the end.".format(report["pt"], report["pt_sha256"][:12], report["video"], report["frames"],
                              m["cpu"], ", ".join(m.get("isa") or []) or "no AVX2", m["usable_cores"],
                              report["rows"][0]["versions"] if report["rows"] else "",
                              "OpenVINO's default CPU precision here: " + report["plugin_default_precision"],
                              report["rounds"], report["load_measure_start"][0], report["load_end"][0],
                              **report["thresholds"]), "",
            "| input | precision (executed) | edgecsp fps | Ultralytics fps | edgecsp / Ultralytics | goal | met | "
            "edgecsp's network alone: fps (/ Ultralytics) | detections edgecsp / Ultralytics | frames with equal "
            "counts | boxes matched (max diff px) | recall vs ground truth edgecsp / Ultralytics |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        det, truth = row["detections"], row["truth"]
        recall = " / ".join("{:.3f}".format(t["recall"]) if t and t["recall"] is not None else "-"
                            for t in (truth["edgecsp"], truth["ultralytics"]))
        executed = "{} / {}".format(row["edgecsp_executed"], row["ultralytics_executed"])
        if row["precision"] == "float":
            executed = "edgecsp FP16 IR / Ultralytics FP32 IR: " + executed
        elif row["precision"] == "int8":
            executed = "int8, float parts in " + executed
        met = "-" if row["goal"] is None else ("yes" if row["ratio"] >= row["goal"] else "**no**")
        network = "-" if row.get("network_fps") is None else "{:.1f} ({:.2f}x)".format(row["network_fps"],
                                                                                      row["ceiling_ratio"])
        out.append("| {0}x{0} | {1} ({2}) | {3:.1f} | {4:.1f} | **{5:.2f}x** ({6}) | {7} | {8} | {16} | {9} / {10} | "
                   "{11}/{12} | {13} ({14:.3g}) | {15} |".format(
                       row["size"], row["label"], executed, row["edgecsp_fps"], row["ultralytics_fps"], row["ratio"],
                       "-".join("{:.2f}".format(r) for r in sorted(row["ratio_per_round"])),
                       "-" if row["goal"] is None else ">= {}x".format(row["goal"]), met, det["edgecsp"],
                       det["ultralytics"], det["frames_same_count"], det["frames"], det["matched"],
                       det["max_box_diff_px"], recall, network))
    out += ["", "*Network alone*: edgecsp's IR as `infer` opens it (3 requests in flight), one preprocessed frame "
            "submitted over and over for {} s, no video and no NMS: the most any end-to-end run of that IR can reach "
            "here; in brackets that ceiling over Ultralytics' end-to-end fps. Where both sides run the same network "
            "in the same precision, a ratio above the bracket cannot be reached by pipelining alone.".format(
                NETWORK_SECONDS),
            "", "Per round ratios in brackets (lowest-highest). CPU time of the whole process per frame (all its "
            "threads, ms), edgecsp / Ultralytics: " + "; ".join("{} {}: {:.1f} / {:.1f}".format(
                r["size"], r["precision"], r["process_cpu_ms_per_frame"]["edgecsp"],
                r["process_cpu_ms_per_frame"]["ultralytics"]) for r in report["rows"]) + ". Ultralytics' own "
            "profile (its predictor's `speed`, ms per frame): " + "; ".join("{} {}: {}".format(
                r["size"], r["precision"], ", ".join("{} {:.2f}".format(k, v)
                                                     for k, v in r["ultralytics_ms_per_frame"].items()))
                for r in report["rows"]) + "; edgecsp's stages (wall ms per frame, overlapping): " + "; ".join(
                "{} {}: {}".format(r["size"], r["precision"], ", ".join(
                    "{} {:.2f}".format(k, v) for k, v in r["edgecsp_ms_per_frame"].items()))
                for r in report["rows"]) + ".", ""]
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CHILDREN:
        record = CHILDREN[argv[0]](json.loads(argv[1]))
        sys.stdout.write("\n" + _MARK + json.dumps(record) + "\n")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pt", default=DEFAULT_PT, help="the trained Ultralytics model (.pt)")
    ap.add_argument("--work", default=DEFAULT_WORK, help="exports, builds, calibration set, video (kept)")
    ap.add_argument("--video", help="the video (default: --work/clip.mp4, edgecsp data video 640x360, 300 frames)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--frames", type=int, default=VIDEO_FRAMES)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round, 100 frames")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--md", help="write the markdown section here")
    a = ap.parse_args(argv)
    report = run(a.pt, a.work, a.video, a.sizes, 100 if a.quick else a.frames, 1 if a.quick else a.rounds)
    text = markdown(report)
    print(text)
    if a.json:
        with open(a.json, "w") as handle:
            json.dump(report, handle, indent=1)
    if a.md:
        with open(a.md, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
