"""The device half runs on Python 3.6 (JetPack 4.6 on a TX2; STYLE.md §11), and it is a folder, not a list.

The device code is ``edgecsp/`` minus ``tests/device36.HOST_ONLY`` (computed: a new module is covered without an
edit). It is checked three ways: vermin and the numpy-floor table on its files; on the host, no device module
imports a host-only module at module level, directly or through others; on the real CPython 3.6 of the
"JetPack in a box" env (numpy, OpenCV, ONNX Runtime; no torch, onnx, TensorRT), every device module imports and
none of them loads a host-only module. Both reach checks are shown to catch a planted host-only import.
"""
import ast
import json
import os
import shutil
import subprocess

import pytest

from tests.device36 import (HOST_ONLY, ROOT, clean_environ, device_files, device_modules, is_host_only,
                            module_name, package_files, python36_env)
from tests.gates import needs, tool

# what the device never has: importing one of them from a device module at module level is a bug
HEAVY = ["torch", "torchvision", "onnx", "onnxsim", "openvino", "nncf", "tensorrt", "pycuda", "tritonclient",
         "matplotlib", "faster_coco_eval", "pycocotools", "av"]


def _vermin():
    needs("vermin")
    return tool("vermin")


def test_the_device_tree_is_the_package_minus_the_host_only_parts():
    files = device_files()
    for entry in HOST_ONLY:  # no stale rule: each names something that exists
        assert os.path.exists(os.path.join(ROOT, entry)), entry
    assert len(files) > 60 and len(files) < len(package_files())
    for needed in ("edgecsp/runtime/pipeline.py", "edgecsp/runtime/runner.py", "edgecsp/backends/tensorrt/runner.py",
                   "edgecsp/backends/tensorrt/engine_build.py", "edgecsp/backends/onnxruntime/runner.py",
                   "edgecsp/cli/infer.py", "edgecsp/infer.py", "edgecsp/build.py", "edgecsp/targets.py",
                   "edgecsp/serving/client.py", "edgecsp/calibration/dataset.py"):
        assert needed in files, needed
    for host in ("edgecsp/backends/tensorrt/host/bundle.py", "edgecsp/export/onnx_export.py",
                 "edgecsp/models/cspnet.py", "edgecsp/serving/server.py"):
        assert host not in files and is_host_only(module_name(host)), host


