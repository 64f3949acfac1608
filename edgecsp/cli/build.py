"""``edgecsp build --target T model.onnx``: compile an exported ONNX into the target's artefact."""


def add_arguments(p):
    p.add_argument("onnx", help="ONNX model written by `edgecsp export`")
    p.add_argument("--target", "-t", default="cpu", help="deployment target (see `edgecsp targets`; default cpu)")
    p.add_argument("--precision", "-p", help="fp32 | fp16 (default: the target's default)")
    p.add_argument("-o", "--output", help="output path (default engines/<onnx stem>-<target>-<precision>.<ext>)")


def run(args):
    from edgecsp.build import BuildConfig, build

    path = build(BuildConfig(onnx_path=args.onnx, target=args.target, precision=args.precision, output=args.output))
    print("wrote {}".format(path))
    return 0
