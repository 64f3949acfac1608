"""Decisions about what to build where: precision policy, DLA, and whether this machine can build a target.

Pure functions over target records and probed facts, so every decision is tested without a GPU. Python 3.6.
"""
from typing import Optional

from edgecsp.backends.tensorrt.versions import major_minor, parse_version, version_in_range
from edgecsp.errors import UnsupportedError
from edgecsp.targets import check_precision, get_target
from edgecsp.validate import ascii_digits

OVERRIDE_FLAG = "--allow-slow-int8"
# TensorRT major.minor on a Jetson -> the JetPack (and L4T) release that ships it (NVIDIA's JetPack archive).
# JetPack 4.6 itself is L4T r32.6.1 with TensorRT 8.0.1; TensorRT 8.2.1 came with JetPack 4.6.1 (L4T r32.7.1).
JETPACKS = {(8, 0): "JetPack 4.6 (L4T r32.6.1)", (8, 2): "JetPack 4.6.1-4.6.6 (L4T r32.7.x)",
            (8, 4): "JetPack 5.0.2 (L4T r35.1)", (8, 5): "JetPack 5.1.x (L4T r35.2-r35.6)",
            (8, 6): "JetPack 6.0 (L4T r36.3)", (10, 3): "JetPack 6.1/6.2 (L4T r36.4)"}


def sm_label(sm):
    # type: (Optional[str]) -> str
    """``"6.2"`` -> ``"sm_62"``, the spelling CUDA and NVIDIA's tables use."""
    return "sm_" + str(sm).replace(".", "") if sm else "an unknown GPU"


def int8_refusal(target):
    # type: (...) -> str
    """Why INT8 is refused on a target without fast INT8, with the FP16 alternative and the override."""
    target = get_target(target)
    alternative = "fp16" if "fp16" in target.precisions else target.default_precision
    return ("INT8 for {name} is refused: its GPU ({sm}) has no fast INT8 kernels, so an INT8 engine runs no "
            "faster than {alt_upper} while losing accuracy to quantization; build {alt_upper} instead "
            "(--precision {alt}), or pass {flag} (allow_slow_int8=True) to build INT8 anyway").format(
                name=target.name, sm=sm_label(target.sm), alt=alternative, alt_upper=alternative.upper(),
                flag=OVERRIDE_FLAG)


def check_precision_policy(target, precision=None, allow_slow_int8=False):
    # type: (...) -> str
    """The precision to build (the target's default for None); UnsupportedError for refused combinations.

    INT8 on a target without fast INT8 (tx2, nano) is refused unless ``allow_slow_int8``.
    """
    target = get_target(target)
    precision = check_precision(target, precision)
    if precision == "int8" and not target.fast_int8 and not allow_slow_int8:
        raise UnsupportedError(int8_refusal(target))
    return precision


UINT8_INPUT_SINCE = (8, 5)  # tensorrt.DataType.UINT8 (network inputs/outputs) first appears in TensorRT 8.5


def check_input_form(target, input_form, precision):
    # type: (...) -> str
    """The input form of a TensorRT build: float NCHW unless ``--input uint8`` is asked for (an opt-in until it
    is measured on a device). UnsupportedError where TensorRT has no uint8 inputs (8.2 on JetPack 4.6: tx2,
    nano) and for INT8 (the calibrators feed float batches)."""
    from edgecsp.onnxio import input_form_of
    from edgecsp.runtime.meta import FLOAT_NCHW, UINT8_NHWC_BGR

    form = input_form_of(input_form, default="float")
    if form == FLOAT_NCHW:
        return form
    target = get_target(target)
    lowest = target.trt_version[0] if target.trt_version else "0"
    if major_minor(lowest) < UINT8_INPUT_SINCE:
        raise UnsupportedError("--input uint8 needs TensorRT 8.5 or newer (uint8 network inputs), but {} runs "
                               "TensorRT {}: build with --input float (the default)".format(target.name, lowest))
    if precision == "int8":
        raise UnsupportedError("--input uint8 is not supported with TensorRT INT8 yet (the calibrators feed float "
                               "batches): build int8 with --input float, or fp16 with --input uint8")
    return UINT8_NHWC_BGR


