"""``edgecsp bench``: how fast an artefact runs, alone and against the baselines a user would otherwise pick.

Every configuration is measured in its own child process (``python -m edgecsp.bench``), and with ``rounds`` > 1
the configurations are alternated round by round: the thread pools of PyTorch, ONNX Runtime, OpenVINO and
OpenCV fight over the cores when they share a process, and a busy machine slows whatever runs at that moment,
so only ratios measured side by side in one run mean anything. Each figure is the median over the rounds.

What a configuration measures (specs for ``--vs``):

* an edgecsp artefact (``X.xml``, ``X.onnx``, ``X.engine``): warm-up, then latency (one request at a time,
  p50/p90/p99) and throughput (``in_flight`` requests kept running with ``runner.submit``);
* ``torch:MODEL`` / ``torch:CARD.json`` / ``torch:CFG,WEIGHTS``: PyTorch eager on the source model (registry
  name, model card or darknet cfg + weights), under ``torch.inference_mode``;
* ``opencv:CFG,WEIGHTS``: OpenCV DNN's darknet reader on the same darknet model;
* ``video``: a real video run of the engine through the pipeline (``edgecsp infer``'s code path), pipelined and
  synchronous, with the time per stage (read, preprocess, infer, postprocess, draw, write);
* ``memory``: peak RSS while the pipeline runs over a long video, read at frame checkpoints.

Throughput of the baselines is one request after the other (they have no asynchronous path). Host tool, Python
3.6 compatible like the CLI that reaches it.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from typing import NamedTuple, Optional, Tuple

import numpy as np

from edgecsp.errors import EdgeCSPError, InputError

SCHEMA = "edgecsp-bench/1"
_MARK = "EDGECSP-BENCH "  # prefix of the child's result line on stdout
ARTEFACT_SUFFIXES = (".xml", ".onnx", ".engine", ".trt", ".plan")
# instruction-set extensions that change what the CPU backends pick (VNNI for INT8, AMX/AVX512 for bf16/fp16)
NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")


class BenchConfig(NamedTuple):
    engine: Optional[str]  # the artefact measured; ratios are against it
    vs: Tuple[str, ...] = ()  # baselines: artefact paths, torch:..., opencv:CFG,WEIGHTS
    video: Optional[str] = None  # also measure a real video run of the engine (per-stage breakdown)
    max_frames: Optional[int] = None  # of the video run
    seconds: float = 3.0  # per latency / throughput measurement
    warmup: int = 10
    in_flight: int = 3  # as edgecsp infer's default (DEFAULT_IN_FLIGHT)
    threads: Optional[int] = None
    rounds: int = 0  # 0: 3 with baselines or a video, else 1
    json: Optional[str] = None
    timeout: float = 900.0  # per child process
    memory: Optional[str] = None  # a long video: peak RSS of a pipelined run at every 1000 frames (run once)
    nms: int = 0  # > 0: also time edgecsp's NMS against cv2.dnn.NMSBoxesBatched on this many boxes


# -- what children run ---------------------------------------------------------------------------------------
def _percentiles(times_ms):
    t = np.asarray(times_ms, dtype=np.float64)
    return OrderedDict([("p50", float(np.percentile(t, 50))), ("p90", float(np.percentile(t, 90))),
                        ("p99", float(np.percentile(t, 99))), ("mean", float(t.mean())), ("runs", int(t.size))])


def _time_calls(fn, seconds, warmup, min_runs=20, max_runs=100000):
    for _ in range(warmup):
        fn()
    times = []
    end = time.perf_counter() + seconds
    while (time.perf_counter() < end or len(times) < min_runs) and len(times) < max_runs:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return times


def sample_frame(seed=0, shape=(360, 640)):
    """A deterministic BGR uint8 frame (smooth gradient + noise): what every raw measurement feeds."""
    rng = np.random.RandomState(seed)
    h, w = shape
    grad = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return np.clip(grad * 0.5 + rng.uniform(0, 127, (h, w, 3)), 0, 255).astype(np.uint8)


def _blob(size, batch=1):
    """Float32 NCHW in 0..1 of ``size`` (h, w), letterboxed from sample_frame as the runtime would."""
    from edgecsp.runtime.preprocess import letterbox

    img, _ = letterbox(sample_frame(), size)
    x = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
    return np.repeat(x, batch, axis=0)


def measure_artefact(path, seconds=3.0, warmup=10, in_flight=3, threads=None):
    """Latency (one request at a time) and throughput (``in_flight`` requests running) of an edgecsp artefact."""
    from collections import deque

    from edgecsp.backends import backend_for_path, open_runner
    from edgecsp.runtime.preprocess import preprocess

    options = {"threads": threads} if threads else {}
    with open_runner(path, **options) as runner:
        meta = runner.meta
        batch = runner.input_shape[0] or 1
        x, _ = preprocess([sample_frame()] * batch, meta)
        latency = _percentiles(_time_calls(lambda: runner.infer(x), seconds, warmup))
    with open_runner(path, **options).set_in_flight(in_flight) as runner:
        pending = deque()
        for _ in range(max(warmup, 2 * in_flight)):
            pending.append(runner.submit(x))
            if len(pending) >= in_flight:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
        requests = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end or requests < 2 * in_flight:
            if len(pending) >= in_flight:
                pending.popleft().result()
            pending.append(runner.submit(x))
            requests += 1
        while pending:
            pending.popleft().result()
        elapsed = time.perf_counter() - t0
        real_in_flight = runner.in_flight
    return OrderedDict([("backend", backend_for_path(path)), ("precision", meta.extra.get("precision", "fp32")),
                        ("input", list(meta.input_size)), ("batch", int(batch)), ("latency_ms", latency),
                        ("throughput_fps", requests * batch / elapsed), ("in_flight", real_in_flight)])


def _split_pair(spec, what):
    parts = spec.split(",")
    if len(parts) != 2 or not all(parts):
        raise InputError("{} needs CFG,WEIGHTS (two paths joined by a comma), got {!r}".format(what, spec))
    for p in parts:
        if not os.path.isfile(p):
            raise InputError("{}: file {} not found".format(what, p))
    return parts


def measure_torch(spec, seconds=3.0, warmup=10, size=None):
    """Latency of PyTorch eager on a registry model, a model card, or a darknet ``CFG,WEIGHTS``."""
    from edgecsp._lazy import require
    from edgecsp.export.onnx_export import ExportConfig, load_torch_model

    torch = require("torch", "the PyTorch eager baseline")
    if "," in spec:
        cfg, weights = _split_pair(spec, "torch:")
        config = ExportConfig(darknet_cfg=cfg, darknet_weights=weights, input_size=size)
    elif spec.endswith(".json"):
        config = ExportConfig(card=spec)
    else:
        config = ExportConfig(model=spec)
    model = load_torch_model(config)[0]
    size = tuple(size or getattr(model, "input_size", None) or (416, 416))
    x = torch.from_numpy(_blob(size))
    with torch.inference_mode():
        latency = _percentiles(_time_calls(lambda: model(x), seconds, warmup))
    return OrderedDict([("backend", "torch-eager"), ("precision", "fp32"), ("input", list(size)), ("batch", 1),
                        ("latency_ms", latency), ("throughput_fps", 1000.0 / latency["mean"]), ("in_flight", 1),
                        ("threads", torch.get_num_threads()), ("version", torch.__version__)])


def measure_opencv(spec, seconds=3.0, warmup=10, size=None):
    """Latency of OpenCV DNN's darknet reader on ``CFG,WEIGHTS`` (its default backend and threads)."""
    from edgecsp._lazy import require
    from edgecsp.darknet import parse_cfg

    cv2 = require("cv2", "the OpenCV DNN baseline")
    cfg, weights = _split_pair(spec, "opencv:")
    if size is None:
        net = parse_cfg(cfg).net
        size = (net.get_int("height", 416), net.get_int("width", 416))
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    names = net.getUnconnectedOutLayersNames()
    x = _blob(size)

    def run():
        net.setInput(x)
        return net.forward(names)

    latency = _percentiles(_time_calls(run, seconds, warmup))
    return OrderedDict([("backend", "opencv-dnn"), ("precision", "fp32"), ("input", list(size)), ("batch", 1),
                        ("latency_ms", latency), ("throughput_fps", 1000.0 / latency["mean"]), ("in_flight", 1),
                        ("threads", cv2.getNumThreads()), ("version", cv2.__version__)])


