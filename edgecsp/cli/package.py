"""``edgecsp package --triton REPO ARTEFACT``: a Triton model repository that serves the artefact as it is."""


def add_arguments(p):
    p.add_argument("artefact", help="an .onnx (onnxruntime backend), OpenVINO .xml (openvino backend) or TensorRT "
                                    "engine (tensorrt backend) built by `edgecsp build`")
    p.add_argument("--triton", metavar="REPO", required=True,
                   help="model repository folder: writes REPO/<name>/config.pbtxt and REPO/<name>/1/<model files>")
    p.add_argument("--name", help="model name (default: the artefact's file stem)")
    p.add_argument("--max-batch", type=int, metavar="B", help="largest batch Triton's dynamic batcher forms "
                   "(dynamic-batch artefacts; default 8, at most a TensorRT engine's --max-batch)")
    p.add_argument("--instances", type=int, default=1, metavar="K", help="model instances (default 1)")


def run(args):
    from edgecsp.serving.repository import package_triton
    from edgecsp.serving.triton_config import describe

    packaged = package_triton(args.triton, args.artefact, name=args.name, max_batch=args.max_batch,
                              instances=args.instances)
    print("wrote {}: {}".format(packaged.folder, describe(packaged.config)))
    for path in packaged.files:
        print("  {}".format(path))
    return 0
