"""``edgecsp export``: registry model (+ checkpoint), model card or darknet cfg + weights -> simplified, verified
ONNX with metadata."""
from edgecsp.validate import size_hw as _size  # HEIGHTxWIDTH


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("model", nargs="?", help="registry model name (see `edgecsp models`)")
    src.add_argument("--card", help="model card JSON (e.g. models/shapes_tiny_csp.json): model + weights + classes")
    src.add_argument("--darknet", nargs=2, metavar=("CFG", "WEIGHTS"),
                     help="import a darknet model: its .cfg and .weights (AlexeyAB darknet layout)")
    src.add_argument("--onnx", metavar="MODEL.onnx",
                     help="import an ONNX exported elsewhere (Ultralytics, YOLOX, YOLOv7, RTMDet, PP-PicoDet...): its "
                          "output layout is recognised, or given with --layout")
    p.add_argument("--names", help="class names, one per line (e.g. coco.names); darknet default class0..classN-1")
    meta = p.add_argument_group("metadata for --onnx, when the layout is not recognised (heads in output order)")
    meta.add_argument("--layout", help="output layout (see README, 'Bring your own detector'): yolo_raw, detections, "
                                       "anchor_free, anchor_decoded, yolox_raw, dets_labels, dist_points, gfl")
    meta.add_argument("--param", action="append", metavar="KEY=VALUE",
                      help="a parameter of --layout (VALUE in JSON), repeatable")
    meta.add_argument("--columns", help="--layout detections: what each column holds, e.g. x1,y1,x2,y2,score,class")
    meta.add_argument("--channel-order", choices=("RGB", "BGR"), help="the network's channel order")
    meta.add_argument("--scale", type=float, help="input = (pixel * scale - mean) / std (e.g. 0.00392 or 1)")
    meta.add_argument("--mean", help="per-channel mean after scaling, e.g. 123.675,116.28,103.53")
    meta.add_argument("--std", help="per-channel std after scaling, e.g. 58.395,57.12,57.375")
    meta.add_argument("--pad-position", choices=("center", "top_left"), help="where the letterbox puts the image")
    meta.add_argument("--pad-value", type=int, help="letterbox padding grey level (default 114)")
    meta.add_argument("--anchors", help="w,h pairs per head, heads separated by ';', e.g. "
                                        "\"23,27,37,58,81,82; 81,82,135,169,344,319\"")
    meta.add_argument("--strides", help="comma-separated stride per output (default: input size / grid size)")
    meta.add_argument("--scale-x-y", type=float, help="darknet scale_x_y of the heads (default 1.0)")
    meta.add_argument("--new-coords", action="store_true", help="yolov4-csp / scaled-YOLOv4 box decoding")
    meta.add_argument("--activated", action="store_true", help="the outputs already went through the logistic")
    meta.add_argument("--no-letterbox", action="store_true", help="the model expects a plain resize, not letterbox")
    p.add_argument("--checkpoint", "--weights", dest="checkpoint",
                   help="state_dict .pt for the registry model (loaded with weights_only=True)")
    p.add_argument("-o", "--output", help="output .onnx (default engines/<model>-<H>x<W>-op<opset>.onnx)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset: 13 for TensorRT 8.2 (TX2/Nano, default), "
                                                         "17 for TensorRT 8.5/8.6")
    p.add_argument("--input-size", help="HEIGHTxWIDTH (default: the model's; multiple of 32)")
    p.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic")
    p.add_argument("--decode-in-graph", action="store_true",
                   help="append the YOLO decode: one (N, M, 6) output of x1,y1,x2,y2,score,class in input pixels, "
                        "the layout DeepStream-Yolo's NvDsInferParseYolo reads (for `edgecsp package --deepstream`; "
                        "edgecsp's own runtime runs the export without it)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--no-verify", action="store_true", help="skip the PyTorch vs ONNX Runtime parity check")


