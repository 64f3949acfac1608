"""``edgecsp bench``: how fast an artefact runs, alone and against the baselines a user would otherwise pick.

Every configuration is measured in its own child process (``python -m edgecsp.bench_measure``), and with ``rounds`` > 1
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
from collections import OrderedDict
from typing import NamedTuple, Optional, Tuple

import numpy as np

from edgecsp._files import READS, READS_SPEC, WRITES, check_paths, write_json_atomic
from edgecsp.bench_measure import _MARK
from edgecsp.validate import path_pair
from edgecsp.errors import InputError

SCHEMA = "edgecsp-bench/1"

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
    server: Optional[str] = None  # grpc://HOST:PORT of a Triton server: measure its model `model` as the engine
    model: Optional[str] = None


# what bench reads and writes: --report may not replace an artefact or video it measures (edgecsp._files.check_paths)
PATHS = (("engine", "--engine", READS), ("vs", "--vs", READS_SPEC), ("video", "--video", READS),
         ("memory", "--memory", READS), ("json", "--report", WRITES))


def engine_spec(config):
    """What the config measures first: ``engine``, or ``grpc://HOST:PORT/MODEL`` for ``server`` + ``model``."""
    if config.server is None:
        if config.model is not None:
            raise InputError("--model names a model on a server: pass --server grpc://HOST:PORT too")
        return config.engine
    if config.engine:
        raise InputError("--engine and --server both name what to measure: keep one (a server's model can also be "
                         "a --vs baseline: grpc://HOST:PORT/MODEL)")
    from edgecsp.serving.client import server_spec

    return server_spec(config.server, config.model)


def _input_size(spec):
    from edgecsp.serving.client import is_server_spec, open_server_runner

    if is_server_spec(spec):
        with open_server_runner(spec) as runner:
            return list(runner.meta.input_size)
    from edgecsp.backends import read_artefact_meta

    return list(read_artefact_meta(spec).input_size)


