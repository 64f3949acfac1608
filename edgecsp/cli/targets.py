"""``edgecsp targets``: the deployment targets, which are data records (edgecsp/targets.py)."""
import json


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args):
    from edgecsp.targets import list_targets

    targets = list_targets()
    if args.json:
        print(json.dumps([t._asdict() for t in targets], indent=2, default=str))
        return 0
    print("{:<10} {:<12} {:<14} {:<8} {}".format("target", "backend", "precisions", "default", "description"))
    for t in targets:
        print("{:<10} {:<12} {:<14} {:<8} {}".format(t.name, t.backend, ",".join(t.precisions), t.default_precision,
                                                     t.description))
    return 0
