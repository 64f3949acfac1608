"""``edgecsp compare A B``: run two artefacts on the same inputs and compare their raw outputs.

Exit code 0 when every output is within ``--atol``/``--rtol`` and free of NaN/Inf, 6 (VerificationError)
otherwise, after printing the table.
"""
from edgecsp._files import READS, READS_SPEC, WRITES
from edgecsp.backends import artefact_help

# what compare reads and writes: the CLI checks that --json replaces none of it (edgecsp._files.check_paths)
PATHS = (("a", "A", READS), ("b", "B", READS), ("data", "--data", READS_SPEC), ("json", "--json", WRITES))


def add_arguments(p):
    p.add_argument("a", help="first artefact: " + artefact_help())
    p.add_argument("b", help="second artefact, e.g. the FP32 build of the same model")
    p.add_argument("--data", default="shapes:0",
                   help="inputs: a folder of images, a video, a COCO json, an image or shapes:SEED (default shapes:0)")
    p.add_argument("--count", type=int, default=8, help="images drawn from --data (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling from --data")
    p.add_argument("--atol", type=float, default=1e-3, help="absolute tolerance (default 1e-3)")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default 1e-3)")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--json", help="write the comparison as JSON")


def run(args):
    from edgecsp._files import write_json_atomic
    from edgecsp.errors import VerificationError
    from edgecsp.evaluation.compare import compare_artefacts, format_compare
    from edgecsp.validate import positive_int

    positive_int(args.count, "--count")
    result = compare_artefacts(args.a, args.b, args.data, atol=args.atol, rtol=args.rtol, count=args.count,
                               seed=args.seed, threads=args.threads)
    print(format_compare(result))
    if args.json:
        write_json_atomic(args.json, result.to_dict())
    if not result.passed:
        bad = [o.name for o in result.outputs if not o.passed]
        raise VerificationError("{} and {} differ beyond atol {:g} / rtol {:g}{} in output(s) {}".format(
            args.a, args.b, result.atol, result.rtol,
            " or produce NaN/Inf" if any(o.nonfinite_a or o.nonfinite_b for o in result.outputs) else "",
            ", ".join(bad)))
    return 0
