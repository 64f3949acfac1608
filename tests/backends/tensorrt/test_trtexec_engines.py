"""Engines built without edgecsp (the bundle's trtexec line): `edgecsp build --from-trtexec ENGINE BUNDLE` writes
their manifest after checking them against the bundle, through the strict TensorRT stand-ins (standins.py); then
`edgecsp infer` and `edgecsp package` take them. Also: DLA bundles are named apart from GPU ones, and a bundle
given to `edgecsp infer --engine` is refused with what to run on the device."""
import os
import re
import shlex
import sys

import numpy as np
import pytest

from edgecsp.backends.tensorrt import adopt as adopt_module, runner as runner_module
from edgecsp.backends.tensorrt.adopt import engine_problems
from edgecsp.backends.tensorrt.device import GpuInfo
from edgecsp.backends.tensorrt.manifest import (BUNDLE_MANIFEST, BundleManifest, manifest_path, read_engine_manifest,
                                                sha256_of, to_json)
from edgecsp.backends.tensorrt.runner import TensorIO, TensorRTRunner
from edgecsp.cli import main
from edgecsp.infer import InferConfig, check_options
from edgecsp.errors import InputError
from edgecsp.runtime.meta import ModelMeta

from tests.backends.tensorrt import standins, trt_models

# (stand-in TensorRT, a target of that version, its GPU)
DEVICES = {"8.2": ("tx2", GpuInfo("NVIDIA Tegra X2", "6.2")), "8.5": ("orin-jp5", GpuInfo("Orin", "8.7")),
           "10.3": ("orin", GpuInfo("Orin", "8.7"))}
IO = [("images", True, (1, 3, 32, 32)), ("p8", False, (1, 14, 4, 4))]


def _bundle(tmp_path, target="tx2", **changes):
    """A device bundle as the host writes it (bundle.json + the ONNX it names), without needing onnx here."""
    folder = tmp_path / "m-{}-fp16-bundle".format(target)
    folder.mkdir()
    (folder / "m.onnx").write_bytes(b"the fitted onnx")
    fields = dict(target=target, precision="fp16", onnx="m.onnx", onnx_sha256=sha256_of(str(folder / "m.onnx")),
                  input_name="images", input_shape=[1, 3, 32, 32], outputs=["p8"],
                  meta=trt_models.tiny_meta().to_dict(), trt_version=["8.2.1", "8.2.1"], sm="6.2", workspace_mib=1024,
                  fp32_layers=[{"tensor": "p8", "node": "head", "why": "decode tail, kept in float"}])
    fields.update(changes)
    (folder / BUNDLE_MANIFEST).write_text(to_json(BundleManifest(**fields)))
    return str(folder)


