"""``edgecsp build --target T model.onnx``: compile an exported ONNX into the target's artefact.

TensorRT targets (tx2, nano, xavier-nx, agx-xavier, orin, orin-jp5, x86-cuda) build their engine on the device: on
any other machine this writes a device bundle (a folder) and prints the command to run on the device. On the
device, ``--from-trtexec ENGINE BUNDLE`` writes the manifest of an engine the bundle's trtexec line built.
"""
import os

from edgecsp.cli.options import add, alias

# --flag -> TensorRT build option (edgecsp.backends.tensorrt.options.TensorRTOptions)
_TRT_OPTIONS = (("workspace", "workspace_mib"), ("calib", "calib"), ("input", "input_form"),
                ("calib_method", "calib_method"), ("calib_cache", "calib_cache"), ("dla_core", "dla_core"),
                ("max_batch", "max_batch"), ("fp32_tensor", "fp32_tensors"), ("timing_cache", "timing_cache"))
# --flag -> INT8 option of the cpu / cpu-ort targets (edgecsp.calibration.config.int8_options)
_INT8_OPTIONS = (("count", "calib_count"), ("seed", "calib_seed"), ("calib_every", "calib_every"),
                 ("max_drop", "max_drop"), ("data", "val_data"), ("images", "val_images"),
                 ("val_metric", "val_metric"), ("int8_preset", "int8_preset"))


def add_arguments(p):
    p.add_argument("onnx", help="ONNX model written by `edgecsp export` (on the device: a bundle folder)")
    p.add_argument("--target", "-t", help="deployment target (see `edgecsp targets`; default cpu, or with "
                                          "--from-trtexec the bundle's)")
    p.add_argument("--precision", "-p", help="fp32 | fp16 | int8 (default: the target's default)")
    p.add_argument("--input", choices=("uint8", "float"),
                   help="cpu / cpu-ort: what the artefact takes: uint8 (default) = the letterboxed uint8 HWC BGR "
                        "frame, the graph doing the channel swap, scaling and layout; float = the float32 NCHW "
                        "batch (TensorRT targets: float by default; uint8 is an opt-in for TensorRT 8.5+ targets, "
                        "never measured on a device)")
    p.add_argument("-o", "--output", help="output path, or an existing folder to write the default name into "
                                          "(default engines/<onnx stem>-<target>-<precision>[-dla<N>].<ext>, or "
                                          "...-bundle/ for a device bundle)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bundle", dest="mode", action="store_const", const="bundle",
                       help="write the device bundle even where the engine could be built here")
    where.add_argument("--device-build", dest="mode", action="store_const", const="here",
                       help="build the engine on this machine (the device); fail if it cannot")
    where.add_argument("--from-trtexec", metavar="ENGINE",
                       help="on the device: write ENGINE.json, the manifest `edgecsp infer` and `package` need, for "
                            "an engine trtexec built from the bundle folder given as the model (the trtexec line of "
                            "its build_on_device.sh); checks the engine's inputs and outputs against the bundle")
    p.set_defaults(mode="auto")
    trt = p.add_argument_group("TensorRT targets")
    trt.add_argument("--workspace", type=int, metavar="MIB", help="builder workspace in MiB (default 1024)")
    trt.add_argument("--calib", metavar="SOURCE",
                     help="calibration images (see the INT8 group) for INT8 and the FP16 range check")
    trt.add_argument("--calib-method", choices=("entropy", "minmax", "percentile"),
                     help="INT8 calibration (default entropy = TensorRT's EntropyCalibration2)")
    trt.add_argument("--calib-cache", metavar="FILE", help="reuse an earlier calibration: TensorRT targets take a "
                                                          "TensorRT cache or a bundle's .calibration.json")
    trt.add_argument("--allow-slow-int8", action="store_true",
                     help="build INT8 on targets without fast INT8 (tx2, nano), which edgecsp refuses by default")
    trt.add_argument("--dla-core", type=int, metavar="N", help="run on DLA core N with GPU fallback (Xavier, Orin)")
    trt.add_argument("--max-batch", type=int, metavar="N", help="largest batch of a dynamic-batch model (default 1)")
    trt.add_argument("--fp32-tensor", action="append", metavar="NAME",
                     help="also keep the layer writing tensor NAME in FP32 (repeatable)")
    trt.add_argument("--no-fp16-check", dest="fp16_check", action="store_false", default=None,
                     help="skip the FP16 range check on the calibration images")
    trt.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache (device; default next to engine)")
    int8 = p.add_argument_group("INT8 for cpu (OpenVINO + NNCF) and cpu-ort (ONNX Runtime QDQ)",
                                "--calib SOURCE: a folder of images, a video, a COCO annotations .json or shapes:SEED; "
                                "--calib-cache: the <artefact>.calibration.json of an earlier cpu-ort build")
    add(int8, "count", type=int, metavar="N", help="calibration images drawn from --calib (default 300)")
    alias(int8, "build", "--calib-count", "count")
    add(int8, "seed", type=int, metavar="S", help="seed of the calibration sampling (default 0)")
    alias(int8, "build", "--calib-seed", "seed")
    int8.add_argument("--calib-every", type=int, metavar="N",
                      help="video: take every Nth frame (default: spread --count frames over the video)")
    int8.add_argument("--max-drop", type=float, metavar="POINTS",
                      help="cpu: accuracy-controlled quantization; fail unless the mAP drop on --data is at "
                           "most POINTS (e.g. 0.5)")
    alias(int8, "build", "--val-data", "data")
    add(int8, "data", metavar="ANN.json", help="COCO annotations of the validation images "
                                                             "(not the calibration ones); measures the drop")
    alias(int8, "build", "--val-images", "images")
    add(int8, "images", metavar="DIR", help="folder of the validation images (default: the json's)")
    int8.add_argument("--int8-preset", choices=("performance", "mixed"),
                      help="cpu: NNCF preset: performance (default; symmetric activations, int8 through the CSP "
                           "splits) or mixed (asymmetric activations: slower, for activations far from zero-centred)")
    int8.add_argument("--val-metric", choices=("map50", "map50_95"),
                      help="what --max-drop bounds: mAP@0.5 (default) or mAP@0.5:0.95")