def rss_mb():
    """(current, peak) resident memory of this process in MiB (peak only, twice, where /proc is missing)."""
    values = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    values[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    except (IOError, OSError):
        pass
    if "VmHWM" not in values:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
        return peak, peak
    return values.get("VmRSS", values["VmHWM"]), values["VmHWM"]


def measure_video(path, video, sync=False, in_flight=3, threads=None, max_frames=None, outputs="all",
                  checkpoints=()):
    """A real video run of ``path`` through the pipeline: fps, ms per stage, and RSS at frame ``checkpoints``.

    ``outputs``: "all" (JSON lines and an annotated video, as `edgecsp infer --json --save`), "json" or "none".
    """
    if outputs not in ("all", "json", "none"):
        raise InputError("outputs must be all, json or none, got {!r}".format(outputs))
    from edgecsp.backends import open_runner
    from edgecsp.runtime.pipeline import run_pipeline

    options = {"threads": threads} if threads else {}
    runner = open_runner(path, **options)
    if not sync:
        runner.set_in_flight(in_flight)
    marks = sorted(int(c) for c in checkpoints)
    memory = []

    def on_frame(stream, frame, det):
        if marks and frame.index + 1 == marks[0]:
            marks.pop(0)
            current, peak = rss_mb()
            memory.append(OrderedDict([("frames", frame.index + 1), ("rss_mb", current), ("peak_rss_mb", peak)]))

    folder = tempfile.mkdtemp(prefix="edgecsp-bench-")
    try:
        with runner:
            result = run_pipeline(runner, video, save=os.path.join(folder, "out.mp4") if outputs == "all" else None,
                                  json_path=os.path.join(folder, "out.jsonl") if outputs != "none" else None,
                                  max_frames=max_frames, progress=False, sync=sync,
                                  in_flight=None if sync else in_flight, callback=on_frame if marks else None)
    finally:
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)
    summary = result.summary
    return OrderedDict([("mode", summary["mode"]), ("frames", result.frames), ("fps", summary["fps"]),
                        ("in_flight", summary["in_flight"]), ("outputs", outputs),
                        ("ms_per_frame", summary["ms_per_frame"]), ("memory", memory)])


