"""The device half on JetPack 4.6's Python: a tx2 bundle's wheel installed as its README.txt says, with pip 9.0.1,
on a real CPython 3.6 (tests/device36.py), then `edgecsp infer` there against the host's run.

The Jetson user (``tests.device36.JetsonUser``) has their own HOME: `pip install --user` puts edgecsp in
``HOME/.local``; ``python3`` on PATH is the 3.6 env's. pip runs offline (``PIP_NO_INDEX``). The apt, CUDA and
pycuda lines of the README are the ones not run here (no apt, no GPU); TensorRT's half of the device run is in
tests/backends/tensorrt/.
"""
import json
import os
import re
import shutil

import pytest

from edgecsp import __version__
from edgecsp.backends.tensorrt.host.device_install import wheel_name
from tests.device36 import ROOT, JetsonUser, device_modules, env_record, python36_env, run36
from tests.test_python36 import import_on_python36

pytestmark = [pytest.mark.py36, pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxruntime, pytest.mark.opencv]


@pytest.fixture(scope="module")
def jetson(tmp_path_factory, demo_onnx):
    """A tx2 bundle written on the host, copied to a "Jetson" user's HOME and installed there by the lines of its
    README.txt."""
    from edgecsp.cli import main

    work = tmp_path_factory.mktemp("jetson")
    bundle = str(work / "demo-tx2-fp16-bundle")
    assert main(["build", "--target", "tx2", demo_onnx, "-o", bundle]) == 0
    user = JetsonUser(work / "home")
    ran, left_out, output = user.install_bundle(bundle)
    return dict(user=user, python=user.python, home=user.home, bundle=bundle, work=str(work), ran=ran,
                left_out=left_out, output=output)


def _device(jetson, args, cwd, check=True):
    return jetson["user"].run(args, cwd=cwd, check=check)


def test_the_bundle_carries_a_wheel_that_pip9_installs_as_its_readme_says(jetson):
    wheel = wheel_name()
    assert os.path.isfile(os.path.join(jetson["bundle"], wheel))
    # what ran: the README's own lines, exactly; what did not: apt, CUDA, pycuda
    assert jetson["ran"] == ["python3 -m pip install --user --no-deps --upgrade --force-reinstall " + wheel,
                             'export PATH="$HOME/.local/bin:$PATH"     # where pip put the edgecsp command',
                             "edgecsp --version                        # or: python3 -m edgecsp --version"]
    assert jetson["left_out"] == [
        "sudo apt-get update",
        "sudo apt-get install -y python3-pip python3-numpy python3-libnvinfer libopencv-python python3-dev "
        "build-essential",
        "export PATH=/usr/local/cuda-10.2/bin:$PATH", "python3 -m pip install --user pycuda==2022.1",
        'python3 -c "import tensorrt, pycuda.driver, cv2; print(tensorrt.__version__)"']
    assert "Successfully installed edgecsp-{}".format(__version__) in jetson["output"]
    assert "edgecsp {}".format(__version__) in jetson["output"]  # the ~/.local/bin/edgecsp pip 9 wrote
    assert env_record(os.path.dirname(os.path.dirname(os.path.dirname(jetson["python"]))))["pip"] == "9.0.1"
    listed = _device(jetson, ["python3", "-m", "pip", "list", "--user", "--format=legacy"], jetson["work"]).stdout
    assert "edgecsp ({})".format(__version__) in listed
    script = os.path.join(jetson["home"], ".local", "bin", "edgecsp")
    with open(script) as handle:
        assert handle.readline().strip() == "#!" + jetson["python"]
    # the next bundle's wheel replaces this one even with the same version number (pip 9: --upgrade --force-reinstall)
    _, _, again = jetson["user"].install_bundle(jetson["bundle"])
    assert "Successfully installed edgecsp-{}".format(__version__) in again


def test_the_wheel_is_what_python36_imports_and_every_device_module_loads_from_it(jetson):
    """From the installed wheel (not the source tree): every device module imports, none host-only is loaded."""
    report = import_on_python36(jetson["python"], device_modules(), home=jetson["home"], cwd=jetson["work"])
    assert report["python"].startswith("3.6.")
    assert report["edgecsp"].startswith(os.path.join(jetson["home"], ".local", "lib", "python3.6", "site-packages"))
    assert report["failed"] == {} and report["host_only"] == []


