"""``edgecsp models``: the registry with parameter counts and GFLOPs at the default input size."""
import json


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-flops", action="store_true", help="skip the (slower) FLOPs count")


def run(args):
    from edgecsp.models import list_models

    rows = [model_summary(entry, flops=not args.no_flops) for entry in list_models()]
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


def model_summary(entry, flops=True):
    """One registry row: name, task, default input, parameters (M), GFLOPs, the paper's parameters."""
    from edgecsp.models import create_model
    from edgecsp.models.complexity import count_flops, count_params

    model = create_model(entry.name).eval()
    return {"name": entry.name, "family": entry.family, "task": entry.task, "input_size": list(entry.input_size),
            "params_m": count_params(model) / 1e6,
            "gflops": count_flops(model, entry.input_size) if flops else None,
            "paper_params_m": entry.paper_params_m or None, "description": entry.description}