def _device(monkeypatch, version, io=IO, **fake_options):
    """This machine as the device of ``version``: its TensorRT and pycuda are the stand-ins, its GPU the target's."""
    fake = standins.FakeTensorRT(version, io, **fake_options)
    cuda = standins.FakeCuda(standins.load_surface("pycuda-2022.json"), fake.memory)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module())
    pycuda = cuda.module()
    monkeypatch.setitem(sys.modules, "pycuda", type(sys)("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda)
    sys.modules["pycuda"].driver = pycuda
    gpu = DEVICES[version][1]
    for module in (adopt_module, runner_module):
        monkeypatch.setattr(module, "cuda_device", lambda index=0: gpu)
    return fake, cuda


def _trtexec(folder, fake, name="m-tx2-fp16.engine"):
    """What trtexec --saveEngine leaves: the plan, no manifest."""
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        handle.write(fake.plan)
    return path


def _one_line_error(capsys):
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("version", sorted(DEVICES))
def test_a_trtexec_engine_gets_a_manifest_then_infer_and_package_take_it(version, tmp_path, monkeypatch, capsys):
    target = DEVICES[version][0]
    folder = _bundle(tmp_path, target)
    fake, cuda = _device(monkeypatch, version)
    engine = _trtexec(folder, fake, "m-{}-fp16.engine".format(target))
    with pytest.raises(Exception, match="has no sidecar manifest.*edgecsp build --from-trtexec"):
        TensorRTRunner(engine).__enter__()  # what `edgecsp infer` says before
    assert main(["build", "--target", target, "--from-trtexec", engine, folder]) == 0
    out = capsys.readouterr().out
    assert "wrote {}: the manifest of m-{}-fp16.engine (TensorRT {}".format(manifest_path(engine), target,
                                                                           standins.FULL_VERSIONS[version]) in out
    record = read_engine_manifest(engine)
    gpu = DEVICES[version][1]
    assert (record.tensorrt, record.gpu, record.sm, record.target, record.precision) == (
        standins.FULL_VERSIONS[version], gpu.name, gpu.sm, target, "fp16")
    assert record.engine_sha256 == sha256_of(engine) and record.onnx_sha256 == sha256_of(os.path.join(folder, "m.onnx"))
    meta = ModelMeta.from_dict(record.meta)
    assert meta.extra["built_by"] == "trtexec" and meta.extra["tensorrt"] == standins.FULL_VERSIONS[version]
    # trtexec 8.2 cannot pin layers (--layerPrecisions came with 8.4): the manifest does not claim them there
    assert record.fp32_layers == ([] if version == "8.2" else [{"tensor": "p8", "node": "head",
                                                                "why": "decode tail, kept in float"}])
    # the runner takes it as it takes an edgecsp-built engine: the manifest check against this device passes
    x = np.random.RandomState(1).rand(1, 3, 32, 32).astype(np.float32)
    with TensorRTRunner(engine) as runner:
        out = runner.infer(x)[0]
    np.testing.assert_allclose(out, (2 * x.ravel()[:out.size] + 1).reshape(out.shape))
    assert cuda.detached == 1
    assert main(["package", "-e", engine, "--triton", str(tmp_path / "repo")]) == 0
    assert "platform: \"tensorrt_plan\"" in (tmp_path / "repo" / "m-{}-fp16".format(target) /
                                             "config.pbtxt").read_text()


@pytest.mark.parametrize("version", sorted(DEVICES))
def test_a_dynamic_batch_engine_records_its_profiles_largest_batch(version, tmp_path, monkeypatch):
    io = [("images", True, (-1, 3, 32, 32)), ("p8", False, (-1, 14, 4, 4))]
    folder = _bundle(tmp_path, DEVICES[version][0], input_shape=[None, 3, 32, 32], max_batch=2)
    fake, _ = _device(monkeypatch, version, io, max_batch=6)  # trtexec run with --maxShapes=images:6x3x32x32
    engine = _trtexec(folder, fake, "m.engine")
    adopted = adopt_module.adopt_engine(engine, folder)
    assert adopted.manifest.max_batch == 6 and adopted.manifest.input_shape == [None, 3, 32, 32]
    asked = ("get_profile_shape", (0, 0)) if version == "8.2" else ("get_tensor_profile_shape", ("images", 0))
    assert ("ICudaEngine",) + asked + ({},) in fake.calls  # bindings on 8.2, named tensors on 8.5+


def test_the_bindings_are_compared_with_the_bundle():
    meta = trt_models.tiny_meta()
    bundle = BundleManifest(target="tx2", precision="fp16", onnx="m.onnx", onnx_sha256="a" * 64, input_name="images",
                            input_shape=[1, 3, 32, 32], outputs=["p8"], meta=meta.to_dict(), trt_version=["8.2.1"],
                            sm="6.2", workspace_mib=1024)
    good = [TensorIO("images", True, (1, 3, 32, 32), "float32", 0), TensorIO("p8", False, (1, 14, 4, 4), "float32", 1)]
    assert engine_problems(good, bundle, meta) == []
    cases = [
        ([good[0]._replace(shape=(1, 3, 64, 64)), good[1]], "input images is shaped (1, 3, 64, 64) but the bundle's "
                                                            "is (1, 3, 32, 32)"),
        ([good[0]._replace(shape=(-1, 3, 32, 32)), good[1]], "input images is shaped (?, 3, 32, 32)"),
        ([good[0]._replace(dtype="float16"), good[1]], "input images is float16 but the bundle's is float32 "
                                                       "(trtexec: drop --inputIOFormats)"),
        ([good[0]._replace(name="input"), good[1]], "its inputs are input but the bundle's model has one input, "
                                                    "images"),
        ([good[0], good[1]._replace(name="out")], "its outputs are out but the bundle's are p8"),
        (good + [TensorIO("p16", False, (1, 14, 2, 2), "float32", 2)], "its outputs are p16, p8 but the bundle's "
                                                                        "are p8"),
        ([good[0], good[1]._replace(shape=(1, 21, 4, 4))], "output p8 is shaped (1, 21, 4, 4) but the bundle's model "
                                                           "gives (?, 14, 4, 4)"),
        ([good[0], good[1]._replace(dtype="float16")], "output p8 is float16 but the bundle's is float32"),
    ]
    for io, message in cases:
        assert any(message in p for p in engine_problems(io, bundle, meta)), (message, engine_problems(io, bundle,
                                                                                                        meta))


def test_refusals_are_one_line_with_their_exit_codes(tmp_path, monkeypatch, capsys):
    folder = _bundle(tmp_path)
    fake, _ = _device(monkeypatch, "8.2", io=[IO[0], ("p8", False, (1, 14, 4, 4), "HALF")])
    engine = _trtexec(folder, fake)
    cases = [
        # the engine is not the bundle's (trtexec run with --outputIOFormats=fp16:chw)
        ([engine, folder], 3, "m-tx2-fp16.engine was not built from bundle .*output p8 is float16 but the bundle's "
                              "is float32 .trtexec: drop --outputIOFormats.; build it with the trtexec line of "
                              ".*build_on_device.sh$"),
        ([engine, folder, "--target", "nano"], 3, "bundle .* was written for tx2, not nano: pass --target tx2"),
        ([str(tmp_path / "none.engine"), folder], 3, "TensorRT engine .*none.engine not found"),
        ([os.path.join(folder, "m.onnx"), folder], 3, "is not a TensorRT engine file name"),
        ([engine, str(tmp_path)], 5, "bundle.json not found: a device bundle is a folder"),
        ([engine, folder, "-o", "x.engine", "--workspace", "64"], 3,
         "--from-trtexec takes the engine, the bundle folder and --target only .*: drop --workspace -o$"),
    ]
    for args, code, message in cases:
        assert main(["build", "--from-trtexec"] + args) == code, args
        line = _one_line_error(capsys)
        assert line.startswith("edgecsp build: error: ") and re.search(message, line), line
    assert not os.path.exists(manifest_path(engine))
    # bytes this TensorRT cannot deserialize (another version's plan, a truncated copy): TensorRT's own error
    with open(engine, "ab") as handle:
        handle.write(b"truncated?")
    assert main(["build", "--from-trtexec", engine, folder]) == 7
    assert "TensorRT 8.2.1.8 on this sm_62 cannot load m-tx2-fp16.engine (1: [stdArchiveReader.cpp" in \
        _one_line_error(capsys)
    # another TensorRT or GPU than the bundle's target: the manifest would lie about where the engine runs
    monkeypatch.setitem(sys.modules, "tensorrt", standins.FakeTensorRT("8.5", IO).module())
    assert main(["build", "--from-trtexec", engine, folder]) == 7
    assert "cannot write the manifest of m-tx2-fp16.engine here: this machine has TensorRT 8.5.2.2" in \
        _one_line_error(capsys)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["build", "--from-trtexec", engine, folder]) == 4
    assert "tensorrt is needed for reading TensorRT engines" in _one_line_error(capsys)
    assert not os.path.exists(manifest_path(engine))


def test_infer_refuses_a_bundle_with_what_to_run_on_the_device(tmp_path, capsys):
    folder = _bundle(tmp_path)
    assert main(["infer", "--engine", folder, "clip.mp4"]) == 3
    line = _one_line_error(capsys)
    assert "--engine {} is a device bundle for tx2, not an engine: build its engine on the tx2 first (`sh {}` " \
        "there".format(folder, os.path.join(folder, "build_on_device.sh")) in line
    assert "then run `edgecsp infer --engine {} ...`".format(os.path.join(folder, "m-tx2-fp16.engine")) in line
    open(os.path.join(folder, "m-tx2-fp16.engine"), "wb").close()  # on the device, after build_on_device.sh
    with pytest.raises(InputError, match="is a device bundle, not an engine; the engine built from it is "
                                         ".*m-tx2-fp16.engine: pass --engine .*m-tx2-fp16.engine$"):
        check_options(InferConfig(engine=folder, source="clip.mp4"))
    os.remove(os.path.join(folder, BUNDLE_MANIFEST))  # any other folder: as before, not a TensorRT matter
    assert main(["infer", "--engine", folder, "clip.mp4"]) == 3
    assert "device bundle" not in _one_line_error(capsys)


# -- the bundle's own lines, run as written ---------------------------------------------------------------------
def _commented(script, program):
    """The commented-out lines of ``script`` that run ``program``, as argument lists."""
    return [shlex.split(line[2:]) for line in script.splitlines() if line.startswith("# " + program + " ")]


@pytest.mark.onnx
@pytest.mark.onnxruntime
@pytest.mark.opencv
def test_the_bundles_trtexec_line_then_its_manifest_line_give_an_engine_edgecsp_runs(tmp_path, monkeypatch, capsys):
    tiny = trt_models.save(trt_models.clean_model(), tmp_path / "tiny.onnx")
    bundle = str(tmp_path / "b")
    assert main(["build", "--target", "tx2", tiny, "-o", bundle]) == 0
    capsys.readouterr()
    script = open(os.path.join(bundle, "build_on_device.sh")).read()
    readme = open(os.path.join(bundle, "README.txt")).read()
    lines = script.splitlines()
    trtexec = [i for i, line in enumerate(lines) if line.startswith("# /usr/src/tensorrt/bin/trtexec ")]
    assert len(trtexec) == 1 and lines[trtexec[0] + 1] == (
        "# edgecsp build --target tx2 --from-trtexec tiny-tx2-fp16.engine .")
    assert "with  edgecsp build --target tx2 --from-trtexec tiny-tx2-fp16.engine ." in readme
    fake, _ = _device(monkeypatch, "8.2", io=[("images", True, (1, 3, 32, 32)), ("p8", False, (1, 14, 4, 4))])
    monkeypatch.chdir(bundle)  # the script runs in its folder
    (save,) = [a for a in _commented(script, "/usr/src/tensorrt/bin/trtexec")[0] if a.startswith("--saveEngine=")]
    _trtexec(".", fake, save.split("=", 1)[1])  # what that trtexec line writes
    (edgecsp_line,) = [args for args in _commented(script, "edgecsp") if "--from-trtexec" in args]
    assert main(edgecsp_line[1:]) == 0
    assert read_engine_manifest("tiny-tx2-fp16.engine").target == "tx2"
    with TensorRTRunner("tiny-tx2-fp16.engine") as runner:
        assert runner.infer(np.zeros((1, 3, 32, 32), np.float32))[0].shape == (1, 14, 4, 4)


@pytest.mark.onnx
@pytest.mark.onnxruntime
@pytest.mark.opencv
def test_an_int8_bundle_without_a_trtexec_line_gets_no_manifest_line(tmp_path, capsys):
    tiny = trt_models.save(trt_models.clean_model(), tmp_path / "tiny.onnx")
    images = trt_models.write_images(tmp_path / "calib", count=2)
    bundle = str(tmp_path / "b")
    assert main(["build", "--target", "xavier-nx", "-p", "int8", tiny, "-o", bundle, "--calib", images,
                 "--count", "2", "--calib-method", "minmax"]) == 0
    script = open(os.path.join(bundle, "build_on_device.sh")).read()
    assert "# No equivalent trtexec line" in script and "--from-trtexec" not in script
    assert "--from-trtexec" not in open(os.path.join(bundle, "README.txt")).read()


@pytest.mark.onnx
@pytest.mark.onnxruntime
@pytest.mark.opencv
def test_a_dla_bundle_is_named_apart_from_the_gpu_one(tmp_path, monkeypatch, capsys):
    """The trial: `--dla-core 0` after a GPU build silently replaced the GPU bundle (same default name)."""
    tiny = trt_models.save(trt_models.clean_model(), tmp_path / "tiny.onnx")
    monkeypatch.chdir(str(tmp_path))
    assert main(["build", "--target", "xavier-nx", tiny]) == 0
    assert main(["build", "--target", "xavier-nx", tiny, "--dla-core", "0"]) == 0
    assert main(["build", "--target", "xavier-nx", tiny, "--dla-core", "1"]) == 0
    assert sorted(os.listdir("engines")) == ["tiny-xavier-nx-fp16-bundle", "tiny-xavier-nx-fp16-dla0-bundle",
                                             "tiny-xavier-nx-fp16-dla1-bundle"]
    from edgecsp.backends.tensorrt.manifest import read_bundle

    assert read_bundle("engines/tiny-xavier-nx-fp16-bundle").dla_core is None
    assert read_bundle("engines/tiny-xavier-nx-fp16-dla0-bundle").dla_core == 0
    script = open("engines/tiny-xavier-nx-fp16-dla1-bundle/build_on_device.sh").read()
    assert "--device-build . -o tiny-xavier-nx-fp16-dla1.engine\n" in script
    assert "--saveEngine=tiny-xavier-nx-fp16-dla1.engine" in script and "--useDLACore=1" in script
    assert "--from-trtexec tiny-xavier-nx-fp16-dla1.engine ." in script
