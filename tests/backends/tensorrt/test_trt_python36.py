"""The TensorRT device half on the device's own Python: a real CPython 3.6 (tests/device36.py, JetPack 4.6.x's
Python side) with the TensorRT 8.2 and pycuda stand-ins installed where JetPack's packages would be (the user
site), a fake CUDA driver for the GPU probe (device_stubs.py), and edgecsp installed from the bundle.

There, the bundle's own ``build_on_device.sh`` builds an INT8 engine (the host-computed calibration cache handed
to TensorRT) and its manifest, ``edgecsp infer --engine`` runs it through the TensorRT runner on fake device
memory, and the bundle's trtexec line (a fake trtexec) followed by its ``--from-trtexec`` line gives an engine
``edgecsp infer`` runs the same way. The detections equal those of the host's Python on the same stand-ins.
"""
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from edgecsp.backends.tensorrt.manifest import read_bundle, read_engine_manifest
from edgecsp.cli import main
from tests.backends.tensorrt import device_stubs, trt_models
from tests.gates import ROOT

pytestmark = [pytest.mark.py36, pytest.mark.onnx, pytest.mark.onnxruntime, pytest.mark.opencv]


def _device_io(bundle):
    """The stand-in engine's inputs and outputs: those of the bundle's model (batch 1)."""
    from edgecsp.runtime.meta import ModelMeta

    meta = ModelMeta.from_dict(bundle.meta)
    io = [(bundle.input_name, True, tuple(d or 1 for d in bundle.input_shape))]
    for index, name in enumerate(bundle.outputs):
        io.append((name, False, tuple(d or 1 for d in meta.spec.output_shape(meta, index))))
    return io


def _install_edgecsp(python, bundle, home):
    """edgecsp on the 3.6 "Jetson" as its user installs it: the bundle's wheel with JetPack's pip 9.0.1 (--user);
    a bundle without a wheel (written before it carried one) falls back to this source tree. Returns which."""
    from tests.device36 import pip9

    wheels = glob.glob(os.path.join(bundle, "edgecsp-*.whl"))
    if wheels:
        pip9(python, ["install", "--user", wheels[0]], home=home)
        return "wheel"
    shim = os.path.join(str(home), ".local", "bin", "edgecsp")
    os.makedirs(os.path.dirname(shim))
    with open(shim, "w") as handle:
        handle.write("#!{}\nimport sys\nsys.path.insert(0, {!r})\nfrom edgecsp.cli import entry_point\n"
                     "entry_point()\n".format(python, ROOT))
    os.chmod(shim, 0o755)
    return "source tree"


