"""``edgecsp`` command line: each subcommand parses its options into a config object and makes one library call.

Needs only numpy to print ``--help``: command modules import heavy packages inside ``run``.
Exit codes are those of ``edgecsp.errors.EXIT_CODES`` (README, "Exit codes").
"""
import argparse
import importlib
import signal
import sys

from edgecsp import __version__
from edgecsp._files import check_paths
from edgecsp.errors import EXIT_CODES, EdgeCSPError, Terminated
from edgecsp.validate import printable

# subcommand -> module in edgecsp.cli; each has add_arguments(parser) and run(args) -> int, and a module whose
# library call does not check its paths itself declares them: PATHS = ((argument, flag, role), ...) (edgecsp._files)
COMMANDS = (
    ("models", "list the model registry with parameters and GFLOPs"),
    ("targets", "list deployment targets (devices and backends)"),
    ("export", "export a registry model / model card to ONNX with metadata, simplified and verified"),
    ("build", "build a deployable artefact for a target from an exported ONNX"),
    ("infer", "run an artefact on a video, image, folder or camera"),
    ("data", "generate the synthetic 'shapes' dataset or a test video with ground truth"),
    ("eval", "mAP of an artefact on COCO-annotated images, against a baseline, with a JSON report and chart"),
    ("compare", "run two artefacts on the same inputs and compare their outputs (differences, NaN/Inf)"),
    ("bench", "latency, throughput and per-stage times of an artefact, against baselines run side by side"),
    ("package", "write a Triton model repository (onnxruntime, openvino, tensorrt) or DeepStream configs for an "
                "artefact"),
    ("serve", "run an artefact on a real Triton server here (python backend, dynamic batching)"),
)


def build_parser():
    epilog = "exit codes: " + "; ".join("{} {}".format(code, text) for code, text in EXIT_CODES)
    parser = argparse.ArgumentParser(prog="edgecsp", epilog=epilog,
                                     description="Take trained CSP detectors to the edge: ONNX, OpenVINO, TensorRT.")
    parser.add_argument("--version", action="version", version="edgecsp " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS:
        module = importlib.import_module("edgecsp.cli." + name)
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _paths=getattr(module, "PATHS", ()))
    return parser


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup of the first short
    raise Terminated()


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM; the one it replaces (None where signals cannot be set: not the main
    thread)."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def main(argv=None):
    """Run the CLI in-process; returns the exit code (tests call this directly)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    # SIGTERM stops a command as Ctrl-C does: every staged output is deleted on the way out (`edgecsp serve`
    # installs its own handler, a clean stop, while it serves)
    previous = _on_sigterm(_terminate)
    try:
        check_paths(args, args._paths)  # no output may replace what the command reads
        return int(args._run(args) or 0)
    except EdgeCSPError as exc:
        # one line, whatever the message carries from outside input (cfg text, file names, metadata values)
        sys.stderr.write("edgecsp {}: error: {}\n".format(args.command, printable(exc)))
        return exc.exit_code
    except Terminated:
        sys.stderr.write("edgecsp {}: terminated\n".format(args.command))
        return Terminated.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("edgecsp {}: interrupted\n".format(args.command))
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. `edgecsp infer ... | head`): not an error worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            _on_sigterm(previous)


def entry_point():
    sys.exit(main())
