"""The one exception root of edgecsp and its few subclasses.

Every subclass carries the process exit code the CLI returns for it; the table is documented in README.md.
A bug is not an EdgeCSPError: it keeps its traceback.
"""


class EdgeCSPError(Exception):
    """Something the user can fix; the message says what is wrong and how to fix it, in one line."""

    exit_code = 1


class InputError(EdgeCSPError):
    """A file, folder, source or option the user gave is missing, unreadable or invalid."""

    exit_code = 3


class MissingDependency(EdgeCSPError):
    """An optional package is not installed; the message names the extra or JetPack package."""

    exit_code = 4


class MetadataError(EdgeCSPError):
    """A model artefact lacks the edgecsp metadata the runtime needs, or it is malformed."""

    exit_code = 5


class VerificationError(EdgeCSPError):
    """An exported or built artefact does not match its source within tolerance."""

    exit_code = 6


class UnsupportedError(EdgeCSPError):
    """A target, precision, operator or option combination that edgecsp cannot handle."""

    exit_code = 7


class ServerError(EdgeCSPError):
    """An inference server could not be reached, could not start, or answered a request with an error."""

    exit_code = 8


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, systemd, Kubernetes) while a command runs: it stops as on Ctrl-C (outputs
    staged so far are deleted), and the CLI exits with ``exit_code`` (128 + 15). Not an EdgeCSPError: a signal,
    not a mistake."""

    exit_code = 143


EXIT_CODES = [
    (0, "success"),
    (1, "other edgecsp error"),
    (2, "command-line usage error (argparse)"),
    (InputError.exit_code, "bad input: missing/unreadable file, source, folder or option value"),
    (MissingDependency.exit_code, "an optional package is missing (message names the pip extra)"),
    (MetadataError.exit_code, "artefact without (valid) edgecsp metadata"),
    (VerificationError.exit_code, "parity check failed (export/simplify/build outputs differ)"),
    (UnsupportedError.exit_code, "unsupported target, precision, operator or combination"),
    (ServerError.exit_code, "an inference server is unreachable, did not start or failed a request"),
    (130, "interrupted (Ctrl-C)"),
    (Terminated.exit_code, "terminated (SIGTERM: docker stop, systemd, Kubernetes); nothing half-written is left"),
    (141, "stdout closed early (broken pipe)"),
]
