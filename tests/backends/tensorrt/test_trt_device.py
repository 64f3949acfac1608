"""The device half's decisions (engine plan, FP32 pinning, buffers, calibrator, manifests) without a GPU, and
the end-to-end engine tests that run where TensorRT and a GPU are (marker ``tensorrt``)."""
import os
import sys

import numpy as np
import pytest

from edgecsp.backends import open_runner, read_artefact_meta
from edgecsp.backends.tensorrt import engine_build
from edgecsp.backends.tensorrt.cache_format import format_cache
from edgecsp.backends.tensorrt.calibrator import calibrator_class_name, make_calibrator
from edgecsp.backends.tensorrt.engine_build import (MIB, layers_to_pin, plan_engine, profile_shapes,
                                                    timing_cache_path)
from edgecsp.backends.tensorrt.manifest import (BundleManifest, EngineManifest, check_engine_file,
                                                check_engine_manifest, manifest_path, read_engine_manifest,
                                                sha256_of, to_json)
from edgecsp.backends.tensorrt.options import make_options
from edgecsp.backends.tensorrt.runner import TensorIO, TensorRTRunner, concrete_shape, plan_buffers
from edgecsp.errors import InputError, MetadataError, MissingDependency, UnsupportedError

from tests.backends.tensorrt import standins, trt_models


def _bundle_manifest(**changes):
    fields = dict(target="xavier-nx", precision="fp16", onnx="m.onnx", onnx_sha256="a" * 64, input_name="images",
                  input_shape=[1, 3, 32, 32], outputs=["p8"], meta=trt_models.tiny_meta().to_dict(),
                  trt_version=["8.5.2", "8.5.2"], sm="7.2", workspace_mib=1024)
    fields.update(changes)
    return BundleManifest(**fields)


def _engine(tmp_path, **changes):
    engine = tmp_path / "m-tx2-fp16.engine"
    engine.write_bytes(b"not really a plan")
    fields = dict(engine=engine.name, engine_sha256=sha256_of(str(engine)), tensorrt="8.2.1.8", gpu="NVIDIA Tegra X2",
                  sm="6.2", target="tx2", precision="fp16", input_name="images", input_shape=[1, 3, 32, 32],
                  outputs=["p8"], onnx_sha256="b" * 64, meta=trt_models.tiny_meta().to_dict())
    fields.update(changes)
    record = EngineManifest(**fields)
    with open(manifest_path(str(engine)), "w") as handle:
        handle.write(to_json(record))
    return str(engine), record


# -- engine manifests -----------------------------------------------------------------------------------------
def test_engine_manifest_mismatches_are_refused_with_rebuild_on_this_device(tmp_path):
    engine, record = _engine(tmp_path)
    assert read_engine_manifest(engine) == record
    check_engine_manifest(record, "8.2.1.8", "6.2", onnx_sha256="b" * 64)  # matches: no error
    cases = [(("8.5.2.2", "6.2"), {}, "built with TensorRT 8.2.1.8 but this device has TensorRT 8.5.2.2"),
             (("8.2.1.8", "7.2"), {}, r"built for sm_62 \(NVIDIA Tegra X2\) but this GPU is sm_72"),
             (("8.2.1.8", "6.2"), {"onnx_sha256": "c" * 64}, r"built from another ONNX \(sha256 bbbbbbbbbbbb")]
    for (version, sm), extra, message in cases:
        with pytest.raises(UnsupportedError, match=message) as err:
            check_engine_manifest(record, version, sm, "m-tx2-fp16.engine", **extra)
        assert "TensorRT engines only run where they were built: rebuild it on this device: `edgecsp build " \
               "--target tx2 --device-build" in str(err.value)


def test_engine_file_must_match_its_manifest(tmp_path):
    engine, record = _engine(tmp_path)
    check_engine_file(engine, record)
    with open(engine, "ab") as handle:
        handle.write(b"!")
    with pytest.raises(UnsupportedError, match="does not match its manifest .sha256.*rebuild it on this device"):
        check_engine_file(engine, record)


