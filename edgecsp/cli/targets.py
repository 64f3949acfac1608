"""``edgecsp targets``: the deployment targets, which are data records (edgecsp/targets.py)."""
import json

_ROW = "{:<11} {:<11} {:<15} {:<7} {:<13} {:<6} {:<19} {:<7} {}"


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _trt(t):
    if not t.trt_version:
        return "-"
    low, high = t.trt_version
    return low if low == high else "{}-{}".format(low, high)


def _hardware(t):
    if not t.trt_version:
        return "cpu"
    flags = [name for name, on in (("fp16", t.fast_fp16), ("int8", t.fast_int8), ("dla", t.dla_cores)) if on]
    return ("sm_" + t.sm.replace(".", "") if t.sm else "any") + (" " + "+".join(flags) if flags else "")


def run(args):
    from edgecsp.targets import list_targets

    targets = list_targets()
    if args.json:
        print(json.dumps([t._asdict() for t in targets], indent=2, default=str))
        return 0
    print(_ROW.format("target", "backend", "precisions", "default", "tensorrt", "python", "gpu", "jetpack",
                      "description"))
    for t in targets:
        print(_ROW.format(t.name, t.backend, ",".join(t.precisions), t.default_precision, _trt(t), t.device_python,
                          _hardware(t), t.jetpack or "-", t.description))
    return 0