def run_child(job, timeout=900.0):
    """Run ``job`` in a fresh Python process; its record, or InputError with the child's one-line error."""
    proc = subprocess.Popen([sys.executable, "-m", "edgecsp.bench_measure", json.dumps(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise InputError("benchmark {} ran over {:.0f} s: pass --seconds lower or --max-frames".format(
            job["name"], timeout))
    except BaseException:  # Ctrl-C, SIGTERM (edgecsp.errors.Terminated): the child must not outlive the run
        proc.kill()
        proc.wait()
        raise
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
            path_pair(spec[len("torch:"):], "torch:")
        return {"name": spec, "measure": "torch", "args": dict(common, spec=spec[len("torch:"):], size=size)}
    if spec.startswith("opencv:"):
        path_pair(spec[len("opencv:"):], "opencv:")  # fail here, not in a child after the others ran
        return {"name": spec, "measure": "opencv", "args": dict(common, spec=spec[len("opencv:"):], size=size)}
    from edgecsp.backends import artefact_suffixes
    from edgecsp.serving.client import is_server_spec, split_server_spec

    if is_server_spec(spec):
        split_server_spec(spec)  # fail here on a spec without a model
        return {"name": spec, "measure": "artefact",
                "args": dict(common, path=spec, in_flight=config.in_flight, threads=config.threads)}
    if os.path.splitext(spec)[1].lower() not in artefact_suffixes():
        raise InputError("--vs {}: give an artefact ({}), grpc://HOST:PORT/MODEL, torch:MODEL|CARD.json|CFG,WEIGHTS "
                         "or opencv:CFG,WEIGHTS"
                         .format(spec, ", ".join(artefact_suffixes())))
    if not os.path.isfile(spec):
        raise InputError("--vs {}: no such file".format(spec))
    return {"name": spec, "measure": "artefact",
            "args": dict(common, path=spec, in_flight=config.in_flight, threads=config.threads)}


def plan_jobs(config):
    """The jobs of one round, the engine first."""
    jobs = []
    size = None
    engine = engine_spec(config)
    if engine:
        jobs.append(parse_spec(engine, config))
        size = _input_size(engine)
    jobs += [parse_spec(spec, config, size) for spec in config.vs]
    if config.video:
        if not engine:
            raise InputError("--video needs --engine: the artefact to run on it")
        base = {"path": engine, "video": config.video, "threads": config.threads,
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
    engine = engine_spec(config)
    if not engine:
        raise InputError("--memory needs --engine: the artefact to run on the video")
    frames = frames or config.max_frames or _video_length(config.memory)
    marks = sorted(set(list(range(1000, frames + 1, 1000)) + [min(100, frames), frames]))
    return {"name": "memory: pipelined, JSON + annotated video", "measure": "video",
            "args": {"path": engine, "video": config.memory, "threads": config.threads,
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
        for table in ("ms_per_frame", "cpu_ms_per_frame"):
            if table in first:
                result[table] = OrderedDict((k, _median([r[table].get(k) for r in records])) for k in first[table])
        for key in ("non_network_cpu_ms_per_frame", "process_cpu_ms_per_frame"):
            if first.get(key) is not None:
                result[key] = _median([r[key] for r in records])
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


def check_config(config):
    """The numbers of a ``BenchConfig`` in range (InputError naming the option otherwise)."""
    from edgecsp.validate import non_negative_int, number_in, optional, positive_int

    number_in(config.seconds, "--seconds", 0.0, low_open=True)
    number_in(config.warmup, "--warmup", 0.0)
    positive_int(config.in_flight, "--in-flight")
    non_negative_int(config.rounds, "--rounds")
    optional(positive_int, config.max_frames, "--max-frames")


def bench(config, log=None):
    """Measure every configuration, alternating rounds, each run in its own process; returns the report dict."""
    check_config(config)
    check_paths(config, PATHS)
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
    write_json_atomic(path, report, indent=1, sort_keys=False)


def format_report(report):
    """The report as plain-text tables: the configurations (full names: a path's distinguishing part is often its
    end), the ratios, and the NMS timings when there are any."""
    machine = report["machine"]
    lines = ["{} ({} cores, {} usable), load average {}".format(
        machine["cpu"], machine["cores"], machine["usable_cores"],
        ", ".join("{:.2f}".format(v) for v in machine["load_avg"] or []))]
    results = report["results"]
    if results:
        width = max(len("configuration"), max(len(res["name"]) for res in results))
        lines.append("{:<{w}} {:>10} {:>10} {:>10} {:>10}".format("configuration", "p50 ms", "p90 ms", "p99 ms", "fps",
                                                                  w=width))
    for res in results:
        if "latency_ms" in res:
            lat = res["latency_ms"]
            lines.append("{:<{w}} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.1f}".format(
                res["name"], lat["p50"], lat["p90"], lat["p99"], res["throughput_fps"], w=width))
        else:
            lines.append("{:<{w}} {:>10} {:>10} {:>10} {:>10.1f}".format(res["name"], "", "", "", res["fps"],
                                                                          w=width))
            lines.append("    ms per frame: " + ", ".join("{} {:.2f}".format(k, v)
                                                        for k, v in res["ms_per_frame"].items() if v is not None))
            if res.get("cpu_ms_per_frame"):
                lines.append("    CPU ms per frame: " + ", ".join(
                    "{} {:.2f}".format(k, v) for k, v in res["cpu_ms_per_frame"].items() if v is not None) +
                    "; outside the network {:.2f}, whole process {:.2f}".format(
                        res.get("non_network_cpu_ms_per_frame") or 0.0, res.get("process_cpu_ms_per_frame") or 0.0))
        for mark in res.get("memory") or []:
            lines.append("    after {} frames: RSS {:.0f} MiB, peak {:.0f} MiB".format(
                mark["frames"], mark["rss_mb"], mark["peak_rss_mb"]))
    for row in report["ratios"]:
        lat = "" if row["latency_p50"] is None else ", p50 latency {:.2f}x".format(row["latency_p50"])
        lines.append("{} vs {}: throughput {:.2f}x{}".format(row["engine"], row["vs"], row["throughput"], lat))
    nms = report.get("nms") or []
    if nms:
        lines.append("NMS: edgecsp vs cv2.dnn.NMSBoxesBatched (OpenCV {}), best of several runs each".format(
            nms[0].get("opencv", "?")))
        lines.append("{:<10} {:>7} {:>8} {:>7} {:>11} {:>10} {:>8}  {}".format(
            "boxes", "classes", "count", "kept", "edgecsp ms", "OpenCV ms", "speedup", "same boxes"))
        for row in nms:
            lines.append("{:<10} {:>7} {:>8} {:>7} {:>11.2f} {:>10.2f} {:>7.2f}x  {}".format(
                row["boxes"], row["classes"], row["count"], row["kept"], row["edgecsp_ms"], row["opencv_ms"],
                row["speedup"], "yes" if row["same_boxes"] else "no (different boxes!)"))
    return "\n".join(lines)
