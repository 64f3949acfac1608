"""How edgecsp gets onto the device: a pure-Python wheel of the running edgecsp, and the JetPack install steps.

The wheel is written from the package files themselves (no setuptools, no source tree, no network): JetPack
4.6's pip 9.0.1 installs a ``py3-none-any`` wheel on Python 3.6, while ``pip install`` of edgecsp's source needs
setuptools >= 61, which has no Python 3.6 release. The archive is reproducible (sorted entries, fixed times):
the same edgecsp gives the same bytes. The install steps are data, one record per JetPack major release.
"""
import base64
import hashlib
import os
import textwrap
import zipfile
from typing import List, NamedTuple, Optional, Tuple

from edgecsp import __version__

NAME = "edgecsp"
# what pyproject.toml's [project] says (a test holds them equal): pip 9 reads these from the wheel's METADATA
SUMMARY = ("Take trained CSP (CSPNet) detectors to the edge: PyTorch/darknet -> ONNX -> TensorRT (Jetson) or "
           "OpenVINO (Intel CPU), with a thin numpy runtime.")
REQUIRES_PYTHON = ">=3.6"
REQUIRES = ("numpy",)
LICENSE = "Apache-2.0"
ENTRY_POINTS = (("edgecsp", "edgecsp.cli:entry_point"),)
TAG = "py3-none-any"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the archive does not depend on when it was built


def wheel_name(version=__version__):
    # type: (str) -> str
    return "{}-{}-{}.whl".format(NAME, version, TAG)


def package_files(package_dir=None):
    # type: (Optional[str]) -> List[Tuple[str, str]]
    """``(name in the wheel, path)`` of every file of the edgecsp package (no bytecode, no hidden files)."""
    import edgecsp

    package_dir = package_dir or os.path.dirname(os.path.abspath(edgecsp.__file__))
    root = os.path.dirname(package_dir)
    found = []
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(folder, name)
            found.append((os.path.relpath(path, root).replace(os.sep, "/"), path))
    return found


def _metadata(version):
    lines = ["Metadata-Version: 2.1", "Name: " + NAME, "Version: " + version, "Summary: " + SUMMARY,
             "License: " + LICENSE, "Requires-Python: " + REQUIRES_PYTHON]
    lines += ["Requires-Dist: " + requirement for requirement in REQUIRES]
    return "\n".join(lines) + "\n"


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return "{},sha256={},{}".format(name, digest, len(data))


def write_wheel(folder, package_dir=None, version=__version__):
    # type: (str, Optional[str], str) -> str
    """Write edgecsp's wheel into ``folder`` (a staging folder: the caller commits it); returns its file name."""
    info = "{}-{}.dist-info".format(NAME, version)
    entries = [(name, open(path, "rb").read()) for name, path in package_files(package_dir)]
    entries += [
        (info + "/METADATA", _metadata(version).encode("utf-8")),
        (info + "/WHEEL", "Wheel-Version: 1.0\nGenerator: edgecsp {}\nRoot-Is-Purelib: true\nTag: {}\n".format(
            version, TAG).encode("ascii")),
        (info + "/entry_points.txt", ("[console_scripts]\n" + "".join(
            "{} = {}\n".format(script, target) for script, target in ENTRY_POINTS)).encode("ascii")),
        (info + "/top_level.txt", (NAME + "\n").encode("ascii")),
    ]
    record = "".join(_record_line(name, data) + "\n" for name, data in entries) + info + "/RECORD,,\n"
    entries.append((info + "/RECORD", record.encode("utf-8")))
    name = wheel_name(version)
    with zipfile.ZipFile(os.path.join(folder, name), "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in entries:
            item = zipfile.ZipInfo(entry, _EPOCH)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, data)
    return name


class JetPackSetup(NamedTuple):
    """What installing edgecsp's device half takes on one JetPack major release (``Target.jetpack``)."""

    jetpack: str  # the major release: "4", "5", "6"
    system: str  # L4T, Ubuntu, Python and its pip, as JetPack installs them
    cuda_bin: str  # nvcc's folder, on PATH while pycuda compiles
    pycuda: str  # the pycuda release docker/Dockerfile.<target.docker> builds
    numpy_note: str


