"""`import edgecsp`, every module and `edgecsp --help` work with only numpy (STYLE.md §9)."""
import json
import os
import subprocess
import sys

import edgecsp
from edgecsp.backends import list_backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(edgecsp.__file__)))
# every backend's engine package (from the registry), and the other heavy optional packages
HEAVY = sorted(set([b.package for b in list_backends()] + ["torch", "torchvision", "onnx", "onnxsim", "nncf", "cv2",
                                                           "pycuda", "tqdm", "matplotlib", "faster_coco_eval", "av"]))
# modules whose whole purpose is PyTorch: they may (only) fail with ImportError without torch
TORCH_MODULES = {"edgecsp.models.layers", "edgecsp.models.cspnet", "edgecsp.models.yolo",
                 "edgecsp.training.yolo_loss", "edgecsp.training.trainer", "edgecsp.darknet.model"}

_PROBE = r"""
import importlib, json, pkgutil, sys
for name in {heavy!r}:
    sys.modules[name] = None  # makes `import name` raise ImportError, as if not installed
import edgecsp
result = {{}}
for info in pkgutil.walk_packages(edgecsp.__path__, "edgecsp."):
    try:
        importlib.import_module(info.name)
        result[info.name] = "ok"
    except ImportError as exc:
        result[info.name] = "ImportError: %s" % exc
    except Exception as exc:
        result[info.name] = "%s: %s" % (type(exc).__name__, exc)
leaked = sorted(m for m in {heavy!r} if sys.modules.get(m) is not None)
print(json.dumps({{"modules": result, "leaked": leaked}}))
"""


def _run(code, *args):
    return subprocess.run([sys.executable, "-c", code] + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_every_module_imports_without_heavy_packages():
    proc = _run(_PROBE.format(heavy=HEAVY))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    modules = report["modules"]
    assert len(modules) > 20  # the walk really found the package
    for name, status in sorted(modules.items()):
        if name in TORCH_MODULES:
            assert status == "ok" or status.startswith("ImportError"), (name, status)
        else:
            assert status == "ok", (name, status)
    assert report["leaked"] == []


def test_cli_help_without_heavy_packages():
    code = ("import sys\nfor n in {!r}: sys.modules[n] = None\n"
            "from edgecsp.cli import main\nsys.exit(main(sys.argv[1:]))").format(HEAVY)
    for argv in (["--help"], ["infer", "--help"], ["export", "--help"], ["build", "--help"]):
        proc = _run(code, *argv)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert "usage: edgecsp" in proc.stdout


def test_models_command_without_heavy_packages():
    """`edgecsp models` prints stored figures (edgecsp.models.catalog): no torch, no forward passes."""
    code = ("import sys\nfor n in {!r}: sys.modules[n] = None\n"
            "from edgecsp.cli import main\nsys.exit(main(['models']))").format(HEAVY)
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["model", "task"]
    assert any(line.startswith("cspdarknet53 ") and "13.07" in line for line in proc.stdout.splitlines())


def test_a_local_artefact_runs_without_the_serving_package(demo_onnx, tmp_path):
    """`edgecsp infer` of a local artefact goes through the backend's runner only: edgecsp.serving (and
    tritonclient) are never imported; the pipeline takes BaseRunner, no duck typing."""
    import numpy as np

    cv2 = __import__("pytest").importorskip("cv2")
    image = str(tmp_path / "f.png")
    cv2.imwrite(image, np.full((64, 80, 3), 90, np.uint8))
    code = ("import sys, json; from edgecsp.cli import main; code = main(['infer', '--engine', sys.argv[1], "
            "sys.argv[2], '--no-progress', '--json', sys.argv[3]]); "
            "print(json.dumps([code, sorted(m for m in sys.modules if m.startswith(('edgecsp.serving', "
            "'tritonclient')))]))")
    proc = _run(code, demo_onnx, image, str(tmp_path / "d.jsonl"))
    code, imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0 and imported == [], proc.stderr