def test_device_code_is_python36_compatible():
    paths = [os.path.join(ROOT, p) for p in device_files()]
    proc = subprocess.run([_vermin(), "-t=3.6-", "--violations", "--no-tips", "--eval-annotations"] + paths,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vermin_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    if (y := x):\n        return y\n")
    proc = subprocess.run([_vermin(), "-t=3.6-", "--violations", "--no-tips", str(bad)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode != 0


# -- what a device module imports when it is imported (module level; not inside functions) ---------------------

def module_level_imports(module, source, known):
    """The edgecsp modules that importing ``module`` (its ``source``) imports directly: ``import`` statements
    outside function bodies (class bodies, if/try blocks count), each with the packages above it."""
    package = module if source.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                found.add(base)
                found.update(base + "." + alias.name for alias in node.names)  # a submodule, when it is one
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit(inner)

    with open(source) as handle:
        visit(ast.parse(handle.read(), source).body)
    names = set()
    for name in found:
        parts = name.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing a.b.c runs a and a.b
    return sorted(n for n in names if n in known and n != module)


def host_only_reached(root=ROOT):
    """``[chain]`` for every device module whose module-level imports reach a host-only module (its shortest chain
    of imports, device module first)."""
    known = dict((module_name(p), os.path.join(root, p)) for p in package_files(root))
    graph = dict((m, module_level_imports(m, path, known)) for m, path in known.items())
    problems = []
    for start in device_modules(root):
        paths, queue = {start: [start]}, [start]
        while queue:
            current = queue.pop(0)
            for nxt in graph[current]:
                if nxt not in paths:
                    paths[nxt] = paths[current] + [nxt]
                    queue.append(nxt)
        problems += [paths[m] for m in sorted(paths) if is_host_only(m)]
    return problems


def test_no_device_module_imports_a_host_only_module():
    chains = host_only_reached()
    assert not chains, "device modules import host-only ones at module level (tests/device36.HOST_ONLY); import " \
        "them inside the function that needs them, or move the code:\n" + "\n".join(" -> ".join(c) for c in chains)


def _copy_package(tmp_path):
    root = str(tmp_path / "repo")
    shutil.copytree(os.path.join(ROOT, "edgecsp"), os.path.join(root, "edgecsp"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _plant(root, relative, line):
    """Add ``line`` at module level of ``relative`` (after its docstring and imports: the end of the file)."""
    with open(os.path.join(root, relative), "a") as handle:
        handle.write("\n" + line + "\n")


def test_the_reach_check_catches_a_planted_host_only_import(tmp_path):
    """Through another module too: nms imports the card reader; pipeline imports nms."""
    root = _copy_package(tmp_path)
    _plant(root, "edgecsp/runtime/nms.py", "from edgecsp.models.card import load_card  # noqa")
    chains = host_only_reached(root)
    assert ["edgecsp.runtime.nms", "edgecsp.models.card"] in chains
    assert ["edgecsp.runtime.nms", "edgecsp.models"] in chains  # the package runs first
    via = [c for c in chains if c[0] == "edgecsp.runtime.pipeline" and c[-1] == "edgecsp.models.card"]
    assert len(via) == 1 and "edgecsp.runtime.nms" in via[0]


# -- on the real CPython 3.6 -----------------------------------------------------------------------------------

_PROBE = r"""
import importlib, json, sys, traceback
modules, heavy, host_prefixes = json.loads(sys.stdin.read())
for name in heavy:
    sys.modules[name] = None  # as if not installed, whatever this interpreter has
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
loaded = sorted(m for m in sys.modules if m.startswith("edgecsp"))
print(json.dumps({"python": sys.version.split()[0], "failed": failed, "loaded": loaded,
                  "edgecsp": sys.modules["edgecsp"].__file__}))
"""


def import_on_python36(python, modules, root=None, home=None, cwd=None):
    """Import ``modules`` on ``python`` (from ``root`` on PYTHONPATH, else as installed): the probe's report,
    with ``host_only`` (host-only edgecsp modules loaded) added."""
    extra = {"PYTHONPATH": root} if root else {}
    proc = subprocess.run([python, "-c", _PROBE], input=json.dumps([modules, HEAVY, list(HOST_ONLY)]),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
                          cwd=cwd or root, env=clean_environ(home, **extra))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["host_only"] = [m for m in report["loaded"] if is_host_only(m)]
    return report


@pytest.mark.py36
def test_every_device_module_imports_on_python36_without_host_only_modules():
    python = python36_env()
    report = import_on_python36(python, device_modules(), root=ROOT)
    assert report["python"].startswith("3.6.")
    assert report["edgecsp"].startswith(os.path.join(ROOT, "edgecsp"))
    assert report["failed"] == {}
    assert report["host_only"] == [], "importing the device half on Python 3.6 loaded host-only modules"
    assert set(device_modules()) <= set(report["loaded"])


@pytest.mark.py36
def test_the_python36_import_check_catches_a_planted_host_only_import(tmp_path):
    python = python36_env()
    root = _copy_package(tmp_path)
    _plant(root, "edgecsp/runtime/nms.py", "import edgecsp.export.metadata  # noqa")
    report = import_on_python36(python, device_modules(root), root=root)
    assert report["edgecsp"].startswith(root)
    assert "edgecsp.export.metadata" in report["host_only"]
    # and one whose host-only import fails on the device (no torch there) shows up as a failed device module
    _plant(root, "edgecsp/runtime/decode.py", "import edgecsp.models.cspnet  # noqa")
    failed = import_on_python36(python, ["edgecsp.runtime.decode"], root=root)["failed"]
    assert "torch" in failed["edgecsp.runtime.decode"]


# -- numpy: JetPack 4's apt numpy is 1.13 -----------------------------------------------------------------------

def _numpy_floor():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_numpy_floor",
                                                  os.path.join(ROOT, "scripts", "check_numpy_floor.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_device_code_uses_no_numpy_newer_than_jetpack4s():
    from edgecsp._lazy import NUMPY_FLOOR

    checker = _numpy_floor()
    assert checker.FLOOR == NUMPY_FLOOR == (1, 13)
    assert checker.check_paths([os.path.join(ROOT, p) for p in device_files()]) == []


def test_numpy_floor_check_catches_newer_api():
    found = _numpy_floor().check_source(
        "import numpy as np\nrng = np.random.default_rng(0)\nb = np.packbits(x, axis=1, bitorder='little')\n"
        "p = np.pad(x, 2)\nq = np.pad(x, 2, 'edge')\nok = np.random.RandomState(0)\n"
        "feature = getattr(np.random, 'default_rng', None)\n")
    assert [(line, message) for _, line, message in found] == [
        (2, "numpy.random.default_rng needs numpy 1.17"), (3, "numpy.packbits(bitorder=...) needs numpy 1.17"),
        (4, "numpy.pad without mode= needs numpy 1.17")]


def test_device_commands_refuse_a_numpy_older_than_the_floor(capsys, monkeypatch):
    import numpy

    from edgecsp.cli import main

    monkeypatch.setattr(numpy, "__version__", "1.11.0")
    assert main(["infer", "--engine", "m.engine", "clip.mp4"]) == 4
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "numpy 1.11.0 is older than 1.13" in err[0] and "numpy==1.19.5" in err[0]
    assert main(["build", "--target", "tx2", "m.onnx"]) == 4
