"""``edgecsp infer --engine ARTEFACT SOURCE``: detections on a video, image, folder or camera."""
from edgecsp.backends import artefact_help


def add_arguments(p):
    p.add_argument("--engine", "-e", help="artefact: " + artefact_help())
    p.add_argument("--server", metavar="grpc://HOST:PORT", help="run the network on this Triton server instead "
                   "(`edgecsp serve` or `edgecsp package --triton`); the rest of the pipeline runs here")
    p.add_argument("--model", metavar="NAME", help="the model's name on --server")
    p.add_argument("source", nargs="+", help="video file, image, folder of images, camera index (0) or rtsp:// / "
                   "http:// URL; several run as streams at once (outputs get -0, -1 ... suffixes)")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold, objectness x class (default 0.25)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the model family's, recorded at import, "
                   "else 0.45)")
    p.add_argument("--max-det", type=int, default=300, help="maximum detections per frame (default 300)")
    p.add_argument("--agnostic-nms", action="store_true", help="NMS across classes instead of per class")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--multi-label", dest="multi_label", action="store_const", const=True,
                        help="every (box, class) pair above --conf is a candidate (darknet's and mmdet's rule)")
    labels.add_argument("--single-label", dest="multi_label", action="store_const", const=False,
                        help="each box's best class only (Ultralytics', YOLOX's and YOLOv7's rule); default: the "
                             "model family's, recorded at import, else --multi-label")
    p.add_argument("--save", help="write an annotated video (e.g. out.mp4) or, for images, a folder")
    p.add_argument("--json", help="write detections per frame as JSON lines (e.g. out.jsonl)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--streams", type=int, help="run N streams at once, cycling through the sources (batched when "
                   "the artefact takes a batch of N)")
    p.add_argument("--in-flight", type=int, help="inference requests running at once (default 3)")
    p.add_argument("--sync", action="store_true", help="one frame at a time in one thread, no pipelining")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--gst", action="store_true",
                   help="Jetson: open sources as GStreamer pipelines (hardware decoding): a video file, rtsp://..., "
                        "csi://N for a CSI camera, or a raw pipeline string ending in appsink")
    p.add_argument("--gst-codec", default="h264", choices=("h264", "h265"),
                   help="codec of files and RTSP streams with --gst (default h264)")


def run(args):
    from edgecsp.infer import InferConfig, infer

    config = InferConfig(engine=args.engine, server=args.server, model=args.model, source=args.source,
                         conf=args.conf, iou=args.iou,
                         max_det=args.max_det, class_agnostic=args.agnostic_nms, multi_label=args.multi_label,
                         save=args.save, json=args.json,
                         max_frames=args.max_frames, threads=args.threads,
                         progress=False if args.no_progress else None, streams=args.streams, sync=args.sync,
                         in_flight=args.in_flight, gst=args.gst, gst_codec=args.gst_codec)
    result = infer(config, log=print)
    print("{} detections in {} frames: {:.1f} fps".format(result.detections, result.frames, result.summary["fps"]))
    for what, path in result.outputs:
        print("{}: {}".format(what, path))
    return 0