SETUPS = (
    JetPackSetup("4", "L4T r32.7, Ubuntu 18.04, Python 3.6, apt's pip 9.0.1", "/usr/local/cuda-10.2/bin", "2022.1",
                 "apt's python3-numpy is 1.13.3, the oldest edgecsp runs on. For numpy 1.19.5 (the JetPack 4 image's "
                 "pin) upgrade pip in your user site first: pip 9.0.1 predates manylinux2014 wheels and would compile "
                 "numpy from source (python3 -m pip install --user pip==21.3.1, then python3 -m pip install --user "
                 "numpy==1.19.5)."),
    JetPackSetup("5", "L4T r35, Ubuntu 20.04, Python 3.8, apt's pip 20.0.2", "/usr/local/cuda/bin", "2022.2.2",
                 "apt's python3-numpy (1.17.4) is enough."),
    JetPackSetup("6", "L4T r36, Ubuntu 22.04, Python 3.10, apt's pip 22.0.2", "/usr/local/cuda/bin", "2024.1",
                 "apt's python3-numpy (1.21.5) is enough."),
)


def jetpack_setup(jetpack):
    # type: (Optional[str]) -> Optional[JetPackSetup]
    """The record of JetPack ``jetpack`` ("4.6.1" -> the "4" record), None off JetPack (x86-cuda)."""
    major = (jetpack or "").split(".")[0]
    for setup in SETUPS:
        if setup.jetpack == major:
            return setup
    return None


def _paragraph(text):
    return textwrap.wrap(text, 100)


def install_steps(target, version=__version__):
    """The lines of README.txt that install edgecsp's device half on ``target`` (a Target record)."""
    wheel = wheel_name(version)
    setup = jetpack_setup(target.jetpack)
    # a newer bundle's edgecsp may carry the same version number: --force-reinstall, which pip 9 honours only
    # with --upgrade
    pip_line = "    python3 -m pip install --user --no-deps --upgrade --force-reinstall " + wheel
    if setup is None:
        return _paragraph("Install edgecsp on the {} (Python {}) from this folder, with numpy, OpenCV, pycuda and "
                          "TensorRT {}'s Python bindings (from TensorRT's tar or deb packages, or pip from NVIDIA's "
                          "index):".format(target.name, target.device_python, target.trt_version[0])) + [
            "", pip_line, "    python3 -m pip install --user numpy opencv-python-headless pycuda"]
    return (_paragraph("Install edgecsp on the device, once (JetPack {}: {}). JetPack's own packages, with "
                       "apt:".format(target.jetpack, setup.system))
            + ["",
               "    sudo apt-get update",
               "    sudo apt-get install -y python3-pip python3-numpy python3-libnvinfer libopencv-python \\",
               "        python3-dev build-essential",
               ""]
            + _paragraph("python3-libnvinfer is TensorRT's Python bindings; libopencv-python is JetPack's OpenCV, "
                         "built with GStreamer for --gst (PyPI's opencv-python has no GStreamer). " + setup.numpy_note)
            + [""]
            + _paragraph("edgecsp itself, from this folder, with that pip (--no-deps: numpy comes from apt; nothing "
                         "is downloaded):")
            + ["",
               pip_line,
               "    export PATH=\"$HOME/.local/bin:$PATH\"     # where pip put the edgecsp command",
               "    edgecsp --version                        # or: python3 -m edgecsp --version",
               "",
               "pycuda, compiled against JetPack's CUDA (minutes on the device):",
               "",
               "    export PATH={}:$PATH".format(setup.cuda_bin),
               "    python3 -m pip install --user pycuda=={}".format(setup.pycuda),
               "    python3 -c \"import tensorrt, pycuda.driver, cv2; print(tensorrt.__version__)\""]
            + (["", "docker/Dockerfile.{} in edgecsp's repository builds the same as an image.".format(target.docker)]
               if target.docker else []))