def test_engine_metadata_comes_from_the_sidecar_and_is_read_before_tensorrt(tmp_path, monkeypatch):
    engine, _ = _engine(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the metadata must not need TensorRT
    assert read_artefact_meta(engine) == trt_models.tiny_meta()
    runner = open_runner(engine)
    assert isinstance(runner, TensorRTRunner) and not runner.active
    with pytest.raises(MissingDependency, match="python3-libnvinfer"):
        runner.__enter__()
    os.remove(manifest_path(engine))
    with pytest.raises(MetadataError, match="has no sidecar manifest m-tx2-fp16.engine.json.*`edgecsp build`"):
        TensorRTRunner(engine).__enter__()


# -- the engine plan ------------------------------------------------------------------------------------------
def test_plan_for_an_fp16_bundle():
    plan = plan_engine(_bundle_manifest(fp32_layers=[{"tensor": "t1", "node": "n1", "why": "x"}]), make_options())
    assert (plan.fp16, plan.int8, plan.workspace_bytes, plan.profile, plan.calibration) == (
        True, False, 1024 * MIB, None, None)
    assert plan.fp32_tensors == ("t1",) and plan.batch_size == 1
    small = make_options(workspace_mib=64)
    assert plan_engine(_bundle_manifest(), small, ("workspace_mib",)).workspace_bytes == 64 * MIB
    assert plan_engine(_bundle_manifest(), small).workspace_bytes == 1024 * MIB
    fp32 = plan_engine(_bundle_manifest(precision="fp32", fp32_layers=[{"tensor": "t1"}]), make_options())
    assert not fp32.fp16 and fp32.fp32_tensors == ()


def test_plan_for_int8_uses_the_bundle_cache_or_device_images():
    cached = _bundle_manifest(precision="int8", calibration={"cache": "calib.cache", "algorithm": "MinMaxCalibration"})
    plan = plan_engine(cached, make_options())
    assert (plan.int8, plan.fp16, plan.calibration, plan.algorithm) == (True, True, "cache", "MinMaxCalibration")
    recalibrate = plan_engine(cached, make_options(calib="imgs", calib_method="entropy"), ("calib",))
    assert (recalibrate.calibration, recalibrate.algorithm) == ("images", "EntropyCalibration2")
    on_device = _bundle_manifest(precision="int8", calibration={"config": {"source": "/data/imgs"}, "cache": None,
                                                                "algorithm": "EntropyCalibration2"})
    assert plan_engine(on_device, make_options()).calibration == "images"
    with pytest.raises(InputError, match="has no calibration cache: pass --calib"):
        plan_engine(_bundle_manifest(precision="int8"), make_options())


def test_profiles_only_for_a_dynamic_batch():
    assert profile_shapes([1, 3, 32, 32], 4) is None
    assert profile_shapes([None, 3, 32, 32], 4) == ((1, 3, 32, 32), (4, 3, 32, 32), (4, 3, 32, 32))
    with pytest.raises(UnsupportedError, match="dynamic dimensions other than the batch"):
        profile_shapes([1, 3, None, None], 1)
    plan = plan_engine(_bundle_manifest(input_shape=[None, 3, 32, 32], max_batch=2), make_options())
    assert plan.profile[2] == (2, 3, 32, 32)


def test_layers_to_pin_matches_output_tensors():
    layers = [("conv", ["c"]), ("split", ["s0", "s1"]), ("relu", ["r"])]
    assert layers_to_pin(layers, ["s1", "r", "gone"]) == ([("split", [1]), ("relu", [0])], ["gone"])


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path):
    assert timing_cache_path(str(tmp_path / "m.engine"), "8.2.1.8", "6.2") == str(
        tmp_path / "tensorrt-8.2.1.8-sm_62.timing")


def test_runner_buffers():
    io = [TensorIO("images", True, (-1, 3, 32, 32), "float32", 0), TensorIO("p8", False, (-1, 14, 4, 4), "float32", 1)]
    assert plan_buffers(io, 4) == {"images": ((4, 3, 32, 32), "float32"), "p8": ((4, 14, 4, 4), "float32")}
    assert concrete_shape((2, 3), 9) == (2, 3)
    with pytest.raises(UnsupportedError, match="dynamic dimensions"):
        concrete_shape((1, -1, 4), 1)


# -- the calibrator and the builder configuration against the strict stand-ins (standins.py) ----------------
def _strict(version="8.2"):
    fake = standins.FakeTensorRT(version, [("images", True, (1, 3, 2, 2)), ("p8", False, (1, 3, 2, 2))],
                                 layers=[("conv", ["c"]), ("relu", ["r"])])
    cuda = standins.FakeCuda(standins.load_surface("pycuda-2022.json"), fake.memory)
    return fake, fake.module(), cuda


