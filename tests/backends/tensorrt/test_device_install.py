"""edgecsp's own wheel in a device bundle, and the JetPack install steps of its README.txt (host half; the install
with JetPack's pip 9.0.1 on Python 3.6 is tests/device/test_python36_device.py)."""
import base64
import hashlib
import os
import re
import shutil
import zipfile

import pytest

from edgecsp import __version__
from edgecsp.backends.tensorrt.host import device_install
from edgecsp.backends.tensorrt.host.device_install import install_steps, jetpack_setup, wheel_name, write_wheel
from edgecsp.targets import get_target, list_targets
from tests.gates import ROOT


def _wheel(folder, package_dir=None):
    return zipfile.ZipFile(os.path.join(str(folder), write_wheel(str(folder), package_dir)))


def _pyproject():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["project"]


def test_the_wheel_says_what_pyproject_says(tmp_path):
    """pip 9.0.1 reads METADATA, WHEEL and entry_points.txt: they repeat pyproject.toml's [project]."""
    project = _pyproject()
    info = "edgecsp-{}.dist-info/".format(__version__)
    with _wheel(tmp_path) as archive:
        metadata = archive.read(info + "METADATA").decode()
        wheel = archive.read(info + "WHEEL").decode()
        scripts = archive.read(info + "entry_points.txt").decode()
    assert wheel_name() == "edgecsp-{}-py3-none-any.whl".format(project["version"])
    fields = [tuple(line.split(": ", 1)) for line in metadata.splitlines()]
    assert fields == [("Metadata-Version", "2.1"), ("Name", project["name"]), ("Version", project["version"]),
                      ("Summary", project["description"]), ("License", project["license"]["text"]),
                      ("Requires-Python", project["requires-python"])] + [
                         ("Requires-Dist", d) for d in project["dependencies"]]
    assert project["requires-python"] == ">=3.6"
    assert wheel.splitlines() == ["Wheel-Version: 1.0", "Generator: edgecsp " + __version__,
                                  "Root-Is-Purelib: true", "Tag: py3-none-any"]
    assert scripts.splitlines()[1:] == ["{} = {}".format(k, v) for k, v in sorted(project["scripts"].items())]


def test_the_wheel_holds_the_package_and_a_record_that_matches(tmp_path):
    package = tmp_path / "copy" / "edgecsp"
    shutil.copytree(os.path.join(ROOT, "edgecsp"), str(package), ignore=shutil.ignore_patterns("__pycache__"))
    (package / "runtime" / "__pycache__").mkdir()
    (package / "runtime" / "__pycache__" / "nms.cpython-311.pyc").write_bytes(b"bytecode")
    (package / "runtime" / ".nms.py.swp").write_bytes(b"editor")
    (package / "runtime" / "table.json").write_text("{}")  # package data travels too
    out = tmp_path / "out"
    out.mkdir()
    with _wheel(out, str(package)) as archive:
        names = archive.namelist()
        record = archive.read("edgecsp-{}.dist-info/RECORD".format(__version__)).decode().splitlines()
        contents = dict((n, archive.read(n)) for n in names)
    sources = sorted("edgecsp/" + os.path.relpath(os.path.join(d, f), str(package)).replace(os.sep, "/")
                     for d, _, files in os.walk(str(package)) for f in files
                     if "__pycache__" not in d and not f.startswith("."))
    assert sorted(n for n in names if n.startswith("edgecsp/")) == sources
    assert "edgecsp/runtime/table.json" in names and not any(n.endswith((".pyc", ".swp")) for n in names)
    rows = [line.rsplit(",", 2) for line in record]
    assert sorted(r[0] for r in rows) == sorted(names)
    for name, digest, size in rows:
        if name.endswith("/RECORD"):
            assert (digest, size) == ("", "")
            continue
        data = contents[name]
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == ("sha256=" + expected, len(data)), name


def test_the_wheel_is_reproducible_and_small(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write_wheel(str(first))
    write_wheel(str(second))
    one, two = (open(str(folder / wheel_name()), "rb").read() for folder in (first, second))
    assert one == two
    assert len(one) < 2 * 1024 * 1024


def _dockerfile_arg(name, arg):
    with open(os.path.join(ROOT, "docker", "Dockerfile." + name)) as handle:
        return re.search(r"^ARG {}=(\S+)$".format(arg), handle.read(), re.M).group(1)


@pytest.mark.parametrize("target", [t.name for t in list_targets() if t.backend == "tensorrt"])
def test_every_tensorrt_target_gets_install_steps_for_its_jetpack(target):
    target = get_target(target)
    text = "\n".join(install_steps(target))
    assert "    python3 -m pip install --user --no-deps --upgrade --force-reinstall {}\n".format(wheel_name()) in text
    assert all(len(line) <= 110 for line in text.splitlines())
    setup = jetpack_setup(target.jetpack)
    if target.jetpack is None:
        assert setup is None and "TensorRT " + target.trt_version[0] in text
        return
    assert "Python " + target.device_python.rstrip("+") in setup.system
    assert "sudo apt-get install -y python3-pip python3-numpy python3-libnvinfer libopencv-python" in text
    assert "python3 -m pip install --user pycuda=={}".format(setup.pycuda) in text
    assert "export PATH={}:$PATH".format(setup.cuda_bin) in text
    if target.docker:  # the README and the JetPack image agree on pycuda
        assert _dockerfile_arg(target.docker, "PYCUDA_VERSION") == setup.pycuda


def test_jetpack4_steps_use_its_pip_and_numpy():
    steps = " ".join(" ".join(install_steps(get_target("tx2"))).split())  # the paragraphs unwrapped
    assert "Python 3.6, apt's pip 9.0.1" in steps and "cuda-10.2" in steps
    assert "numpy=={}".format(_dockerfile_arg("jetpack4", "NUMPY_VERSION")) in steps
    assert [s.jetpack for s in device_install.SETUPS] == ["4", "5", "6"]
