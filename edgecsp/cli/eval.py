"""``edgecsp eval --engine ART --data annotations.json``: mAP of an artefact, optionally against a baseline."""
from edgecsp.backends import artefact_help


def add_arguments(p):
    p.add_argument("--engine", "-e", required=True, help="artefact to evaluate: " + artefact_help())
    p.add_argument("--data", "-d", required=True, help="COCO annotations json (edgecsp data shapes writes one)")
    p.add_argument("--images", help="folder of the images (default: the json's folder)")
    p.add_argument("--baseline", "-b", help="artefact to compare with, e.g. the FP32 build of the same model")
    p.add_argument("--report", help="write the report as JSON (e.g. eval.json)")
    p.add_argument("--plot", help="write a PNG chart of per-class AP (e.g. eval.png)")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001: the whole PR curve)")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (default 0.6)")
    p.add_argument("--max-det", type=int, default=100, help="detections per image (default 100, as COCO)")
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--no-coco", action="store_true",
                   help="skip the independent COCO library check (faster-coco-eval / pycocotools)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from edgecsp.evaluation.artefact import EvalConfig, evaluate
    from edgecsp.evaluation.report import format_report

    report = evaluate(EvalConfig(engine=args.engine, data=args.data, images=args.images, baseline=args.baseline,
                                 report=args.report, plot=args.plot, conf=args.conf, iou=args.iou,
                                 max_det=args.max_det, limit=args.limit, threads=args.threads,
                                 coco=not args.no_coco, progress=False if args.no_progress else None))
    print(format_report(report))
    for label, path in (("report", args.report), ("chart", args.plot)):
        if path:
            print("{}: {}".format(label, path))
    return 0
