"""``edgecsp models``: the registry with parameter counts and GFLOPs at the default input size.

The figures are stored (``edgecsp.models.catalog``, checked against the registry by the tests), so listing the
models needs neither torch nor a forward pass of each.
"""
import json


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-flops", action="store_true", help="leave the GFLOPs out")


def run(args):
    from edgecsp.models.catalog import catalog, summary

    rows = [summary(row, flops=not args.no_flops) for row in catalog()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("{:<22} {:<9} {:>9} {:>9} {:>8} {:>9}  {}".format(
        "model", "task", "input", "params M", "GFLOPs", "paper M", "description"))
    for r in rows:
        print("{:<22} {:<9} {:>9} {:>9.2f} {:>8} {:>9}  {}".format(
            r["name"], r["task"], "{}x{}".format(*r["input_size"]), r["params_m"],
            "-" if r["gflops"] is None else "{:.2f}".format(r["gflops"]),
            "{:.2f}".format(r["paper_params_m"]) if r["paper_params_m"] else "-", r["description"]))
    return 0
