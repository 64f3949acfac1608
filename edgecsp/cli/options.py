"""One spelling per meaning across the commands (Polygraphy's shared argument groups are the model).

``VOCABULARY`` is the table: each meaning, its one spelling, the argparse ``dest`` it fills and the commands that
take it. Command modules add those options with ``add(parser, key, ...)`` so that the spelling, the ``dest`` and the
metavar come from here; the README's option table is ``markdown_table()`` and ``tests/cli/test_vocabulary.py``
fails when a command spells a meaning of the table another way, or when the README's table is not this one.

Spellings that an earlier release used stay accepted for one release as hidden aliases (``alias``): they are not in
``--help``, they fill the same ``dest`` and print a one-line note on stderr naming the new spelling.
"""
import argparse
import sys
from collections import OrderedDict, namedtuple

Option = namedtuple("Option", "flags dest meaning commands")

VOCABULARY = OrderedDict([
    ("engine", Option(("--engine", "-e"), "engine",
                      "the artefact to run: .onnx, .xml (OpenVINO IR), .engine/.trt/.plan (TensorRT; its .json "
                      "manifest beside it), or torch:MODEL for the PyTorch model before export where noted",
                      ("infer", "eval", "compare", "bench", "package", "serve"))),
    ("baseline", Option(("--baseline", "-b"), "baseline",
                        "the reference artefact the first is measured against (e.g. the FP32 build)",
                        ("eval", "compare"))),
    ("data", Option(("--data", "-d"), "data", "COCO annotations (.json) with the ground truth to score mAP on",
                    ("eval", "build"))),
    ("images", Option(("--images",), "images", "folder of the images of --data (default: the json's folder)",
                      ("eval", "build"))),
    ("source", Option(("--source",), "source",
                      "the frames to run on: a folder of images, a video, a COCO .json, an image or shapes:SEED "
                      "(infer takes its sources as positional arguments)", ("compare",))),
    ("target", Option(("--target", "-t"), "target", "the deployment target (`edgecsp targets`)",
                      ("build", "package"))),
    ("calib", Option(("--calib",), "calib",
                     "calibration images: a folder, a video, a COCO .json or shapes:SEED",
                     ("build", "package"))),
    ("count", Option(("--count",), "count",
                     "how many images: generated (data) or drawn from the source / --calib",
                     ("data", "compare", "build", "package"))),
    ("seed", Option(("--seed",), "seed", "random seed of that generation or draw", ("data", "compare", "build"))),
    ("report", Option(("--report",), "report", "write the command's report as JSON to FILE",
                      ("eval", "compare", "bench"))),
    ("model", Option(("--model",), "model", "the model's name on a Triton server (package, serve: the name to give)",
                     ("infer", "bench", "package", "serve"))),
    ("server", Option(("--server",), "server", "a Triton server URL to run the network on instead of a local artefact",
                      ("infer", "bench"))),
    ("output", Option(("-o", "--output"), "output", "the file or folder the command writes", ("export", "build"))),
    ("precision", Option(("--precision", "-p"), "precision", "fp32, fp16 or int8", ("build", "package"))),
    ("conf", Option(("--conf",), "conf", "score threshold of a detection", ("infer", "eval", "compare"))),
    ("iou", Option(("--iou",), "iou", "NMS IoU threshold", ("infer", "eval"))),
    ("max_det", Option(("--max-det",), "max_det", "detections kept per image", ("infer", "eval"))),
    ("threads", Option(("--threads",), "threads", "inference threads (default: the backend's)",
                       ("infer", "eval", "compare", "bench"))),
    ("in_flight", Option(("--in-flight",), "in_flight", "inference requests running at once", ("infer", "bench"))),
    ("max_frames", Option(("--max-frames",), "max_frames", "stop after this many frames", ("infer", "bench"))),
    ("no_progress", Option(("--no-progress",), "no_progress", "no progress bar", ("infer", "eval"))),
    ("save_json", Option(("--save-json",), "save_json", "write the detections per frame as JSON lines to FILE",
                         ("infer",))),
])

# earlier spellings, accepted for one release: (command, old flag) -> vocabulary key
ALIASES = OrderedDict()


def spelling(key):
    """The canonical long flag of a meaning (``--engine``)."""
    return [f for f in VOCABULARY[key].flags if f.startswith("--")][0]


def add(parser, key, **kwargs):
    """Add the option ``key`` of ``VOCABULARY`` to ``parser`` (or a group) with its flags and dest."""
    option = VOCABULARY[key]
    kwargs.setdefault("dest", option.dest)
    return parser.add_argument(*option.flags, **kwargs)


class _Alias(argparse.Action):
    """A hidden earlier spelling: stores into the new option's dest and says the new spelling on stderr."""

    def __init__(self, option_strings, dest, new=None, append=False, **kwargs):
        self.new, self.append = new, append
        super(_Alias, self).__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stderr.write("edgecsp: note: {} is now spelled {} (the old spelling goes in the next release)\n".format(
            option_string, self.new))
        target = [a for a in parser._actions if self.new in a.option_strings]
        if target and target[0].type is not None:  # converted and checked as the new spelling is
            values = parser._get_value(target[0], values)
        if self.append:  # a repeatable option: one more value
            values = list(getattr(namespace, self.dest, None) or []) + [values]
        setattr(namespace, self.dest, values)


def alias(parser, command, old, key, append=False, **kwargs):
    """Accept ``old`` as a hidden spelling of the vocabulary option ``key`` (``append``: it is repeatable)."""
    ALIASES[(command, old)] = spelling(key)
    return parser.add_argument(old, dest=VOCABULARY[key].dest, action=_Alias, new=spelling(key), append=append,
                               help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


def markdown_table():
    """The README's option table: one row per meaning."""
    rows = ["| option | meaning | commands |", "|---|---|---|"]
    for option in VOCABULARY.values():
        rows.append("| {} | {} | {} |".format(", ".join("`{}`".format(f) for f in option.flags), option.meaning,
                                              ", ".join(option.commands)))
    return "\n".join(rows)


def legacy_positional(parser, what):
    """The positional artefact(s) of earlier releases, still read but not shown (see ``from_legacy``)."""
    return parser.add_argument("legacy", nargs="*", metavar=what, help=argparse.SUPPRESS)


def from_legacy(args, command, many=False):
    """``args.engine`` from ``--engine`` or, with a note, from the positional form of earlier releases."""
    from edgecsp.errors import InputError

    legacy = list(getattr(args, "legacy", None) or [])
    given = args.engine if many else ([args.engine] if args.engine else [])
    if legacy:
        if given:
            raise InputError("{} takes its artefact{} as --engine only: drop {}".format(
                command, "s" if many else "", " ".join(legacy)))
        if not many and len(legacy) > 1:
            raise InputError("{} takes one artefact (--engine), got {}".format(command, " ".join(legacy)))
        sys.stderr.write("edgecsp: note: `{} ARTEFACT` is now `{} --engine ARTEFACT` (the positional form goes in "
                         "the next release)\n".format(command, command))
        given = legacy
    if not given:
        raise InputError("{} needs --engine ARTEFACT{}".format(command, " (repeat it for several)" if many else ""))
    args.engine = given if many else given[0]
    return args.engine