@pytest.mark.parametrize("version", ["8.2", "10.3"])
def test_calibrator_feeds_batches_then_stops(tmp_path, version):
    fake, trt, cuda = _strict(version)
    batches = [np.full((1, 3, 2, 2), i, np.float32) for i in range(2)]
    out = str(tmp_path / "device.cache")
    calibrator = make_calibrator(trt, cuda.module(), "EntropyCalibration2", 1, batches, cache_out=out)
    assert standins.check_overrides(calibrator) == []
    assert calibrator.get_batch_size() == 1 and calibrator.read_calibration_cache() is None
    first = calibrator.get_batch(["images"])
    assert first is not None and calibrator.get_batch(["images"]) == first  # one device buffer, reused
    assert calibrator.get_batch(["images"]) is None and calibrator.batches_fed == 2
    assert fake.memory.blocks[first[0]].view(np.float32)[0] == 1.0  # the last batch is on the device
    calibrator.write_calibration_cache(b"TRT-8201-EntropyCalibration2\nimages: 3c010204\n")
    assert open(out).read().startswith("TRT-8201")
    calibrator.raise_failure()  # nothing failed: nothing raised


def test_calibrator_hands_over_the_host_cache_restamped():
    fake, trt, cuda = _strict("8.5")
    text = format_cache({"images": 1.0}, "8.5.2")  # an Entropy2 header, read here by a MinMax calibrator
    calibrator = make_calibrator(trt, cuda.module(), "MinMaxCalibration", 1, cache_text=text)
    cache = calibrator.read_calibration_cache().decode()
    assert cache.splitlines()[0] == "TRT-8502-MinMaxCalibration" and cache.splitlines()[1] == text.splitlines()[1]
    assert calibrator_class_name("EntropyCalibration2") == "IInt8EntropyCalibrator2"
    with pytest.raises(InputError, match="'LegacyCalibration' is not one edgecsp feeds"):
        calibrator_class_name("LegacyCalibration")


def test_configure_and_pin_on_tensorrt_8_2():
    """8.2: no memory pools (the workspace is a property), OBEY_PRECISION_CONSTRAINTS exists (the old
    hand-made "8.2-like" stand-in lacked it and sent the code down the STRICT_TYPES path)."""
    fake, trt, _ = _strict("8.2")
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    plan = plan_engine(_bundle_manifest(fp32_layers=[{"tensor": "r"}]), make_options())
    config = engine_build._configure(trt, builder, network, plan, None, b"")
    assert config.max_workspace_size == 1024 * MIB
    assert [f.name for f in fake.configs[0].flags] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    relu = network.get_layer(1)
    assert relu.precision == trt.float32 and ("ILayer", "set_output_type", (0, trt.float32), {}) in fake.calls
    assert network.get_layer(0).precision is None


# -- on a machine with TensorRT and a GPU ---------------------------------------------------------------------
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_builds_and_matches_onnxruntime(tmp_path):
    from edgecsp.backends.tensorrt import build_problem
    from edgecsp.backends.tensorrt.host.bundle import write_bundle

    if build_problem("x86-cuda"):
        pytest.skip(build_problem("x86-cuda"))
    import onnxruntime as ort

    model_path = trt_models.save(trt_models.clean_model(), tmp_path / "m.onnx")
    folder = write_bundle(model_path, str(tmp_path / "bundle"), "fp32", "x86-cuda")
    engine = engine_build.build_from_bundle(folder)
    assert os.path.isfile(engine) and read_engine_manifest(engine).precision == "fp32"
    x = np.random.RandomState(0).rand(1, 3, 32, 32).astype(np.float32)
    expected = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(["p8"], {"images": x})[0]
    with open_runner(engine) as runner:
        got = runner.infer(x)[0]
    assert np.allclose(got, expected, atol=1e-3)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_runner_refuses_an_engine_from_another_tensorrt(tmp_path):
    engine, record = _engine(tmp_path, tensorrt="0.0.1")
    with pytest.raises(UnsupportedError, match="built with TensorRT 0.0.1.*rebuild it on this device"):
        with open_runner(engine):
            pass


def test_the_device_half_loads_nothing_from_host():
    """Importing the backend, its engine build and runner (what a Jetson loads) never imports backends/tensorrt/host
    (the bundle writer, lint, fit, FP16 check, histogram calibration)."""
    import subprocess
    import sys

    code = ("import sys, edgecsp.backends.tensorrt, edgecsp.backends.tensorrt.engine_build, "
            "edgecsp.backends.tensorrt.runner, edgecsp.backends.tensorrt.calibrator; "
            "print(sorted(m for m in sys.modules if m.startswith('edgecsp.backends.tensorrt.host')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
