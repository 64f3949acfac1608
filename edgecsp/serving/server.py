"""Start and stop a real Triton Inference Server (``tritonserver``) on a model repository.

Where the server comes from, first found wins: ``tritonserver=`` / ``--tritonserver PATH``, ``$EDGECSP_TRITONSERVER``,
the server that the ``nvidia-pytriton`` wheel ships (``pytriton/tritonserver``: Triton 2.51 with the python
backend only; edgecsp finds it without importing pytriton, whose numpy<2 pin edgecsp does not share), then
``tritonserver`` on PATH or ``/opt/tritonserver`` (NGC containers, JetPack's Triton release). The python
backend's stub links ``libpython3.X.so``: the serving Python must be built with a shared libpython.
"""
import errno
import importlib.util
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import NamedTuple, Optional

from edgecsp.errors import InputError, MissingDependency, ServerError, UnsupportedError
from edgecsp.validate import non_negative_int, number_in, positive_int, printable, shown

ENV = "EDGECSP_TRITONSERVER"
INSTALL_HINT = ("install a Triton server: `pip install --no-deps nvidia-pytriton==0.7.0` (its server, python backend "
                "only), pass --tritonserver PATH or set $EDGECSP_TRITONSERVER")
READY_TIMEOUT_S = 90.0
MAX_RESTARTS = 3  # a server that ends on its own is started again this often within RESTART_WINDOW_S...
RESTART_WINDOW_S = 600.0  # ...and one more end in that window stops `edgecsp serve` (ServerError, exit code 8)
# What a client may not call without a header value that is random per start (Triton's restricted APIs).
# Triton 2.51's HTTP frontend sizes a JSON infer request's buffer from the shape it claims before anything checks
# that shape against the config (one request claiming [1000000000, 256, 256, 3] aborts the server with
# std::bad_alloc; [100000, 256, 256, 3] makes it zero 19.6 GB), and its JSON parser recurses (a body of a million
# '[' on /v2/repository/index segfaults it). gRPC checks a request's shape, batch, dtype and byte size against the
# config before it allocates, so inference is over gRPC; HTTP keeps health, metadata, config and statistics, which
# read no body. Shared memory, logging and trace change what the server does and no edgecsp client uses them.
HTTP_RESTRICTED = ("inference", "model-repository", "shared-memory", "logging", "trace")
GRPC_RESTRICTED = ("shared-memory", "logging", "trace")
RESTRICTED_HEADER = "edgecsp-restricted"


class ServerInstall(NamedTuple):
    binary: str  # tritonserver
    backends: str  # its --backend-directory
    stubs: Optional[str] = None  # pytriton's python_backend_stubs/ (one stub per Python version), if separate


def find_tritonserver(explicit=None):
    # type: (Optional[str]) -> ServerInstall
    """The Triton server to run (see the module docstring); MissingDependency when there is none."""
    candidate = explicit or os.environ.get(ENV)
    if candidate:
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            raise InputError("{} is not an executable tritonserver: {}".format(candidate, INSTALL_HINT))
        return _install_of(candidate)
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        root = os.path.join(list(spec.submodule_search_locations)[0], "tritonserver")
        binary = os.path.join(root, "bin", "tritonserver")
        if os.path.isfile(binary):
            return ServerInstall(binary, os.path.join(root, "backends"), os.path.join(root, "python_backend_stubs"))
    for binary in (shutil.which("tritonserver"), "/opt/tritonserver/bin/tritonserver"):
        if binary and os.path.isfile(binary):
            return _install_of(binary)
    raise MissingDependency("no Triton server found: " + INSTALL_HINT)


def _install_of(binary):
    root = os.path.dirname(os.path.dirname(os.path.abspath(binary)))
    stubs = os.path.join(root, "python_backend_stubs")
    return ServerInstall(binary, os.path.join(root, "backends"), stubs if os.path.isdir(stubs) else None)


def python_version_tag():
    return "{}.{}".format(*sys.version_info[:2])