def nms_boxes(kind, count, classes, seed=0):
    """``(boxes xyxy float32, scores, class_ids)``: ``uniform`` random boxes in a 640x640 frame, or
    ``clustered`` ones (shifted copies around 60 objects, as a detector's raw candidates)."""
    rng = np.random.RandomState(seed)
    if kind == "uniform":
        xy = rng.uniform(0, 640, (count, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(2, 120, (count, 2))], axis=1)
    else:
        centres, sizes = rng.uniform(0, 640, (60, 2)), rng.uniform(10, 150, (60, 2))
        k = rng.randint(0, 60, count)
        ctr = centres[k] + rng.normal(0, 0.15, (count, 2)) * sizes[k]
        wh = sizes[k] * rng.uniform(0.7, 1.3, (count, 2))
        boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1)
    return boxes.astype(np.float32), rng.uniform(0, 1, count).astype(np.float32), rng.randint(0, classes, count)


def measure_nms(count=10000, repeats=7, iou=0.45):
    """edgecsp's greedy NMS against cv2.dnn.NMSBoxesBatched on the same boxes, alternated; best of ``repeats``.

    Both run uncapped (OpenCV's top_k caps the candidates before NMS, not the kept boxes) and class-aware;
    ``same`` says whether both kept exactly the same boxes.
    """
    from edgecsp._lazy import require
    from edgecsp.runtime.nms import nms_indices

    cv2 = require("cv2", "the OpenCV NMS baseline")
    rows = []
    for kind in ("uniform", "clustered"):
        for classes in (1, 80):
            boxes, scores, ids = nms_boxes(kind, count, classes)
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
            args = (xywh.tolist(), scores.tolist(), ids.tolist(), 0.0, iou)  # lists: cv2 takes no arrays here
            ours_ms, theirs_ms = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                ours = nms_indices(boxes, scores, iou, None, ids if classes > 1 else None)
                ours_ms.append((time.perf_counter() - t) * 1000.0)
                t = time.perf_counter()
                theirs = cv2.dnn.NMSBoxesBatched(*args)
                theirs_ms.append((time.perf_counter() - t) * 1000.0)
            same = sorted(ours.tolist()) == sorted(np.asarray(theirs).reshape(-1).tolist())
            rows.append(OrderedDict([("boxes", kind), ("classes", classes), ("count", count),
                                     ("kept", int(len(ours))), ("edgecsp_ms", min(ours_ms)),
                                     ("opencv_ms", min(theirs_ms)), ("speedup", min(theirs_ms) / min(ours_ms)),
                                     ("same_boxes", same), ("opencv", cv2.__version__)]))
    return rows


