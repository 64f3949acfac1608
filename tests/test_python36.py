"""Code that runs on a Jetson TX2 (JetPack 4.6 = Python 3.6) stays 3.6-compatible (STYLE.md §11), checked by vermin."""
import os
import subprocess

from tests.gates import needs, tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the runtime, the backends' runner side, targets, and the CLI paths that reach them
DEVICE_CODE = ["edgecsp/__init__.py", "edgecsp/__main__.py", "edgecsp/errors.py", "edgecsp/_lazy.py", "edgecsp/_files.py",
               "edgecsp/validate.py", "edgecsp/onnxio.py", "edgecsp/targets.py", "edgecsp/build.py", "edgecsp/runtime", "edgecsp/backends",
               "edgecsp/cli/__init__.py", "edgecsp/cli/infer.py", "edgecsp/cli/build.py", "edgecsp/cli/targets.py",
               # the parser imports every command module, so `edgecsp --help` on the Jetson parses all of edgecsp/cli
               "edgecsp/cli",
               # the TensorRT device build calibrates through edgecsp.calibration, which reads COCO lists
               "edgecsp/calibration", "edgecsp/data/coco.py",
               # `edgecsp infer` itself, and the client side of --server it reaches (not the server-side modules)
               "edgecsp/infer.py", "edgecsp/serving/__init__.py", "edgecsp/serving/client.py",
               "edgecsp/serving/triton_config.py"]


def _vermin():
    needs("vermin")
    return tool("vermin")


def test_device_code_is_python36_compatible():
    paths = [os.path.join(ROOT, p) for p in DEVICE_CODE]
    missing = [p for p in paths if not os.path.exists(p)]
    assert not missing, missing
    proc = subprocess.run([_vermin(), "-t=3.6-", "--violations", "--no-tips", "--eval-annotations"] + paths,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vermin_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    if (y := x):\n        return y\n")
    proc = subprocess.run([_vermin(), "-t=3.6-", "--violations", "--no-tips", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0


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
    assert checker.check_paths([os.path.join(ROOT, p) for p in DEVICE_CODE]) == []


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
