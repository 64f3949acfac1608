"""Build (or find) the Ultralytics reference venv, .cache/ultralytics-venv/, and print its python.

    python scripts/ultralytics_env.py            # builds it once, then reuses it (prints the python path)
    python scripts/ultralytics_env.py --check    # prints the python path, or says it is absent (exit 1)
    python scripts/ultralytics_env.py --rebuild  # removes it first

Ultralytics (AGPL-3.0) is a reference tool of the scripts only (scripts/train_ultralytics.py, the speed bench):
edgecsp never imports it, `make test` and CI never build this venv. It holds what Ultralytics needs to train,
`val`, `predict` and export (ONNX; OpenVINO, also `int8=True` through NNCF), nothing else:

* ``torch==2.14.1 torchvision==0.29.1``: a matching pair (PyPI's torchvision does not import beside the CPU torch
  2.13 of .venv). pip takes the CUDA build from this machine's disk; it runs on the CPU.
* ``ultralytics==8.4.190`` with ``--no-deps`` (its requirements pull nvidia-ml-py, ultralytics-platform and
  opencv-python, which neither training nor export needs) plus the packages it imports on those paths
  (``REQUIREMENTS``), pinned to the versions of edgecsp's own .venv where both have them.

Size and time, measured here: about 6.5 GB on disk (torch's CUDA libraries are 5.5 GB of it), about 2 minutes
to build from the wheels on this machine's disk; a second call only checks the record and prints the path.

Run Ultralytics offline with ``ULTRALYTICS_ENV`` added to the environment (``ultralytics_environ()``): no
downloads (fonts, weights, datasets), no run-time pip installs, settings under the venv instead of ~/.config.

Module API (scripts import it): ``VENV``, ``ultralytics_python()`` (the python path or None),
``ensure_venv(log)`` (builds it; returns the python path), ``ULTRALYTICS_ENV``, ``ultralytics_environ()``.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".cache", "ultralytics-venv")
RECORD = os.path.join(VENV, "edgecsp-installed.json")  # written last: when it is there, the venv is complete
BASE_PYTHON = "python3.11"

TORCH = ("torch==2.14.1", "torchvision==0.29.1")
ULTRALYTICS = "ultralytics==8.4.190"
# what Ultralytics 8.4.190 imports to train (polars: results.csv, matplotlib: plots, psutil: system logger), to
# val and predict, to export ONNX (onnx, onnxslim, onnxruntime for its check) and OpenVINO (openvino; nncf for
# int8=True); ultralytics-thop gives the GFLOPs of its model summary. opencv-python-headless replaces the GUI
# opencv-python it names.
REQUIREMENTS = (
    "numpy==2.4.6", "pyyaml==6.0.4", "pillow==13.0.0", "opencv-python-headless==4.14.0.94", "matplotlib==3.11.2",
    "psutil==7.2.2", "requests==2.32.3", "polars==2.1.0", "ultralytics-thop==2.2.3", "scipy==1.17.1",
    "onnx==1.23.2", "onnxslim==0.1.98", "onnxruntime==1.32.0", "openvino==2026.4.1", "nncf==3.4.0",
)

CONFIG_DIR = os.path.join(VENV, "yolo-config")
ULTRALYTICS_ENV = {
    "YOLO_OFFLINE": "1",  # no downloads, no hub, no version check
    "YOLO_AUTOINSTALL": "0",  # a missing requirement fails instead of being pip-installed at run time
    "YOLO_CONFIG_DIR": CONFIG_DIR,  # settings.json here, not in ~/.config/Ultralytics
}


def _record():
    try:
        with open(RECORD) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _wanted():
    return {"torch": list(TORCH), "ultralytics": ULTRALYTICS, "requirements": list(REQUIREMENTS)}


def ultralytics_python():
    """The reference venv's python when it is complete and holds the pinned set, else None."""
    record = _record()
    python = os.path.join(VENV, "bin", "python")
    if record is None or record.get("wanted") != _wanted() or not os.access(python, os.X_OK):
        return None
    return python


def ultralytics_environ(base=None):
    """``base`` (default: os.environ) with ULTRALYTICS_ENV added: Ultralytics offline and without installs."""
    env = dict(os.environ if base is None else base)
    env.update(ULTRALYTICS_ENV)
    os.makedirs(CONFIG_DIR, exist_ok=True)
    return env


def _pip(python, args, log):
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"] + list(args)
    log(" ".join(cmd[4:]))
    subprocess.run(cmd, check=True)


def ensure_venv(log=print):
    """Build the reference venv unless it is complete; return its python path."""
    python = ultralytics_python()
    if python is not None:
        return python
    base = shutil.which(BASE_PYTHON)
    if base is None:
        raise SystemExit("ultralytics_env: {} not found: install CPython 3.11 (pyenv install 3.11)".format(
            BASE_PYTHON))
    shutil.rmtree(VENV, ignore_errors=True)  # a half-built or outdated venv is rebuilt from scratch
    start = time.time()
    subprocess.run([base, "-m", "venv", VENV], check=True)
    python = os.path.join(VENV, "bin", "python")
    _pip(python, TORCH, log)  # first and alone: the pair must match, nothing later may move it
    _pip(python, ("--no-deps", ULTRALYTICS), log)
    _pip(python, list(REQUIREMENTS) + list(TORCH), log)  # torch named again so pip keeps the pair
    # the last stdout line only: Ultralytics prints a settings notice on its first import
    check = ("import json, torch, torchvision, ultralytics, openvino, nncf, onnx, onnxslim, polars; "
             "print(json.dumps({m.__name__: m.__version__ for m in (ultralytics, torch, torchvision, openvino, "
             "nncf, onnx)}))")
    out = subprocess.run([python, "-c", check], check=True, stdout=subprocess.PIPE, env=ultralytics_environ(),
                         universal_newlines=True).stdout
    versions = json.loads(out.strip().splitlines()[-1])
    freeze = subprocess.run([python, "-m", "pip", "freeze", "--disable-pip-version-check"], check=True,
                            stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    tmp = RECORD + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({"wanted": _wanted(), "versions": versions, "freeze": freeze,
                   "build_seconds": round(time.time() - start, 1)}, handle, indent=1)
    os.replace(tmp, RECORD)
    return python


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the venv is there")
    parser.add_argument("--rebuild", action="store_true", help="remove the venv first")
    args = parser.parse_args(argv)
    if args.check:
        python = ultralytics_python()
        if python is None:
            print("ultralytics_env: absent: run python scripts/ultralytics_env.py", file=sys.stderr)
            return 1
        print(python)
        return 0
    if args.rebuild:
        shutil.rmtree(VENV, ignore_errors=True)
    start = time.time()
    python = ensure_venv(log=lambda line: print("ultralytics_env: pip install " + line, file=sys.stderr,
                                                flush=True))
    record = _record()
    print("ultralytics_env: ready in {:.1f} s: {}".format(time.time() - start, ", ".join(
        "{} {}".format(k, v) for k, v in sorted(record["versions"].items()))), file=sys.stderr)
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
