"""``edgecsp data shapes|video``: the synthetic "shapes" data the demo model was trained on."""
from edgecsp._files import WRITES

# what data writes (it reads nothing): the CLI checks the folders can be written before generating anything
PATHS = (("out_dir", "out_dir", WRITES), ("path", "path", WRITES))
FORMATS = ("coco", "yolo")


def _size(text):
    from edgecsp.validate import size_hw

    return size_hw(text, "--size")


def add_arguments(p):
    sub = p.add_subparsers(dest="kind", metavar="KIND")
    sub.required = True
    shapes = sub.add_parser("shapes", help="images + COCO annotations.json (+ YOLO labels/ and data.yaml)")
    shapes.add_argument("out_dir", help="output folder (images/ and annotations.json)")
    shapes.add_argument("--count", type=int, default=200, help="number of images (default 200)")
    shapes.add_argument("--seed", type=int, default=1000, help="random seed (the demo model trained on seed 0)")
    shapes.add_argument("--size", help="HEIGHTxWIDTH of every image (default: varied sizes)")
    shapes.add_argument("--format", choices=FORMATS, default="coco",
                        help="coco: images/ + annotations.json (default); yolo: also labels/*.txt (class cx cy w h, "
                             "normalised) and data.yaml, the layout Ultralytics trains on")
    shapes.add_argument("--val", metavar="DIR",
                        help="with --format yolo: the shapes folder data.yaml names as val (default: this one)")
    video = sub.add_parser("video", help="an mp4 of moving shapes + per-frame ground truth (<video>.gt.jsonl)")
    video.add_argument("path", help="output video path, e.g. out/demo.mp4")
    video.add_argument("--frames", type=int, default=250, help="number of frames (default 250)")
    video.add_argument("--seed", type=int, default=7, help="random seed")
    video.add_argument("--size", default="360x640", help="HEIGHTxWIDTH (default 360x640)")
    video.add_argument("--fps", type=int, default=25, help="frames per second (default 25)")


def run(args):
    from edgecsp.validate import positive_int

    if args.kind == "shapes":
        from edgecsp.data.shapes import generate_dataset

        from edgecsp.errors import InputError

        positive_int(args.count, "--count")
        yolo = args.format == "yolo"
        if args.val and not yolo:
            raise InputError("--val names data.yaml's validation folder: add --format yolo")
        path = generate_dataset(args.out_dir, args.count, args.seed, _size(args.size) if args.size else None,
                                yolo=yolo, yolo_val=args.val)
        print("wrote {} images and {}".format(args.count, path))
        if yolo:
            print("YOLO layout: {}/labels/ and {}/data.yaml".format(args.out_dir.rstrip("/"),
                                                                    args.out_dir.rstrip("/")))
    else:
        from edgecsp.data.shapes import generate_video

        positive_int(args.frames, "--frames")
        gt = generate_video(args.path, args.frames, args.seed, _size(args.size), args.fps)
        print("wrote {} ({} frames) and ground truth {}".format(args.path, args.frames, gt))
    return 0
