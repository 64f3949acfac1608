"""The ``trtexec`` line equivalent to an edgecsp device build, per TensorRT version (pure, Python 3.6).

trtexec's flags changed across releases; the table below is the data: TensorRT 8.2 takes ``--workspace=MiB``,
8.4/8.5 ``--memPoolSize=workspace:MiB``, 8.6+ and 10 accept a unit (``workspace:1024M``). Per-layer precision
(``--layerPrecisions``) arrived with 8.4; on 8.2 only the edgecsp build can keep layers in FP32.
"""
import shlex
from typing import Sequence

from edgecsp.backends.tensorrt.versions import major_minor

# (lowest TensorRT major.minor, workspace flag template); the last entry at or below a version applies
WORKSPACE_FLAGS = (((8, 0), "--workspace={mib}"),
                   ((8, 4), "--memPoolSize=workspace:{mib}"),
                   ((8, 6), "--memPoolSize=workspace:{mib}M"))
LAYER_PRECISIONS_SINCE = (8, 4)
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack and NVIDIA's containers install it


def workspace_flag(trt_version, mib):
    # type: (str, int) -> str
    version = major_minor(trt_version)
    template = [flag for since, flag in WORKSPACE_FLAGS if since <= version][-1]
    return template.format(mib=int(mib))


def supports_layer_precisions(trt_version):
    # type: (str) -> bool
    return major_minor(trt_version) >= LAYER_PRECISIONS_SINCE


def _shape(name, dims):
    return "{}:{}".format(name, "x".join(str(int(d)) for d in dims))


TRTEXEC_CALIBRATOR = "EntropyCalibration2"  # the calibrator trtexec's --calib cache is read by


def int8_problem(calib_cache, cache_algorithm):
    # type: (...) -> str
    """Why no equivalent trtexec line can build this INT8 engine ("" when one can).

    Without a cache, ``trtexec --int8`` uses placeholder dynamic ranges (meant for timing, not accuracy); with a
    cache whose header names another algorithm (MinMax, or edgecsp's percentile written as MinMax), trtexec's
    EntropyCalibration2 calibrator does not take it. Either way its engine would be wrong, not just different.
    """
    if not calib_cache:
        return ("trtexec --int8 without a calibration cache uses placeholder dynamic ranges, not calibrated ones: "
                "its engine would run but detect badly")
    if cache_algorithm != TRTEXEC_CALIBRATOR:
        return ("this bundle's calibration cache is {} but trtexec reads caches with its {} calibrator, so it would "
                "not use these scales".format(cache_algorithm, TRTEXEC_CALIBRATOR))
    return ""


def trtexec_args(onnx, engine, trt_version, precision, workspace_mib, calib_cache=None, fp32_layers=(),
                 dla_core=None, timing_cache=None, input_name=None, input_shape=None, max_batch=1,
                 executable="trtexec"):
    """The argument list of a trtexec build matching edgecsp's (same precision, workspace, cache, DLA, shapes).

    ``fp32_layers`` are ONNX node names (TensorRT layer names); they are dropped where trtexec cannot pin
    layers (8.2). A dynamic batch dimension gets a 1..``max_batch`` profile.
    """
    args = [executable, "--onnx=" + onnx, "--saveEngine=" + engine]
    if precision in ("fp16", "int8"):
        args.append("--fp16")  # INT8 builds keep FP16 for the layers without INT8 kernels, as edgecsp does
    if precision == "int8":
        args.append("--int8")
        if calib_cache:
            args.append("--calib=" + calib_cache)
    args.append(workspace_flag(trt_version, workspace_mib))
    if input_name and input_shape and input_shape[0] is None and all(d for d in input_shape[1:]):
        rest = [int(d) for d in input_shape[1:]]
        args += ["--minShapes=" + _shape(input_name, [1] + rest),
                 "--optShapes=" + _shape(input_name, [max_batch] + rest),
                 "--maxShapes=" + _shape(input_name, [max_batch] + rest)]
    if fp32_layers and precision != "fp32" and supports_layer_precisions(trt_version):
        args += ["--precisionConstraints=obey",
                 "--layerPrecisions=" + ",".join("{}:fp32".format(n) for n in fp32_layers),
                 "--layerOutputTypes=" + ",".join("{}:fp32".format(n) for n in fp32_layers)]
    if dla_core is not None:
        args += ["--useDLACore={}".format(int(dla_core)), "--allowGPUFallback"]
    if timing_cache:
        args.append("--timingCacheFile=" + timing_cache)
    return args


def format_command(args):
    # type: (Sequence[str]) -> str
    """``args`` as one shell line, quoted where needed."""
    return " ".join(shlex.quote(str(a)) for a in args)