def backend_directory(install, scratch):
    """A backend directory whose python backend has the stub of this Python: pytriton keeps one stub per Python
    version beside the backend, so edgecsp assembles ``scratch/backends/python`` from links to its files."""
    python_dir = os.path.join(install.backends, "python")
    if install.stubs is None or os.path.isfile(os.path.join(python_dir, "triton_python_backend_stub")):
        return install.backends
    stub = os.path.join(install.stubs, python_version_tag(), "triton_python_backend_stub")
    if not os.path.isfile(stub):
        raise UnsupportedError("the Triton server at {} has no python backend stub for Python {} (it has {}): run "
                               "edgecsp serve with one of those".format(install.binary, python_version_tag(),
                                                                       ", ".join(sorted(os.listdir(install.stubs)))))
    target = os.path.join(scratch, "backends", "python")
    os.makedirs(target)
    for name in os.listdir(python_dir):
        os.symlink(os.path.join(python_dir, name), os.path.join(target, name))
    os.symlink(stub, os.path.join(target, "triton_python_backend_stub"))
    return os.path.join(scratch, "backends")


def server_environment(base=None):
    """The server's environment: this Python's libpython in LD_LIBRARY_PATH, which the python backend stub links.
    (The stub ignores PYTHONPATH: the model finds edgecsp through ``python_paths`` in its config instead.)"""
    env = dict(os.environ if base is None else base)
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise UnsupportedError("this Python ({}) has no shared libpython, which Triton's python backend stub links: "
                               "serve from a Python built with --enable-shared (Debian's, pyenv with "
                               "PYTHON_CONFIGURE_OPTS=--enable-shared)".format(sys.executable))
    libdir = sysconfig.get_config_var("LIBDIR")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH")) if p)
    return env


def python_paths():
    """This process's import path, edgecsp's own folder first: what the served model needs to import edgecsp,
    numpy and the runtimes inside the stub."""
    import edgecsp

    paths = [os.path.dirname(os.path.dirname(os.path.abspath(edgecsp.__file__)))]
    return paths + [p for p in sys.path if p and os.path.isdir(p) and p not in paths]


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_host(host):
    # type: (str) -> str
    """``host`` when this machine can listen on it (an IPv4 address or a name of one); InputError otherwise."""
    try:
        free_port(host)
    except (OSError, UnicodeError, TypeError, ValueError) as exc:
        raise InputError("--host {} cannot be listened on ({}): pass 127.0.0.1 (the default), 0.0.0.0 for every "
                         "interface or an IPv4 address of this machine".format(
                             shown(host), getattr(exc, "strerror", None) or exc))
    return host


def check_port(port, what):
    # type: (object, str) -> int
    return int(number_in(positive_int(port, what), what, 1, 65535))


def is_loopback(host):
    # type: (str) -> bool
    """Whether ``host`` (checked by ``check_host``) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def exposure_warning(host, http_port, grpc_port):
    # type: (str, object, object) -> Optional[str]
    """One line for stderr when ``host`` is not loopback: who can reach the server and how to protect it."""
    if is_loopback(host):
        return None
    return ("listening on {}: anyone who reaches gRPC port {} or HTTP port {} can run the model, with no "
            "authentication and no TLS: serve on the default --host 127.0.0.1 behind a reverse proxy with TLS and "
            "authentication or an SSH tunnel, or firewall the ports to trusted clients".format(
                printable(host), grpc_port, http_port))


def check_port_free(host, port, what):
    """ServerError when something already listens on ``host:port`` (it would answer the readiness check)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:  # EACCES for a port below 1024, EADDRNOTAVAIL for a foreign host
                raise InputError("{} {}:{} cannot be listened on ({}): pass a port above 1023 and --host 127.0.0.1 "
                                 "or an address of this machine".format(what, shown(host), port, exc.strerror or exc))
            raise ServerError("{} {}:{} is taken ({}): pass another {} or stop what listens there".format(
                what, host, port, exc.strerror or exc, what))


def check_log_path(path):
    # type: (str) -> str
    """``path`` when the server's log can be written there (its folder exists); InputError otherwise. The log is
    appended to, so an existing file keeps what it holds."""
    text = str(path)
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise InputError("--log {} is a folder: pass a file in it, e.g. {}".format(
            shown(text), shown(os.path.join(text, "server.log"))))
    if not os.path.isdir(folder):
        raise InputError("--log {}: its folder {} does not exist or is not a folder: create it or pass another "
                         "--log".format(shown(text), shown(folder)))
    return text


