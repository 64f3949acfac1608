"""The evaluation report: a JSON record, a text table and a PNG chart of per-class AP against a baseline.

matplotlib (Agg, no display needed) is imported only when a chart is drawn. Files are written atomically.
"""
import math
import os

from edgecsp._lazy import require
from edgecsp._files import atomic_output, write_json_atomic

REPORT_FORMAT = "edgecsp-eval"


def _points(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else 100.0 * value


def build_report(result, baseline=None):
    """``{"format", "artefact": result, "baseline": baseline, "drop": {...}}``; drops in points, positive = worse.

    ``drop`` (None without a baseline) has ``map50``, ``map50_95``, the COCO library's ``coco_map50`` /
    ``coco_map50_95`` and ``per_class`` (AP@0.5 per class name).
    """
    drop = None
    if baseline is not None:
        drop = {"map50": _points(baseline["map50"] - result["map50"]),
                "map50_95": _points(baseline["map50_95"] - result["map50_95"]),
                "per_class": dict((name, _points(baseline["per_class"][name] - ap))
                                  for name, ap in result["per_class"].items() if name in baseline["per_class"])}
        if result.get("coco") and baseline.get("coco"):
            drop["coco_map50"] = _points(baseline["coco"]["map50"] - result["coco"]["map50"])
            drop["coco_map50_95"] = _points(baseline["coco"]["map50_95"] - result["coco"]["map50_95"])
    return {"format": REPORT_FORMAT, "version": 1, "artefact": result, "baseline": baseline, "drop": drop}


def _fmt(value):
    points = _points(value)
    return "  n/a" if points is None else "{:5.2f}".format(points)


def format_report(report):
    """The report as a few lines of text: overall mAP (numpy and COCO library), per-class AP@0.5, the drop."""
    result, baseline, drop = report["artefact"], report["baseline"], report["drop"]
    rows = [("", os.path.basename(result["artefact"]))]
    if baseline:
        rows[0] += (os.path.basename(baseline["artefact"]), "drop")

    def row(label, key, source=None):
        values = [(r.get(source) or {}).get(key) if source else r.get(key) for r in (result, baseline) if r]
        cells = [_fmt(v) for v in values]
        if baseline:
            cells.append("n/a" if None in values else "{:+.2f}".format(100.0 * (values[1] - values[0])))
        rows.append((label,) + tuple(cells))

    row("mAP@0.5", "map50")
    row("mAP@0.5:0.95", "map50_95")
    if result.get("coco"):
        row("mAP@0.5 ({})".format(result["coco"]["library"].split()[0]), "map50", "coco")
        row("mAP@0.5:0.95 ({})".format(result["coco"]["library"].split()[0]), "map50_95", "coco")
    for name in result["per_class"]:
        cells = [_fmt(result["per_class"][name])]
        if baseline:
            cells.append(_fmt(baseline["per_class"].get(name)))
            cells.append("{:+.2f}".format(drop["per_class"][name]) if name in drop["per_class"] else "n/a")
        rows.append(("  AP@0.5 {} ({} gt)".format(name, result["num_gt"].get(name, 0)),) + tuple(cells))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r))
             for r in rows]
    lines.append("{} images; mAP in points (x100); drop = baseline - artefact; inference {:.2f} ms/image".format(
        result["images"], result["infer_ms_per_image"]))
    options = result.get("options")
    if options:
        lines.append("conf {}, NMS IoU {} {}, {} detections per image; AP: {}".format(
            options["conf"], options["iou"], "multi-label" if options.get("multi_label") else "best class",
            options["max_det"], AP_TEXT.get(options.get("ap", "coco"))))
    return "\n".join(lines)


AP_TEXT = {"coco": "COCO's 101-point step", "ultralytics": "Ultralytics' val (interpolated, trapezoid)"}


def write_report(report, path):
    """Write ``report`` as JSON to ``path`` atomically (NaN becomes null); returns ``path``."""
    return write_json_atomic(path, _no_nan(report))


def _no_nan(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return dict((k, _no_nan(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def check_plotting():
    """MissingDependency (naming the extra) when matplotlib is not installed: checked before evaluating."""
    return require("matplotlib", "drawing the evaluation chart (--plot)")


def plot_report(report, path):
    """A PNG bar chart of per-class AP@0.5 of the artefact (and the baseline), mAP in the title; returns ``path``."""
    matplotlib = check_plotting()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result, baseline = report["artefact"], report["baseline"]
    names = list(result["per_class"])
    series = [(os.path.basename(result["artefact"]), result)]
    if baseline:
        series.insert(0, (os.path.basename(baseline["artefact"]), baseline))
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2), dpi=100)
    try:
        for k, (label, data) in enumerate(series):
            xs = [i + (k - (len(series) - 1) / 2.0) * width for i in range(len(names))]
            values = [100.0 * (data["per_class"].get(n) or 0.0) for n in names]
            axes.bar(xs, values, width, label="{} (mAP@0.5 {:.2f})".format(label, 100.0 * data["map50"]))
        axes.set_xticks(list(range(len(names))))
        axes.set_xticklabels(names, rotation=30 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
        axes.set_ylabel("AP@0.5 (points)")
        axes.set_ylim(0, 105)
        title = "per-class AP@0.5 on {} images".format(result["images"])
        if report["drop"]:
            title += ": drop {:+.2f} points".format(report["drop"]["map50"])
        axes.set_title(title)
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        with atomic_output(path) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)
    return path
