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
               "edgecsp/calibration", "edgecsp/data/coco.py"]


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