def check_dla(target, dla_core, precision):
    # type: (...) -> Optional[int]
    """``dla_core`` when the target has DLA and the precision runs on it; UnsupportedError otherwise."""
    if dla_core is None:
        return None
    target = get_target(target)
    if not target.dla_cores:
        with_dla = [t.name for t in _tensorrt_targets() if t.dla_cores]
        raise UnsupportedError("target {} has no DLA cores: drop --dla-core (DLA targets: {})".format(
            target.name, ", ".join(with_dla)))
    if precision not in ("fp16", "int8"):
        raise UnsupportedError("DLA runs FP16 or INT8 only, not {}: use --precision fp16 with --dla-core".format(
            precision))
    core = int(dla_core) if not isinstance(dla_core, bool) and ascii_digits(str(dla_core)) else -1
    if not 0 <= core < target.dla_cores:
        raise UnsupportedError("target {} has {} DLA cores: --dla-core must be {}, got {}".format(
            target.name, target.dla_cores, " or ".join(str(c) for c in range(target.dla_cores)), dla_core))
    return core


def _tensorrt_targets():
    from edgecsp.targets import list_targets

    return [t for t in list_targets() if t.trt_version]


def device_mismatch(target, trt_version, sm):
    # type: (...) -> Optional[str]
    """Why engines for ``target`` cannot be built on a machine with ``trt_version`` and GPU ``sm`` (None: they can).

    ``trt_version`` None means TensorRT is not installed, ``sm`` None that no CUDA GPU was found.
    """
    target = get_target(target)
    if not target.trt_version:
        return "target {} is not a TensorRT target".format(target.name)
    if trt_version is None:
        return "TensorRT is not installed on this machine (on a Jetson: sudo apt-get install python3-libnvinfer)"
    low, high = target.trt_version
    if not version_in_range(trt_version, low, high):
        span = low if low == high else "{} to {}".format(low, high)
        if not target.jetpack:
            return "this machine has TensorRT {} but target {} runs TensorRT {}".format(trt_version, target.name, span)
        found = JETPACKS.get(major_minor(trt_version))
        return ("this machine has TensorRT {}{} but target {} runs TensorRT {} (JetPack {}+, L4T {}.x): {}".format(
            trt_version, " ({})".format(found) if found else "", target.name, span, target.jetpack, target.l4t,
            upgrade_hint(target, trt_version, sm)))
    if sm is None:
        return "no CUDA GPU was found on this machine"
    if target.sm and str(sm) != target.sm:
        return "this GPU is {} but target {} is {}".format(sm_label(sm), target.name, sm_label(target.sm))
    return None


def upgrade_hint(target, trt_version, sm=None):
    # type: (...) -> str
    """What to do on a Jetson whose TensorRT is not the target's: pick the target for its JetPack (those for this
    GPU, ``sm``, when it is known and some match: an Orin on JetPack 5.1 gets orin-jp5, not the Xaviers), or
    upgrade JetPack when the device's TensorRT is older than the target's."""
    matching = [t for t in _tensorrt_targets() if t.jetpack and version_in_range(trt_version, *t.trt_version)]
    matching = [t.name for t in ([t for t in matching if sm is not None and t.sm == str(sm)] or matching)]
    use = "use the target for this JetPack ({})".format(", ".join(matching)) if matching else ""
    if parse_version(trt_version) < parse_version(target.trt_version[0]):
        if target.jetpack and target.jetpack.startswith("4."):
            upgrade = ("upgrade to JetPack {} or later (an over-the-air update within L4T r32: sudo apt update && "
                       "sudo apt dist-upgrade, then reboot); edgecsp does not build for TensorRT 8.0".format(
                           target.jetpack))
        else:
            upgrade = "upgrade the device to JetPack {} or later".format(target.jetpack)
        return use + ", or " + upgrade if use else upgrade
    return use or "this TensorRT is newer than edgecsp's Jetson records: build for x86-cuda or add a target record"


def check_device_calibration(method):
    # type: (str) -> str
    """``method`` if TensorRT itself can calibrate with it on the device; UnsupportedError for percentile."""
    if method == "percentile":
        raise UnsupportedError("percentile calibration is edgecsp's own (its histograms run on the host, through ONNX "
                               "Runtime); TensorRT on the device has no percentile calibrator: calibrate on the host "
                               "(write the bundle with --calib there), or use --calib-method entropy or minmax")
    return method