_MEASURES = {"artefact": measure_artefact, "torch": measure_torch, "opencv": measure_opencv,
             "video": measure_video, "nms": lambda **kw: OrderedDict(rows=measure_nms(**kw))}


def run_job(job):
    """Run one job dict (``{"measure": ..., "args": {...}}``) in this process; returns its record."""
    started = time.time()
    record = _MEASURES[job["measure"]](**job["args"])
    record["pid"] = os.getpid()
    record["started"] = started
    return record


def _child_main(argv):
    job = json.loads(argv[0])
    try:
        record = run_job(job)
    except EdgeCSPError as exc:
        record = {"error": str(exc), "pid": os.getpid()}
    sys.stdout.write(_MARK + json.dumps(record) + "\n")
    sys.stdout.flush()
    return 0


def run_child(job, timeout=900.0):
    """Run ``job`` in a fresh Python process; its record, or InputError with the child's one-line error."""
    proc = subprocess.Popen([sys.executable, "-m", "edgecsp.bench", json.dumps(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise InputError("benchmark {} ran over {:.0f} s: pass --seconds lower or --max-frames".format(
            job["name"], timeout))
    lines = [line[len(_MARK):] for line in out.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("benchmark child for {} failed (exit {}):\n{}".format(job["name"], proc.returncode,
                                                                              err[-3000:]))
    record = json.loads(lines[-1])
    if "error" in record:
        raise InputError("{}: {}".format(job["name"], record["error"]))
    return record


# -- the parent: plan, alternate, aggregate --------------------------------------------------------------------
def parse_spec(spec, config, size=None):
    """A job dict for one configuration spec (the engine itself, an artefact, torch:..., opencv:...).

    ``size`` (h, w): the input of the torch and OpenCV baselines (the engine's, so all run the same model).
    """
    common = {"seconds": config.seconds, "warmup": config.warmup}
    if spec.startswith("torch:"):
        if "," in spec:
            _split_pair(spec[len("torch:"):], "torch:")
        return {"name": spec, "measure": "torch", "args": dict(common, spec=spec[len("torch:"):], size=size)}
    if spec.startswith("opencv:"):
        _split_pair(spec[len("opencv:"):], "opencv:")  # fail here, not in a child after the others ran
        return {"name": spec, "measure": "opencv", "args": dict(common, spec=spec[len("opencv:"):], size=size)}
    if os.path.splitext(spec)[1].lower() not in ARTEFACT_SUFFIXES:
        raise InputError("--vs {}: give an artefact ({}), torch:MODEL|CARD.json|CFG,WEIGHTS or opencv:CFG,WEIGHTS"
                         .format(spec, ", ".join(ARTEFACT_SUFFIXES)))
    if not os.path.isfile(spec):
        raise InputError("--vs {}: no such file".format(spec))
    return {"name": spec, "measure": "artefact",
            "args": dict(common, path=spec, in_flight=config.in_flight, threads=config.threads)}


def plan_jobs(config):
    """The jobs of one round, the engine first."""
    jobs = []
    size = None
    if config.engine:
        from edgecsp.backends import read_artefact_meta

        jobs.append(parse_spec(config.engine, config))
        size = list(read_artefact_meta(config.engine).input_size)
    jobs += [parse_spec(spec, config, size) for spec in config.vs]
    if config.video:
        if not config.engine:
            raise InputError("--video needs --engine: the artefact to run on it")
        base = {"path": config.engine, "video": config.video, "threads": config.threads,
                "max_frames": config.max_frames}
        for name, extra in (("video pipelined, JSON", dict(outputs="json")),
                            ("video pipelined, JSON + annotated video", dict(outputs="all")),
                            ("video sync, JSON + annotated video", dict(outputs="all", sync=True))):
            args = dict(base, in_flight=config.in_flight, **extra)
            jobs.append({"name": name, "measure": "video", "args": args})
    if not jobs and not config.nms:
        raise InputError("nothing to measure: pass --engine ARTEFACT (and --vs baselines) or --nms")
    return jobs


def memory_job(config, frames=None):
    """The job that reads peak RSS every 1000 frames of a pipelined run over ``config.memory``."""
    if not config.engine:
        raise InputError("--memory needs --engine: the artefact to run on the video")
    frames = frames or config.max_frames or _video_length(config.memory)
    marks = sorted(set(list(range(1000, frames + 1, 1000)) + [min(100, frames), frames]))
    return {"name": "memory: pipelined, JSON + annotated video", "measure": "video",
            "args": {"path": config.engine, "video": config.memory, "threads": config.threads,
                     "in_flight": config.in_flight, "max_frames": config.max_frames, "outputs": "all",
                     "checkpoints": marks}}


def _video_length(path):
    from edgecsp.runtime.sources import open_source

    with open_source(path) as source:
        if not source.length:
            raise InputError("--memory {}: the video does not report its frame count; pass --max-frames".format(
                path))
        return int(source.length)


def machine_info():
    """CPU model, core count, OS and load average of this machine, for the report."""
    cpu = platform.processor() or platform.machine()
    flags = []
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key = line.split(":", 1)[0].strip().lower()
                if key == "model name" and cpu == (platform.processor() or platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                elif key == "flags" and not flags:
                    present = set(line.split(":", 1)[1].split())
                    flags = [f for f in NOTABLE_FLAGS if f in present]
    except (IOError, OSError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return OrderedDict([("cpu", cpu), ("isa", flags), ("cores", os.cpu_count()), ("usable_cores", usable),
                        ("os", platform.platform()), ("python", platform.python_version()), ("load_avg", load)])


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def aggregate(name, records):
    """One result from the per-round records of a configuration: medians of every figure."""
    first = records[0]
    result = OrderedDict([("name", name)])
    for key in ("backend", "precision", "input", "batch", "in_flight", "threads", "version", "mode", "frames",
                "outputs"):
        if key in first:
            result[key] = first[key]
    if "latency_ms" in first:
        result["latency_ms"] = OrderedDict((k, _median([r["latency_ms"][k] for r in records]))
                                           for k in ("p50", "p90", "p99", "mean"))
        result["throughput_fps"] = _median([r["throughput_fps"] for r in records])
    if "fps" in first:
        result["fps"] = _median([r["fps"] for r in records])
        result["ms_per_frame"] = OrderedDict((k, _median([r["ms_per_frame"].get(k) for r in records]))
                                             for k in first["ms_per_frame"])
    if first.get("memory"):
        result["memory"] = first["memory"]
    result["rounds"] = records
    return result


def ratios(results):
    """Speed of the first result (the engine) over each other raw result: throughput and p50 latency."""
    if not results or "throughput_fps" not in results[0]:
        return []
    ref = results[0]
    rows = []
    for other in results[1:]:
        if "throughput_fps" not in other:
            continue
        rows.append(OrderedDict([("engine", ref["name"]), ("vs", other["name"]),
                                 ("throughput", ref["throughput_fps"] / other["throughput_fps"]),
                                 ("latency_p50", other["latency_ms"]["p50"] / ref["latency_ms"]["p50"])]))
    for other in results[1:]:
        if "fps" in other:
            rows.append(OrderedDict([("engine", other["name"]), ("vs", ref["name"] + " raw throughput"),
                                     ("throughput", other["fps"] / ref["throughput_fps"]), ("latency_p50", None)]))
    return rows


def bench(config, log=None):
    """Measure every configuration, alternating rounds, each run in its own process; returns the report dict."""
    jobs = plan_jobs(config)
    rounds = config.rounds or (3 if len(jobs) > 1 else 1)
    records = [[] for _ in jobs]
    for r in range(rounds):
        for i, job in enumerate(jobs):
            record = run_child(job, config.timeout)
            records[i].append(record)
            if log:
                log("round {}/{} {}: {}".format(r + 1, rounds, job["name"], _one_line(record)))
    results = [aggregate(job["name"], recs) for job, recs in zip(jobs, records)]
    if config.memory:
        job = memory_job(config)
        record = run_child(job, config.timeout)
        if log:
            log("{}: {}".format(job["name"], _one_line(record)))
        results.append(aggregate(job["name"], [record]))
    report = OrderedDict([("schema", SCHEMA), ("machine", machine_info()),
                          ("settings", OrderedDict([("seconds", config.seconds), ("warmup", config.warmup),
                                                    ("in_flight", config.in_flight), ("threads", config.threads),
                                                    ("rounds", rounds), ("max_frames", config.max_frames)])),
                          ("results", results), ("ratios", ratios(results))])
    if config.nms:
        report["nms"] = run_child({"name": "nms", "measure": "nms", "args": {"count": config.nms}},
                                  config.timeout)["rows"]
    if config.json:
        write_json(config.json, report)
    return report


def _one_line(record):
    if "latency_ms" in record:
        return "p50 {:.2f} ms, {:.1f} fps (pid {})".format(record["latency_ms"]["p50"], record["throughput_fps"],
                                                          record["pid"])
    return "{:.1f} fps over {} frames (pid {})".format(record["fps"], record["frames"], record["pid"])


def write_json(path, report):
    """Write ``report`` to ``path`` atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    tmp = path + ".partial"
    with open(tmp, "w") as out:
        json.dump(report, out, indent=1)
        out.write("\n")
    os.replace(tmp, path)


def format_report(report):
    """The report as a plain-text table."""
    machine = report["machine"]
    lines = ["{} ({} cores, {} usable), load average {}".format(
        machine["cpu"], machine["cores"], machine["usable_cores"],
        ", ".join("{:.2f}".format(v) for v in machine["load_avg"] or []))]
    lines.append("{:<44} {:>10} {:>10} {:>10} {:>10}".format("configuration", "p50 ms", "p90 ms", "p99 ms", "fps"))
    for res in report["results"]:
        if "latency_ms" in res:
            lat = res["latency_ms"]
            lines.append("{:<44} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.1f}".format(
                res["name"][-44:], lat["p50"], lat["p90"], lat["p99"], res["throughput_fps"]))
        else:
            lines.append("{:<44} {:>10} {:>10} {:>10} {:>10.1f}".format(res["name"][-44:], "", "", "", res["fps"]))
            lines.append("    ms per frame: " + ", ".join("{} {:.2f}".format(k, v)
                                                        for k, v in res["ms_per_frame"].items() if v is not None))
        for mark in res.get("memory") or []:
            lines.append("    after {} frames: RSS {:.0f} MiB, peak {:.0f} MiB".format(
                mark["frames"], mark["rss_mb"], mark["peak_rss_mb"]))
    for row in report["ratios"]:
        lat = "" if row["latency_p50"] is None else ", p50 latency {:.2f}x".format(row["latency_p50"])
        lines.append("{} vs {}: throughput {:.2f}x{}".format(row["engine"], row["vs"], row["throughput"], lat))
    for row in report.get("nms", []):
        lines.append("NMS {} {} boxes, {} class(es): edgecsp {:.1f} ms, cv2.dnn.NMSBoxesBatched {:.1f} ms ({:.2f}x), "
                     "{} kept{}".format(row["count"], row["boxes"], row["classes"], row["edgecsp_ms"],
                                        row["opencv_ms"], row["speedup"], row["kept"],
                                        "" if row["same_boxes"] else " (different boxes!)"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
