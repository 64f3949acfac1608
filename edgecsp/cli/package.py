"""``edgecsp package --triton REPO ARTEFACT``: a Triton model repository that serves the artefact as it is;
``edgecsp package --deepstream DIR MODEL``: nvinfer and deepstream-app configs for a model decoded in the graph."""
from edgecsp._files import READS, READS_SPEC, WRITES, WRITES_INTO
from edgecsp.cli.options import add, alias, from_legacy, legacy_positional

# what package reads and writes (a model repository gets a new model folder beside the others), checked by the CLI
PATHS = (("engine", "--engine", READS), ("legacy", "ARTEFACT", READS), ("calib", "--calib", READS_SPEC), ("calib_cache", "--calib-cache", READS),
         ("triton", "--triton", WRITES_INTO), ("deepstream", "--deepstream", WRITES))


def add_arguments(p):
    legacy_positional(p, "ARTEFACT")
    add(p, "engine", help="--triton: an .onnx (onnxruntime backend), OpenVINO .xml (openvino backend) or "
                                    "TensorRT engine (tensorrt backend) built by `edgecsp build`; --deepstream: an "
                                    ".onnx exported with --decode-in-graph, or its TensorRT engine")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--triton", metavar="REPO",
                       help="model repository folder: writes REPO/<name>/config.pbtxt and REPO/<name>/1/<model files>")
    where.add_argument("--deepstream", metavar="DIR", help="new folder: config_infer_primary.txt, labels.txt, "
                       "deepstream_app_config.txt and the model (DeepStream-Yolo's NvDsInferParseYolo parser)")
    alias(p, "package", "--name", "model")
    add(p, "model", metavar="NAME", help="the model's name in the repository (default: the artefact's file stem)")
    p.add_argument("--max-batch", type=int, metavar="B", help="largest batch Triton's dynamic batcher forms "
                   "(dynamic-batch artefacts; default 8, at most a TensorRT engine's --max-batch)")
    p.add_argument("--instances", type=int, default=1, metavar="K", help="model instances (default 1)")
    p.add_argument("--force", action="store_true", help="replace an existing REPO/<name> or DIR (whole, once the "
                                                        "new one is complete); without it they are refused")
    ds = p.add_argument_group("--deepstream")
    ds.add_argument("--streams", type=int, default=1, metavar="N", help="camera/video streams batched (default 1)")
    ds.add_argument("--uri", help="source of the streams (default: DeepStream's sample video)")
    add(ds, "precision", choices=("fp32", "fp16", "int8"),
                    help="engine nvinfer builds from the ONNX (default: fp16, the Jetson's fast path)")
    ds.add_argument("--custom-lib", help="path of libnvdsinfer_custom_impl_Yolo.so on the device (default "
                                         "nvdsinfer_custom_impl_Yolo/libnvdsinfer_custom_impl_Yolo.so)")
    ds.add_argument("--calib", metavar="SOURCE", help="--precision int8: images the calibration cache "
                    "(DIR/calib.cache, int8-calib-file) is computed on: a folder, a video, a COCO json or shapes:SEED")
    add(ds, "count", type=int, metavar="N", help="images drawn from --calib (default 300)")
    ds.add_argument("--calib-cache", metavar="FILE", help="--precision int8: a TensorRT calibration cache of this "
                                                          "model to use as it is, instead of --calib")
    add(ds, "target", help="--precision int8 with --calib: the device (tx2, nano, xavier-nx, orin...) whose "
                                     "TensorRT version the cache is stamped for")


def run(args):
    from_legacy(args, "package")
    if args.deepstream:
        return _deepstream(args)
    given = [flag for flag, value in (("--calib", args.calib), ("--count", args.count),
                                      ("--calib-cache", args.calib_cache), ("--target", args.target)) if value]
    if given:
        from edgecsp.errors import InputError

        raise InputError("{} appl{} to --deepstream: Triton serves the artefact as it is".format(
            ", ".join(given), "ies" if len(given) == 1 else "y"))
    from edgecsp.serving.repository import package_triton
    from edgecsp.serving.triton_config import describe

    packaged = package_triton(args.triton, args.engine, name=args.model, max_batch=args.max_batch,
                              instances=args.instances, force=args.force)
    print("wrote {}: {}".format(packaged.folder, describe(packaged.config)))
    for path in packaged.files:
        print("  {}".format(path))
    return 0


def _deepstream(args):
    import os

    from edgecsp.calibration import DEFAULT_CALIB_COUNT, CalibrationConfig
    from edgecsp.serving.deepstream import CUSTOM_LIB, SAMPLE_URI, package_deepstream

    calib = None
    if args.calib:
        calib = CalibrationConfig(source=args.calib, count=args.count or DEFAULT_CALIB_COUNT)
    elif args.count is not None:
        from edgecsp.errors import InputError

        raise InputError("--count applies with --calib: pass the calibration images too")
    packaged = package_deepstream(args.deepstream, args.engine, streams=args.streams, uri=args.uri or SAMPLE_URI,
                                  precision=args.precision, custom_lib=args.custom_lib or CUSTOM_LIB,
                                  force=args.force, calib=calib, calib_cache=args.calib_cache, target=args.target)
    print("wrote {}: {} stream(s), {} classes (never run here: DeepStream runs on the device)".format(
        packaged.folder, args.streams, packaged.infer_config["num-detected-classes"]))
    for name in packaged.files:
        print("  {}".format(name))
    print("on the device: the steps are in {}".format(os.path.join(packaged.folder, "README.txt")))
    return 0