def _stop_with_parent():
    """In the server's child process (Linux): SIGTERM it when the process that started it dies, so that a killed
    `edgecsp serve` or test run leaves no server holding its ports."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux/glibc: stop() still ends it on every normal exit


def server_command(install, repository, backends, host, http_port, grpc_port, secret):
    """``secret``: the header value that unlocks HTTP_RESTRICTED / GRPC_RESTRICTED (nobody is given it)."""
    restricted = ":{}={}".format(RESTRICTED_HEADER, secret)
    return [install.binary, "--model-repository", repository, "--backend-directory", backends,
            "--http-address", host, "--http-port", str(http_port), "--grpc-address", host,
            "--grpc-port", str(grpc_port), "--allow-metrics", "false", "--allow-gpu-metrics", "false",
            "--http-restricted-api", ",".join(HTTP_RESTRICTED) + restricted,
            "--grpc-restricted-protocol", ",".join(GRPC_RESTRICTED) + restricted,
            "--exit-on-error", "true", "--strict-readiness", "true", "--log-verbose", "0"]


def last_error(log_text):
    """The server log's last error line (Triton's ``E<date>`` lines), shortened for a one-line message."""
    errors = [line for line in log_text.splitlines() if line.startswith("E") or "error" in line.lower()]
    line = (errors or [line for line in log_text.splitlines() if line.strip()] or ["(no output)"])[-1]
    return line.strip()[:300]


def crash_cause(log_text):
    # type: (str) -> Optional[str]
    """What a crashed server's log says about why (C++'s ``what():`` line...), or None (a kill says nothing)."""
    for marker in ("what():", "terminate called", "Signal ("):
        lines = [line.strip() for line in log_text.splitlines() if line.lstrip().startswith(marker)]
        if lines:
            return lines[-1][:300].rstrip(".")
    return None


def describe_exit(returncode):
    # type: (int) -> str
    """'signal 6 (SIGABRT)' or 'exit code 1'."""
    if returncode < 0:
        try:
            return "signal {} ({})".format(-returncode, signal.Signals(-returncode).name)
        except ValueError:
            return "signal {}".format(-returncode)
    return "exit code {}".format(returncode)


class TritonServer(object):
    """``with TritonServer(repository) as server:`` a running server on ``server.grpc_url`` / ``http_url``;
    stopped (and its scratch folder removed) on exit. Ports: free ones unless given. ``log_path``: where the
    server's log is appended (default: a file in the scratch folder)."""

    def __init__(self, repository, host="127.0.0.1", http_port=None, grpc_port=None, tritonserver=None,
                 timeout=READY_TIMEOUT_S, log_path=None):
        self.repository = os.path.abspath(str(repository))
        self.host = check_host(host)
        self.http_port = check_port(http_port, "--http-port") if http_port is not None else None
        self.grpc_port = check_port(grpc_port, "--grpc-port") if grpc_port is not None else None
        self.install = find_tritonserver(tritonserver)
        self.timeout = float(timeout)
        self.log_path = check_log_path(log_path) if log_path is not None else None
        self.process = None
        self._scratch = None
        self._backends = None
        self._log = None
        self._log_mark = 0

    @property
    def grpc_url(self):
        return "grpc://{}:{}".format(self.host, self.grpc_port)

    @property
    def http_url(self):
        return "http://{}:{}".format(self.host, self.http_port)

    @property
    def log(self):
        """The path of the server's log (the scratch one is removed with the server: see ``keep_log``)."""
        return self.log_path or (os.path.join(self._scratch, "server.log") if self._scratch else None)

    def start(self):
        env = server_environment()
        for port, what in ((self.http_port, "--http-port"), (self.grpc_port, "--grpc-port")):
            if port:
                check_port_free(self.host, port, what)
        try:
            self._log = open(self.log_path, "a") if self.log_path else None
        except OSError as exc:
            raise InputError("cannot write the server's log to --log {} ({}): pass a file in a writable "
                             "folder".format(shown(self.log_path), exc.strerror or exc))
        try:  # from here on, anything that fails removes what start made (scratch folder, log handle, process)
            self._scratch = tempfile.mkdtemp(prefix="edgecsp-triton-")
            self._backends = backend_directory(self.install, self._scratch)
            if self._log is None:
                self._log = open(self.log, "w")
            self.http_port = self.http_port or free_port(self.host)
            self.grpc_port = self.grpc_port or free_port(self.host)
            self._launch(env)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, env):
        command = server_command(self.install, self.repository, self._backends, self.host, self.http_port,
                                 self.grpc_port, secrets.token_hex(16))
        self._log.flush()
        self._log_mark = self._log.tell()  # where this run's log starts (a --log file may hold earlier ones)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=_stop_with_parent if sys.platform.startswith("linux") else None)
        self._wait_ready()

    def restart(self):
        """Start the server again after its process ended: same repository, ports and log (appended to)."""
        if self.process is None or self._scratch is None:
            raise RuntimeError("restart() needs a server that was started")
        if self.process.poll() is None:
            raise RuntimeError("restart() needs a server whose process ended")
        try:
            self._launch(server_environment())
        except ServerError as exc:
            log = self.keep_log()
            self.stop()
            raise ServerError("{}; its log: {}".format(exc, log))
        except BaseException:
            self.stop()
            raise
        return self

    def _log_text(self, tail=1 << 16):
        """The last ``tail`` bytes of this run's log (what explains how it ended), as text."""
        self._log.flush()
        with open(self.log, "rb") as handle:
            handle.seek(max(self._log_mark, os.fstat(handle.fileno()).st_size - tail))
            return handle.read().decode("utf-8", "replace")

    def _wait_ready(self):
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + self.timeout
        url = self.http_url + "/v2/health/ready"
        while True:
            if self.process.poll() is not None:
                raise ServerError("the Triton server exited ({}) before it was ready: {}".format(
                    describe_exit(self.process.returncode), last_error(self._log_text())))
            try:
                with urllib.request.urlopen(url, timeout=1.0) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerError("the Triton server was not ready after {:.0f} s: {}".format(
                    self.timeout, last_error(self._log_text())))
            time.sleep(0.2)

    def keep_log(self):
        """The log's path once the server has stopped: the ``log_path`` given, else a copy of the scratch log
        in the temp folder (``edgecsp-crash-*.log``), kept for the user to read."""
        if self.log_path or self._scratch is None:
            return self.log_path
        import uuid

        from edgecsp._files import write_bytes_atomic

        self._log.flush()
        path = os.path.join(tempfile.gettempdir(), "edgecsp-crash-{}-{}.log".format(os.getpid(), uuid.uuid4().hex[:8]))
        with open(self.log, "rb") as handle:
            return write_bytes_atomic(path, handle.read())

    def serve_until(self, stop, report=None, restarts=MAX_RESTARTS, window_s=RESTART_WINDOW_S, poll_s=0.5):
        """Serve until ``stop`` (a ``threading.Event``) is set. A server process that ends on its own (a crash,
        a kill) is ``report``ed in one line and started again; the ``restarts + 1``-th end within ``window_s``
        seconds raises ServerError naming a log that is kept."""
        restarts = non_negative_int(restarts, "--restarts")
        ends = []
        while not stop.wait(poll_s):
            if self.process.poll() is None:
                continue
            now = time.monotonic()
            ends = [t for t in ends if now - t < window_s] + [now]
            cause = crash_cause(self._log_text())
            why = describe_exit(self.process.returncode) + (": " + cause if cause else "")
            if len(ends) > restarts and len(ends) == 1:
                raise ServerError("the Triton server stopped on its own ({}): see its log {}; --restarts N starts "
                                  "it again".format(why, self.keep_log()))
            if len(ends) > restarts:
                raise ServerError("the Triton server stopped on its own {} times within {:.0f} s, last with {}: "
                                  "see its log {}".format(len(ends), window_s, why, self.keep_log()))
            if report is not None:
                report("the Triton server stopped on its own ({}); restarting it ({} of at most {} within "
                       "{:.0f} s; log: {})".format(why, len(ends), restarts, window_s, self.log))
            self.restart()
            if report is not None:
                report("the Triton server is ready again at {} (pid {})".format(self.grpc_url, self.process.pid))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