def build_options(args):
    """The backend options the user gave (only those: every other target takes none)."""
    options = dict((key, getattr(args, flag)) for flag, key in _TRT_OPTIONS + _INT8_OPTIONS
                   if getattr(args, flag) is not None)
    if args.allow_slow_int8:
        options["allow_slow_int8"] = True
    if args.fp16_check is False:
        options["fp16_check"] = False
    return options


def run(args):
    if args.from_trtexec:
        return _from_trtexec(args)
    from edgecsp.build import BuildConfig, build

    path = build(BuildConfig(onnx_path=args.onnx, target=args.target or "cpu", precision=args.precision,
                             output=args.output, mode=args.mode, options=build_options(args)))
    if os.path.isdir(path):
        print("wrote device bundle {}".format(path))
        readme = os.path.join(path, "README.txt")
        if os.path.isfile(readme):
            with open(readme) as handle:
                print(handle.read().rstrip())
    else:
        print("wrote {}".format(path))
        if args.precision == "int8":
            from edgecsp.backends import read_artefact_meta
            from edgecsp.build import int8_report

            for line in int8_report(read_artefact_meta(path)):
                print(line)
    return 0


def _from_trtexec(args):
    from edgecsp.backends.tensorrt import adopt_engine
    from edgecsp.backends.tensorrt.policy import sm_label
    from edgecsp.errors import InputError

    given = ["--" + flag.replace("_", "-") for flag, _ in _TRT_OPTIONS + _INT8_OPTIONS
             if getattr(args, flag) is not None]
    given += [flag for flag, value in (("--precision", args.precision), ("-o", args.output),
                                       ("--no-fp16-check", args.fp16_check is False)) if value]
    if given:
        raise InputError("--from-trtexec takes the engine, the bundle folder and --target only (the bundle says how "
                         "the engine was built): drop {}".format(" ".join(given)))
    adopted = adopt_engine(args.from_trtexec, args.onnx, target=args.target)
    record = adopted.manifest
    print("wrote {}: the manifest of {} (TensorRT {}, {} {}; its inputs and outputs match bundle {})".format(
        adopted.path, record.engine, record.tensorrt, record.gpu, sm_label(record.sm), args.onnx))
    print("now: edgecsp infer --engine {} video.mp4".format(args.from_trtexec))
    return 0
