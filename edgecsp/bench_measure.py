"""What the children of ``edgecsp bench`` run: one configuration measured in this process.

``python -m edgecsp.bench_measure JOB_JSON`` runs one job (see ``edgecsp.bench``, which plans and alternates
them) and prints its record on a line starting with ``EDGECSP-BENCH``. Python 3.6 compatible.
"""
import json
import os
import sys
import tempfile
import time
from collections import OrderedDict

import numpy as np

from edgecsp.errors import EdgeCSPError, InputError
from edgecsp.validate import path_pair

_MARK = "EDGECSP-BENCH "  # prefix of the child's result line on stdout


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


def backend_label(path):
    from edgecsp.serving.client import is_server_spec

    if is_server_spec(path):
        return "triton"
    from edgecsp.backends import backend_for_path

    return backend_for_path(path)


def _runner(spec, threads=None):
    """An unopened runner for ``spec``: a local artefact's, or a TritonRunner for ``grpc://HOST:PORT/MODEL``
    (only then is the serving package imported)."""
    from edgecsp.backends import open_runner

    if "://" in str(spec):
        from edgecsp.serving.client import is_server_spec, open_server_runner

        if is_server_spec(spec):
            return open_server_runner(spec, threads=threads)
    return open_runner(spec, **({"threads": threads} if threads else {}))


def measure_artefact(path, seconds=3.0, warmup=10, in_flight=3, threads=None):
    """Latency (one request at a time) and throughput (``in_flight`` requests running) of an edgecsp artefact."""
    from collections import deque

    from edgecsp.runtime.preprocess import preprocess

    with _runner(path, threads) as runner:
        meta = runner.meta
        batch = runner.input_shape[0] or 1
        x, _ = preprocess([sample_frame()] * batch, meta)
        latency = _percentiles(_time_calls(lambda: runner.infer(x), seconds, warmup))
    with _runner(path, threads).set_in_flight(in_flight) as runner:
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
    return OrderedDict([("backend", backend_label(path)), ("precision", meta.extra.get("precision", "fp32")),
                        ("input", list(meta.input_size)), ("batch", int(batch)), ("latency_ms", latency),
                        ("throughput_fps", requests * batch / elapsed), ("in_flight", real_in_flight)])


def measure_torch(spec, seconds=3.0, warmup=10, size=None):
    """Latency of PyTorch eager on a registry model, a model card, or a darknet ``CFG,WEIGHTS``."""
    from edgecsp._lazy import require
    from edgecsp.export.onnx_export import ExportConfig, load_torch_model

    torch = require("torch", "the PyTorch eager baseline")
    if "," in spec:
        cfg, weights = path_pair(spec, "torch:")
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
    cfg, weights = path_pair(spec, "opencv:")
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

    ``outputs``: "all" (JSON lines and an annotated video, as `edgecsp infer --save-json --save`), "json" or "none".
    """
    if outputs not in ("all", "json", "none"):
        raise InputError("outputs must be all, json or none, got {!r}".format(outputs))
    from edgecsp.runtime.pipeline import run_pipeline

    runner = _runner(path, threads)
    if not sync:
        runner.set_in_flight(in_flight)
    marks = sorted(int(c) for c in checkpoints)
    memory = []

    def on_frame(stream, frame, det):
        if marks and frame.index + 1 == marks[0]:
            marks.pop(0)
            current, peak = rss_mb()
            memory.append(OrderedDict([("frames", frame.index + 1), ("rss_mb", current), ("peak_rss_mb", peak)]))

    from edgecsp.runtime.inputs import open_sources
    from edgecsp.runtime.sinks import JsonlSink, VideoSink

    with tempfile.TemporaryDirectory(prefix="edgecsp-bench-") as folder:
        sinks = ([VideoSink(os.path.join(folder, "out.mp4"))] if outputs == "all" else []) + (
            [JsonlSink(os.path.join(folder, "out.jsonl"))] if outputs != "none" else [])
        with open_sources([video]) as sources, runner:
            result = run_pipeline(runner, sources, sinks=sinks, max_frames=max_frames, progress=False, sync=sync,
                                  in_flight=None if sync else in_flight, callback=on_frame if marks else None)
    summary = result.summary
    return OrderedDict([("mode", summary["mode"]), ("frames", result.frames), ("fps", summary["fps"]),
                        ("in_flight", summary["in_flight"]), ("outputs", outputs),
                        ("ms_per_frame", summary["ms_per_frame"]),
                        # CPU time, not wall time: what the frames cost the cores (a Jetson's ARM cores do it all)
                        ("cpu_ms_per_frame", summary["cpu_ms_per_frame"]),
                        ("non_network_cpu_ms_per_frame", summary["non_network_cpu_ms_per_frame"]),
                        ("process_cpu_ms_per_frame", summary.get("process_cpu_ms_per_frame")),
                        ("memory", memory)])


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


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
