"""Start and stop a real Triton Inference Server (``tritonserver``) on a model repository.

Where the server comes from, first found wins: ``tritonserver=`` / ``--tritonserver PATH``, ``$EDGECSP_TRITONSERVER``,
the server that the ``nvidia-pytriton`` wheel ships (``pytriton/tritonserver``: Triton 2.51 with the python
backend only; edgecsp finds it without importing pytriton, whose numpy<2 pin edgecsp does not share), then
``tritonserver`` on PATH or ``/opt/tritonserver`` (NGC containers, JetPack's Triton release). The python
backend's stub links ``libpython3.X.so``: the serving Python must be built with a shared libpython.
"""
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import NamedTuple, Optional

from edgecsp.errors import InputError, MissingDependency, ServerError, UnsupportedError
from edgecsp.validate import positive_int

ENV = "EDGECSP_TRITONSERVER"
INSTALL_HINT = ("install a Triton server: `pip install --no-deps nvidia-pytriton==0.7.0` (its server, python backend "
                "only), pass --tritonserver PATH or set $EDGECSP_TRITONSERVER")
READY_TIMEOUT_S = 90.0


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


def check_port_free(host, port, what):
    """ServerError when something already listens on ``host:port`` (it would answer the readiness check)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServerError("{} {}:{} is taken ({}): pass another {} or stop what listens there".format(
                what, host, port, exc.strerror or exc, what))


def _stop_with_parent():
    """In the server's child process (Linux): SIGTERM it when the process that started it dies, so that a killed
    `edgecsp serve` or test run leaves no server holding its ports."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux/glibc: stop() still ends it on every normal exit


def server_command(install, repository, backends, host, http_port, grpc_port):
    return [install.binary, "--model-repository", repository, "--backend-directory", backends,
            "--http-address", host, "--http-port", str(http_port), "--grpc-address", host,
            "--grpc-port", str(grpc_port), "--allow-metrics", "false", "--allow-gpu-metrics", "false",
            "--exit-on-error", "true", "--strict-readiness", "true", "--log-verbose", "0"]


def last_error(log_text):
    """The server log's last error line (Triton's ``E<date>`` lines), shortened for a one-line message."""
    errors = [line for line in log_text.splitlines() if line.startswith("E") or "error" in line.lower()]
    line = (errors or [line for line in log_text.splitlines() if line.strip()] or ["(no output)"])[-1]
    return line.strip()[:300]


class TritonServer(object):
    """``with TritonServer(repository) as server:`` a running server on ``server.grpc_url`` / ``http_url``;
    stopped (and its scratch folder removed) on exit. Ports: free ones unless given."""

    def __init__(self, repository, host="127.0.0.1", http_port=None, grpc_port=None, tritonserver=None,
                 timeout=READY_TIMEOUT_S, log_path=None):
        self.repository = os.path.abspath(str(repository))
        self.host = host
        self.http_port = positive_int(http_port, "--http-port") if http_port is not None else None
        self.grpc_port = positive_int(grpc_port, "--grpc-port") if grpc_port is not None else None
        self.install = find_tritonserver(tritonserver)
        self.timeout = float(timeout)
        self.log_path = log_path
        self.process = None
        self._scratch = None
        self._log = None

    @property
    def grpc_url(self):
        return "grpc://{}:{}".format(self.host, self.grpc_port)

    @property
    def http_url(self):
        return "http://{}:{}".format(self.host, self.http_port)

    def start(self):
        env = server_environment()
        for port, what in ((self.http_port, "--http-port"), (self.grpc_port, "--grpc-port")):
            if port:
                check_port_free(self.host, port, what)
        self._scratch = tempfile.mkdtemp(prefix="edgecsp-triton-")
        try:
            backends = backend_directory(self.install, self._scratch)
        except BaseException:
            self.stop()
            raise
        self.http_port = self.http_port or free_port(self.host)
        self.grpc_port = self.grpc_port or free_port(self.host)
        log_path = self.log_path or os.path.join(self._scratch, "server.log")
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(server_command(self.install, self.repository, backends, self.host,
                                                       self.http_port, self.grpc_port),
                                        stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=_stop_with_parent if sys.platform.startswith("linux") else None)
        self._wait_ready(log_path)
        return self

    def _wait_ready(self, log_path):
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + self.timeout
        url = self.http_url + "/v2/health/ready"
        while True:
            if self.process.poll() is not None:
                text = open(log_path).read()
                self.stop()
                raise ServerError("the Triton server exited ({}) before it was ready: {}".format(
                    self.process.returncode, last_error(text)))
            try:
                with urllib.request.urlopen(url, timeout=1.0) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                text = open(log_path).read()
                self.stop()
                raise ServerError("the Triton server was not ready after {:.0f} s: {}".format(
                    self.timeout, last_error(text)))
            time.sleep(0.2)

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
