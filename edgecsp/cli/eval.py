"""``edgecsp eval --engine ART --data annotations.json``: mAP of an artefact, optionally against a baseline."""
from edgecsp.backends import artefact_help
from edgecsp.cli.options import add


def add_arguments(p):
    add(p, "engine", required=True, help="artefact to evaluate: " + artefact_help() +
                   ", or torch:MODEL|CARD.json|CFG,WEIGHTS: the PyTorch model before export")
    add(p, "data", required=True, metavar="ANN.json", help="COCO annotations json (edgecsp data shapes writes one)")
    p.add_argument("--images", help="folder of the images (default: the json's folder)")
    add(p, "baseline", help="artefact to compare with, e.g. the FP32 build of the same model, or "
                   "torch:CARD.json (the PyTorch model, run at the artefact's input size): what export loses")
    add(p, "report", metavar="FILE", help="write the report as JSON (e.g. eval.json)")
    p.add_argument("--plot", help="write a PNG chart of per-class AP (e.g. eval.png)")
    p.add_argument("--conf", type=float, help="score threshold (default 0.001: the whole PR curve)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.6; 0.7 with --ultralytics)")
    p.add_argument("--max-det", type=int,
                   help="detections per image (default 100, as COCO; 300 with --ultralytics)")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--multi-label", dest="multi_label", action="store_const", const=True,
                        help="NMS over every (box, class) pair above --conf (default with --ultralytics)")
    labels.add_argument("--single-label", dest="multi_label", action="store_const", const=False,
                        help="each box's best class only (default: the model family's rule, recorded at import)")
    p.add_argument("--ap", metavar="METHOD",
                   help="how AP integrates a PR curve: coco (101-point step, the default) or ultralytics "
                        "(interpolated, trapezoid: its val)")
    p.add_argument("--ultralytics", action="store_true",
                   help="Ultralytics' val settings: conf 0.001, IoU 0.7 multi-label, 300 per image, --ap ultralytics "
                        "(the options above override them)")
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--no-coco", action="store_true",
                   help="skip the independent COCO library check (faster-coco-eval / pycocotools)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from edgecsp.evaluation.artefact import (EVAL_OPTIONS, ULTRALYTICS_AP, ULTRALYTICS_OPTIONS, EvalConfig,
                                             evaluate)
    from edgecsp.evaluation.report import format_report

    preset, ap = (ULTRALYTICS_OPTIONS, ULTRALYTICS_AP) if args.ultralytics else (EVAL_OPTIONS, "coco")
    given = lambda value, default: default if value is None else value  # noqa: E731  (an option overrides)
    report = evaluate(EvalConfig(engine=args.engine, data=args.data, images=args.images, baseline=args.baseline,
                                 report=args.report, plot=args.plot, conf=given(args.conf, preset.conf),
                                 iou=given(args.iou, preset.iou), max_det=given(args.max_det, preset.max_det),
                                 multi_label=given(args.multi_label, preset.multi_label), ap=given(args.ap, ap),
                                 limit=args.limit, threads=args.threads,
                                 coco=not args.no_coco, progress=False if args.no_progress else None))
    print(format_report(report))
    for label, path in (("report", args.report), ("chart", args.plot)):
        if path:
            print("{}: {}".format(label, path))
    return 0