def _detections(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def test_build_on_device_and_infer_on_python36_against_the_tensorrt_82_standins(tmp_path, monkeypatch):
    if device_stubs.compiler() is None:
        pytest.skip("no C compiler (cc) to build the fake CUDA driver libcuda.so.1")
    from tests.device36 import python36_env, run36, user_site

    monkeypatch.chdir(str(tmp_path))  # not the source tree: pip (and python -c) would find edgecsp in the cwd

    python = python36_env()
    # the host: an INT8 bundle for the TX2 (no fast INT8: --allow-slow-int8), its cache computed here
    tiny = trt_models.save(trt_models.clean_model(), tmp_path / "tiny.onnx")
    images = trt_models.write_images(tmp_path / "images", count=3)
    bundle = str(tmp_path / "tiny-tx2-int8-bundle")
    assert main(["build", "--target", "tx2", "-p", "int8", "--allow-slow-int8", tiny, "-o", bundle,
                 "--calib", images, "--count", "3"]) == 0
    manifest = read_bundle(bundle)
    assert manifest.calibration["cache"] == "calib.cache" and manifest.calibration["algorithm"] == "EntropyCalibration2"
    host_cache = open(os.path.join(bundle, "calib.cache")).read().splitlines()

    # the device: TensorRT 8.2 and pycuda where JetPack puts its packages, a TX2's GPU behind the driver API
    home = tmp_path / "home"
    home.mkdir()
    device = str(tmp_path / "device")
    env = device_stubs.write_device(device, _device_io(manifest), python=python)
    site = user_site(python, home)
    for name in os.listdir(env["PYTHONPATH"]):
        shutil.copytree(os.path.join(env["PYTHONPATH"], name), os.path.join(site, name))
    installed = _install_edgecsp(python, bundle, home)
    driver = {"LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"]}
    probe = run36([python, "-c", "import sys, tensorrt, edgecsp; print(sys.version_info[:2], tensorrt.__version__, "
                                 "edgecsp.__file__)"], home=home, cwd=str(tmp_path), **driver).stdout
    assert probe.startswith("(3, 6) 8.2.1.8 ") and (installed == "source tree") == probe.rstrip().endswith(
        os.path.join(ROOT, "edgecsp", "__init__.py")), probe

    # 1. the bundle's own script, as the README says: sh build_on_device.sh
    script = os.path.join(bundle, "build_on_device.sh")
    run36(["sh", script], home=home, cwd=str(tmp_path), **driver)
    engine = os.path.join(bundle, "tiny-tx2-int8.engine")
    record = read_engine_manifest(engine)
    assert (record.tensorrt, record.gpu, record.sm, record.target, record.precision) == (
        "8.2.1.8", "NVIDIA Tegra X2", "6.2", "tx2", "int8")
    assert record.calibration["cache"] == "calib.cache" and open(engine, "rb").read() == b"engine-bytes"
    calls = device_stubs.calls_made(device)
    members = set((cls, member) for cls, member, _ in calls)
    assert {("Builder", "build_serialized_network"), ("IBuilderConfig", "int8_calibrator="),
            ("IBuilderConfig", "max_workspace_size="), ("OnnxParser", "parse_from_file")} <= members
    flags = [args[0] for cls, member, args in calls if (cls, member) == ("IBuilderConfig", "set_flag")]
    assert any("INT8" in flag for flag in flags) and any("FP16" in flag for flag in flags)
    (read,) = [args[0] for cls, member, args in calls if member == "read_calibration_cache"]
    # TensorRT got the host's cache, its header re-stamped with the device's TensorRT (8.2.1 -> 8201)
    assert read.startswith("b'TRT-8201-EntropyCalibration2\\n" + host_cache[1])

    # 2. edgecsp infer --engine: the TensorRT runner on the stand-ins, bindings API (8.2), fake device memory
    out36 = str(tmp_path / "py36.jsonl")
    run36(["edgecsp", "infer", "--engine", engine, images, "--save-json", out36, "--no-progress"], home=home,
          cwd=str(tmp_path), **driver)
    members = set((cls, member) for cls, member, _ in device_stubs.calls_made(device))
    assert {("Runtime", "deserialize_cuda_engine"), ("IExecutionContext", "execute_async_v2"),
            ("pycuda.driver", "memcpy_htod_async"), ("pycuda.driver", "memcpy_dtoh_async")} <= members
    frames = _detections(out36)
    assert len(frames) == 3 and all(frame["detections"] for frame in frames)  # the fake engine's 2x+1 detects

    # the host's Python, on the same stand-ins and driver: the same detections
    host_out = str(tmp_path / "host.jsonl")
    proc = subprocess.run([sys.executable, "-m", "edgecsp", "infer", "--engine", engine, images, "--save-json", host_out,
                           "--no-progress"], cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=env["PYTHONPATH"] + os.pathsep + ROOT, **driver))
    assert proc.returncode == 0, proc.stderr
    assert _detections(host_out) == frames

    # 3. the trtexec route of the same script: its trtexec line (a fake trtexec), then its --from-trtexec line
    lines = [line[2:] for line in open(script).read().splitlines() if line.startswith("# ")]
    trtexec = [line for line in lines if line.startswith("/usr/src/tensorrt/bin/trtexec ")]
    adopt = [line for line in lines if line.startswith("edgecsp build ") and "--from-trtexec" in line]
    assert len(trtexec) == 1 and "--int8 --calib=calib.cache" in trtexec[0] and len(adopt) == 1
    os.remove(engine)
    os.remove(engine + ".json")
    fake_trtexec = [env["TRTEXEC"]] + shlex.split(trtexec[0])[1:]
    run36(fake_trtexec, home=home, cwd=bundle, **driver)
    run36(shlex.split(adopt[0]), home=home, cwd=bundle, **driver)
    adopted = read_engine_manifest(engine)
    assert adopted.meta["extra"]["built_by"] == "trtexec" and adopted.tensorrt == "8.2.1.8"
    assert adopted.fp32_layers == []  # trtexec 8.2 cannot pin layers: the manifest does not claim it did
    out_trtexec = str(tmp_path / "trtexec.jsonl")
    run36(["edgecsp", "infer", "--engine", engine, images, "--save-json", out_trtexec, "--no-progress"], home=home,
          cwd=str(tmp_path), **driver)
    assert _detections(out_trtexec) == frames
