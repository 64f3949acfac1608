"""``edgecsp compare --engine A --baseline B``: run two artefacts on the same inputs; do they find the same objects?

Prints the matched boxes per class, A's mAP against B's detections taken as ground truth and the raw output
differences. Exit code 0 when A's mAP@0.5 against B reaches ``--min-map`` (and, with ``--tensors`` or
``--atol``/``--rtol``, every raw output is within those tolerances) and no output holds a NaN/Inf; 6
(VerificationError) otherwise, after printing the tables. The policy is ``edgecsp.evaluation.compare``'s.
"""
import argparse

from edgecsp._files import READS_SPEC, WRITES
from edgecsp.backends import artefact_help
from edgecsp.cli.options import add, alias

# what compare reads and writes: the CLI checks that --report replaces none of it (edgecsp._files.check_paths)
PATHS = (("engine", "--engine", READS_SPEC), ("baseline", "--baseline", READS_SPEC), ("source", "--source", READS_SPEC),
         ("report", "--report", WRITES), ("legacy", "A B", READS_SPEC))


def add_arguments(p):
    add(p, "engine", help="the artefact under test: " + artefact_help())
    add(p, "baseline", help="the reference, e.g. the FP32 build of the same model, or torch:CARD.json (the PyTorch "
                        "model before export, at A's input size; torch:MODEL|CFG,WEIGHTS too)")
    # defaults (None here) are edgecsp.evaluation.compare's, which `edgecsp --help` does not import
    alias(p, "compare", "--data", "source")
    add(p, "source", help="inputs: a folder of images, a video, a COCO json, an image or shapes:SEED "
                                  "(default shapes:0)")
    # `compare A B` (the positional form of earlier releases): still read, not shown
    p.add_argument("legacy", nargs="*", help=argparse.SUPPRESS)
    add(p, "count", type=int, metavar="N", help="images drawn from --source (default 32)")
    add(p, "seed", type=int, default=0, metavar="S", help="seed of the sampling from --source")
    p.add_argument("--min-map", type=float, help="pass when A's mAP@0.5 against B's detections (taken as ground "
                                                 "truth) is at least this (default 0.95)")
    add(p, "conf", type=float, help="score a box needs to count as B's ground truth and in the matching "
                                              "(default 0.25)")
    p.add_argument("--tensors", action="store_true",
                   help="also fail when a raw output differs beyond --atol/--rtol (implied by either)")
    p.add_argument("--atol", type=float, help="absolute tolerance of the raw-tensor check (default 1e-3)")
    p.add_argument("--rtol", type=float, help="relative tolerance of the raw-tensor check (default 1e-3)")
    add(p, "threads", type=int, help="inference threads (default: the backend's)")
    alias(p, "compare", "--json", "report")
    add(p, "report", metavar="FILE", help="write the comparison as JSON")


def run(args):
    from edgecsp._files import write_json_atomic
    from edgecsp.evaluation.compare import compare_artefacts, format_compare, require_agreement
    from edgecsp.validate import positive_int

    given = dict((key, value) for key, value in (("count", args.count), ("conf", args.conf),
                                                 ("min_map", args.min_map)) if value is not None)
    if args.count is not None:
        positive_int(args.count, "--count")
    engine, baseline = _artefacts(args)
    result = compare_artefacts(engine, baseline, args.source, atol=args.atol, rtol=args.rtol, seed=args.seed,
                               threads=args.threads, tensors=args.tensors, **given)
    print(format_compare(result))
    if args.report:
        write_json_atomic(args.report, result.to_dict())
    require_agreement(result)
    return 0


def _artefacts(args):
    """(engine, baseline): the options, or the two positionals of earlier releases (`compare A B`)."""
    from edgecsp.errors import InputError

    if args.legacy:
        if len(args.legacy) != 2 or args.engine or args.baseline:
            raise InputError("compare takes --engine A --baseline B (got {}): name both with their options".format(
                " ".join(args.legacy)))
        import sys

        sys.stderr.write("edgecsp: note: `compare A B` is now `compare --engine A --baseline B` (the positional "
                         "form goes in the next release)\n")
        args.engine, args.baseline = args.legacy
    if not args.engine or not args.baseline:
        raise InputError("compare needs --engine A (the artefact under test) and --baseline B (the reference)")
    return args.engine, args.baseline
