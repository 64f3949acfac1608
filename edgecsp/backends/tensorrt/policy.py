"""Decisions about what to build where: precision policy, DLA, and whether this machine can build a target.

Pure functions over target records and probed facts, so every decision is tested without a GPU. Python 3.6.
"""
from typing import Optional

from edgecsp.backends.tensorrt.versions import version_in_range
from edgecsp.errors import UnsupportedError
from edgecsp.targets import check_precision, get_target

OVERRIDE_FLAG = "--allow-slow-int8"


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


def check_dla(target, dla_core, precision):
    # type: (...) -> Optional[int]
    """``dla_core`` when the target has DLA and the precision runs on it; UnsupportedError otherwise."""
    if dla_core is None:
        return None
    target = get_target(target)
    if not target.dla:
        with_dla = [t.name for t in _tensorrt_targets() if t.dla]
        raise UnsupportedError("target {} has no DLA cores: drop --dla-core (DLA targets: {})".format(
            target.name, ", ".join(with_dla)))
    if precision not in ("fp16", "int8"):
        raise UnsupportedError("DLA runs FP16 or INT8 only, not {}: use --precision fp16 with --dla-core".format(
            precision))
    if int(dla_core) < 0:
        raise UnsupportedError("--dla-core must be 0 or 1, got {}".format(dla_core))
    return int(dla_core)


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
        return "TensorRT is not installed on this machine"
    low, high = target.trt_version
    if not version_in_range(trt_version, low, high):
        where = " (JetPack {})".format(target.jetpack) if target.jetpack else ""
        span = low if low == high else "{} to {}".format(low, high)
        return "this machine has TensorRT {} but target {} runs TensorRT {}{}".format(
            trt_version, target.name, span, where)
    if sm is None:
        return "no CUDA GPU was found on this machine"
    if target.sm and str(sm) != target.sm:
        return "this GPU is {} but target {} is {}".format(sm_label(sm), target.name, sm_label(target.sm))
    return None
