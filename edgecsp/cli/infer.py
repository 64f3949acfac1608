"""``edgecsp infer --engine ARTEFACT SOURCE``: detections (or a classifier's top classes) on a video, image,
folder or camera."""
from edgecsp.backends import artefact_help
from edgecsp.cli.options import add, alias


def add_arguments(p):
    add(p, "engine", help="artefact: " + artefact_help())
    p.add_argument("--server", metavar="grpc://HOST:PORT", help="run the network on this Triton server instead "
                   "(`edgecsp serve` or `edgecsp package --triton`); the rest of the pipeline runs here")
    p.add_argument("--model", metavar="NAME", help="the model's name on --server (default: its only model)")
    p.add_argument("source", nargs="+", help="video file, image, folder of images, camera index (0) or rtsp:// / "
                   "http:// URL; several run as streams at once (outputs get -0, -1 ... suffixes). A folder's "
                   "images are read in natural order; an unreadable one is skipped with a warning (the summary "
                   "counts them) and videos in the folder are not read (a warning names them: pass each as a source)")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold, objectness x class (default 0.25)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the model family's, recorded at import, "
                   "else 0.45)")
    p.add_argument("--max-det", type=int, default=300, help="maximum detections per frame (default 300)")
    p.add_argument("--agnostic-nms", action="store_true", help="NMS across classes instead of per class")
    p.add_argument("--classes", nargs="+", metavar="NAME_OR_ID", help="keep only these classes: names or ids, "
                   "after the source or comma-separated (--classes person 2, --classes person,2)")
    p.add_argument("--top-k", type=int, default=5, help="classifiers: the best K classes per frame (default 5)")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--multi-label", dest="multi_label", action="store_const", const=True,
                        help="every (box, class) pair above --conf is a candidate (darknet's and mmdet's rule)")
    labels.add_argument("--single-label", dest="multi_label", action="store_const", const=False,
                        help="each box's best class only (Ultralytics', YOLOX's and YOLOv7's rule); default: the "
                             "model family's, recorded at import, else --multi-label")
    p.add_argument("--save", help="write an annotated video (e.g. out.mp4), the annotated image of an image "
                   "source (out.png, out.jpg: the extension picks the format) or, for a folder of images, a folder "
                   "(each image keeps its name)")
    p.add_argument("--save-txt", metavar="DIR", help="write YOLO label files into DIR: <image stem>.txt, or "
                   "<video stem>_<frame>.txt per video frame; lines 'class cx cy w h score' normalised to the frame "
                   "(classifiers: 'score name'); empty when nothing is found")
    p.add_argument("--show", action="store_true", help="show the annotated frames in a window (needs a display "
                   "and OpenCV with a GUI)")
    alias(p, "infer", "--json", "save_json")
    add(p, "save_json", metavar="FILE", help="write detections per frame as JSON lines (e.g. out.jsonl); classifiers: "
                   "{\"frame\", \"source\", \"classes\": [{\"class_id\", \"name\", \"score\"}]}")
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
                         save=args.save, json=args.save_json, save_txt=args.save_txt, show=args.show,
                         classes=args.classes, top_k=args.top_k,
                         max_frames=args.max_frames, threads=args.threads,
                         progress=False if args.no_progress else None, streams=args.streams, sync=args.sync,
                         in_flight=args.in_flight, gst=args.gst, gst_codec=args.gst_codec)
    result = infer(config, log=print)
    if result.summary.get("task") == "classify":
        print("top-{} classes of {} frames: {:.1f} fps".format(args.top_k, result.frames, result.summary["fps"]))
    else:
        print("{} detections in {} frames: {:.1f} fps".format(result.detections, result.frames,
                                                              result.summary["fps"]))
    if result.summary.get("skipped"):
        print("skipped {} unreadable image(s)".format(result.summary["skipped"]))
    for what, path in result.outputs:
        print("{}: {}".format(what, path))
    return 0