def run(args):
    if args.onnx:
        if args.decode_in_graph:
            from edgecsp.errors import InputError

            raise InputError("--decode-in-graph applies to models edgecsp exports (registry, --card, --darknet): "
                             "attach the metadata first, then export the model itself with --decode-in-graph")
        return _attach(args)
    from edgecsp.export.onnx_export import ExportConfig, export

    config = ExportConfig(model=args.model, checkpoint=args.checkpoint, card=args.card, output=args.output,
                          opset=args.opset, input_size=_size(args.input_size) if args.input_size else None,
                          batch=args.batch, dynamic_batch=args.dynamic_batch, simplify=not args.no_simplify,
                          verify=not args.no_verify, darknet_cfg=args.darknet[0] if args.darknet else None,
                          darknet_weights=args.darknet[1] if args.darknet else None, names_file=args.names,
                          decode_in_graph=args.decode_in_graph)
    report = export(config, log=print)
    print("wrote {} (opset {}, {}{}{:.1f} s)".format(
        report.path, report.opset,
        "{} -> {} nodes, ".format(report.nodes_raw, report.nodes_simplified) if config.simplify else
        "{} nodes, not simplified, ".format(report.nodes_raw),
        "PyTorch vs ONNX Runtime max |diff| {:.2g} on outputs up to {:.3g}, ".format(
            report.torch_vs_ort_max_abs, report.reference_max_abs) if config.verify else "not verified, ",
        report.seconds))
    return 0


# `edgecsp export --onnx` options that describe the imported model: layout options (the layout's export_options)
# and preprocessing overrides (ModelMeta fields)
_LAYOUT_OPTIONS = ("anchors", "strides", "scale_x_y", "new_coords", "activated", "columns")
_PREPROCESS = (("channel_order", "channel_order"), ("scale", "scale"), ("mean", "mean"), ("std", "std"),
               ("pad_position", "pad_position"), ("pad_value", "pad_value"))


def _numbers(text, flag, count=None, cast=float):
    from edgecsp.errors import InputError

    try:
        values = [cast(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or (count and len(values) != count):
        raise InputError("{} {!r} is not a comma-separated list of {}numbers".format(
            flag, str(text)[:60], "{} ".format(count) if count else ""))
    return values


def _param(text):
    """``KEY=VALUE`` (VALUE as bounded, finite JSON when it parses, else the string itself)."""
    from edgecsp.errors import EdgeCSPError, InputError
    from edgecsp.runtime.schema import parse_json
    from edgecsp.validate import shown

    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise InputError("--param {} is not KEY=VALUE (VALUE in JSON, e.g. --param reg_max=7)".format(shown(text, 60)))
    try:
        return key.strip(), parse_json(value, "--param " + key.strip(), "", max_bytes=1 << 16)
    except EdgeCSPError:
        return key.strip(), value


def _attach(args):
    from edgecsp.export.attach import AttachConfig, attach_metadata

    options = {}
    for name in _LAYOUT_OPTIONS:
        value = getattr(args, name, None)
        if value not in (None, False):
            options[name] = value
    if "strides" in options:
        options["strides"] = _numbers(options["strides"], "--strides", cast=int)
    params = dict(_param(p) for p in args.param or ())
    preprocess = dict((field, getattr(args, dest)) for dest, field in _PREPROCESS if getattr(args, dest) is not None)
    for field, count in (("mean", 3), ("std", 3)):
        if field in preprocess:
            preprocess[field] = _numbers(preprocess[field], "--" + field, count)
    if args.no_letterbox:
        preprocess["letterbox"] = False
    path, meta = attach_metadata(AttachConfig(
        onnx_path=args.onnx, names_file=args.names, output=args.output, layout=args.layout, options=options,
        params=params,
        preprocess=preprocess, input_size=_size(args.input_size) if args.input_size else None,
        simplify=not args.no_simplify, verify=not args.no_verify), log=print)
    print("wrote {} (layout {}, {} classes, input {}x{})".format(path, meta.layout, meta.num_classes,
                                                                 *meta.input_size))
    return 0
