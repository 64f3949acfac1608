"""``edgecsp package --triton REPO ARTEFACT``: a Triton model repository that serves the artefact as it is;
``edgecsp package --deepstream DIR MODEL``: nvinfer and deepstream-app configs for a model decoded in the graph."""
from edgecsp._files import READS, WRITES, WRITES_INTO

# what package reads and writes (a model repository gets a new model folder beside the others), checked by the CLI
PATHS = (("artefact", "ARTEFACT", READS), ("triton", "--triton", WRITES_INTO), ("deepstream", "--deepstream", WRITES))


def add_arguments(p):
    p.add_argument("artefact", help="--triton: an .onnx (onnxruntime backend), OpenVINO .xml (openvino backend) or "
                                    "TensorRT engine (tensorrt backend) built by `edgecsp build`; --deepstream: an "
                                    ".onnx exported with --decode-in-graph, or its TensorRT engine")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--triton", metavar="REPO",
                       help="model repository folder: writes REPO/<name>/config.pbtxt and REPO/<name>/1/<model files>")
    where.add_argument("--deepstream", metavar="DIR", help="new folder: config_infer_primary.txt, labels.txt, "
                       "deepstream_app_config.txt and the model (DeepStream-Yolo's NvDsInferParseYolo parser)")
    p.add_argument("--name", help="model name (default: the artefact's file stem)")
    p.add_argument("--max-batch", type=int, metavar="B", help="largest batch Triton's dynamic batcher forms "
                   "(dynamic-batch artefacts; default 8, at most a TensorRT engine's --max-batch)")
    p.add_argument("--instances", type=int, default=1, metavar="K", help="model instances (default 1)")
    ds = p.add_argument_group("--deepstream")
    ds.add_argument("--streams", type=int, default=1, metavar="N", help="camera/video streams batched (default 1)")
    ds.add_argument("--uri", help="source of the streams (default: DeepStream's sample video)")
    ds.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                    help="engine nvinfer builds from the ONNX (default: fp16, the Jetson's fast path)")
    ds.add_argument("--custom-lib", help="path of libnvdsinfer_custom_impl_Yolo.so on the device (default "
                                         "nvdsinfer_custom_impl_Yolo/libnvdsinfer_custom_impl_Yolo.so)")


def run(args):
    if args.deepstream:
        return _deepstream(args)
    from edgecsp.serving.repository import package_triton
    from edgecsp.serving.triton_config import describe

    packaged = package_triton(args.triton, args.artefact, name=args.name, max_batch=args.max_batch,
                              instances=args.instances)
    print("wrote {}: {}".format(packaged.folder, describe(packaged.config)))
    for path in packaged.files:
        print("  {}".format(path))
    return 0


def _deepstream(args):
    from edgecsp.serving.deepstream import CUSTOM_LIB, SAMPLE_URI, package_deepstream

    packaged = package_deepstream(args.deepstream, args.artefact, streams=args.streams, uri=args.uri or SAMPLE_URI,
                                  precision=args.precision, custom_lib=args.custom_lib or CUSTOM_LIB)
    print("wrote {}: {} stream(s), {} classes (never run here: DeepStream runs on the device)".format(
        packaged.folder, args.streams, packaged.infer_config["num-detected-classes"]))
    for name in packaged.files:
        print("  {}".format(name))
    print("on the device: build DeepStream-Yolo's parser library, then `deepstream-app -c "
          "deepstream_app_config.txt` in {}".format(packaged.folder))
    return 0