def test_the_cli_answers_on_python36_and_its_errors_stay_one_line(jetson):
    from edgecsp.cli import COMMANDS

    for argv in [["--help"]] + [[name, "--help"] for name, _ in COMMANDS]:
        proc = _device(jetson, ["edgecsp"] + argv, jetson["work"])
        assert "usage: edgecsp" in proc.stdout, argv
    # host-only commands and the TensorRT build without TensorRT: one line each, naming the fix
    card = os.path.join(ROOT, "models", "shapes_tiny_csp.json")
    engine = os.path.join(jetson["bundle"], "x.engine")
    for argv, code, fix in ((["export", "--card", card, "-o", "m.onnx"], 4, "edgecsp[export]"),
                            (["build", "--target", "tx2", "--device-build", jetson["bundle"], "-o", engine], 7,
                             "TensorRT is not installed")):
        proc = _device(jetson, ["edgecsp"] + argv, jetson["work"], check=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == code and len(lines) == 1 and fix in lines[0], (argv, proc.stderr)
    # `edgecsp models` prints stored figures (edgecsp.models.catalog): no torch needed there
    proc = _device(jetson, ["edgecsp", "models"], jetson["work"])
    assert any(line.startswith("shapes_tiny_csp ") for line in proc.stdout.splitlines()), proc.stdout


def _records(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.mark.parametrize("model", ["exported", "bundled"])
def test_infer_with_onnx_runtime_on_python36_gives_the_hosts_json_lines(jetson, demo_onnx, demo_video, model,
                                                                       monkeypatch):
    """`python3.6 -m edgecsp infer --engine demo.onnx demo.mp4 --json out.jsonl`: ONNX Runtime 1.10, numpy 1.19.5
    and OpenCV 4.1.1 there, the host's versions here; the parsed records are equal, exactly (the JSON writer rounds
    scores to 5 digits and boxes to 2 decimals, far above the float differences between the two)."""
    from edgecsp.cli import main

    work = os.path.join(jetson["work"], model)
    os.makedirs(work)
    source = demo_onnx if model == "exported" else os.path.join(jetson["bundle"], "shapes_tiny_csp.onnx")
    shutil.copy(source, os.path.join(work, "demo.onnx"))
    shutil.copy(demo_video[0], os.path.join(work, "demo.mp4"))
    args = ["infer", "--engine", "demo.onnx", "demo.mp4", "--save-json", "{}.jsonl", "--no-progress"]
    on_device = [a.format("device") for a in args]
    proc = _device(jetson, ["python3", "-m", "edgecsp"] + on_device, work)
    assert "detections" in proc.stdout
    monkeypatch.chdir(work)
    assert main([a.format("host") for a in args]) == 0
    device, host = _records(os.path.join(work, "device.jsonl")), _records(os.path.join(work, "host.jsonl"))
    assert len(host) == 60 and sum(len(r["detections"]) for r in host) > 60
    assert device == host
    versions = json.loads(_device(jetson, ["python3", "-c", "import json, onnxruntime, numpy, cv2; print(json.dumps("
                                           "[onnxruntime.__version__, numpy.__version__, cv2.__version__]))"],
                                  work).stdout)
    assert versions == ["1.10.0", "1.19.5", "4.1.1"]


# the runtime's own tests, and those of the foundation and calibration the device build uses, on 3.6
TESTS_ON_36 = ["tests/runtime", "tests/calibration", "tests/test_files.py"]


def test_the_runtime_tests_pass_on_python36():
    """With pytest 7.0.1 on the 3.6 env, from the source tree (its tests import it). What needs torch, onnx,
    OpenVINO or PyAV skips there through the same gates (no CI failure: those are host extras); nothing skips for
    want of what the env has (OpenCV, ONNX Runtime)."""
    proc = run36([python36_env(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"] + TESTS_ON_36, cwd=ROOT,
                 check=False, timeout=600)
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, "these test folders run on Python 3.6 too: keep them 3.6-compatible (no " \
        "capture_output=/text= in subprocess.run, no walrus...)\n" + tail
    summary = re.search(r"(\d+) passed", tail)
    assert summary and int(summary.group(1)) > 200, tail
    reasons = set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.+)", proc.stdout))
    assert reasons and not [r for r in reasons if "OpenCV" in r or "onnxruntime" in r], reasons

