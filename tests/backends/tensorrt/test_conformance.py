"""The TensorRT device code against the real API of every TensorRT version the targets claim (8.2, 8.5, 8.6,
10.3), and pycuda's: recorded surfaces, a static check of every name the package uses, and the build,
calibrator and runner code paths run against strict stand-ins built from those surfaces (standins.py)."""
import ast
import glob
import json
import os
import sys

import numpy as np
import pytest

from edgecsp.backends.tensorrt import engine_build, runner as runner_module
from edgecsp.backends.tensorrt.calibrator import make_calibrator
from edgecsp.backends.tensorrt.device import GpuInfo
from edgecsp.backends.tensorrt.engine_build import calibration_shape, plan_engine
from edgecsp.backends.tensorrt.logger import build_failure_message, make_logger
from edgecsp.backends.tensorrt.manifest import BundleManifest, EngineManifest, manifest_path, to_json
from edgecsp.backends.tensorrt.options import make_options
from edgecsp.backends.tensorrt.runner import TensorRTRunner, engine_max_batch
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.targets import list_targets
from tests.backends.tensorrt import standins, trt_models
from tests.gates import ROOT

PACKAGE = os.path.join(ROOT, "edgecsp")
SCRIPT = os.path.join(ROOT, "scripts", "trt_api_surface.py")
# TensorRT names the package reaches only behind feature detection (hasattr/getattr), with the versions that
# have them; everything else it names must exist in every version
GUARDED = {"MemoryPoolType.WORKSPACE": ("8.5", "8.6", "10.3"), "TensorIOMode.INPUT": ("8.5", "8.6", "10.3"),
           "BuilderFlag.STRICT_TYPES": ("8.2", "8.5", "8.6"),
           "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": ("8.2", "8.5", "8.6", "10.3")}


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("trt_api_surface", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the surfaces ---------------------------------------------------------------------------------------------
def test_every_claimed_tensorrt_version_has_a_surface_with_its_provenance():
    claimed = set()
    for target in list_targets():
        if target.trt_version:
            low = ".".join(target.trt_version[0].split(".")[:2])
            claimed.add(low)
    assert claimed <= set(standins.VERSIONS) | {"10.0"}  # x86-cuda's 10.0 floor is checked on 10.3's surface
    for version, name in standins.VERSIONS.items():
        surface = standins.load_surface(name)
        assert surface["format"] == "edgecsp-api-surface" and surface["tensorrt"] == version
        provenance = surface["provenance"]
        assert provenance["kind"] in ("binding sources", "wheel from PyPI")
        if provenance["kind"] == "binding sources":
            assert provenance["branch"] == "release/" + version and len(provenance["commit"]) == 40
        else:
            assert provenance["wheel"].startswith("tensorrt") and len(provenance["wheel_sha256"]) == 64
        for cls in ("Builder", "IBuilderConfig", "OnnxParser", "Runtime", "ICudaEngine", "IExecutionContext",
                    "ILogger", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IOptimizationProfile"):
            assert cls in surface["classes"], (version, cls)


@pytest.mark.parametrize("version", ["8.6", "10.3"])
def test_the_source_parser_agrees_with_the_real_wheel(version):
    """8.2 and 8.5 have no x86 wheels, so their surfaces come from the binding sources; where both exist, what the
    sources say is what the importable module has (the parser may only miss things, never invent them)."""
    source = standins.load_surface("tensorrt-{}.source.json".format(version))
    wheel = standins.load_surface(standins.VERSIONS[version])
    invented = []
    for cls, entry in source["classes"].items():
        real = wheel["classes"].get(cls)
        if real is None:
            invented.append(cls)
            continue
        real_members = standins.members_of(wheel, cls)
        invented += ["{}.{}".format(cls, m) for m in entry["members"] if m not in real_members and
                     not m.startswith("__") and "{}.{}".format(cls, m) not in wheel["classes"]]
    assert invented == []
    assert set(source["module"]) - set(wheel["module"]) == set()
    # argument names agree wherever the sources name them
    checked = 0
    for cls in ("IBuilderConfig", "IOptimizationProfile", "IExecutionContext", "OnnxParser", "ICudaEngine"):
        for name, entry in source["classes"][cls]["members"].items():
            if entry.get("args") and "overloads" not in entry and "overloads" not in wheel["classes"][cls]["members"][name]:
                assert entry["args"] == wheel["classes"][cls]["members"][name]["args"], (cls, name)
                checked += 1
    assert checked > 20


def test_the_parser_reads_pybind11_chains():
    text = '''
    py::class_<ILogger, PyLogger> base{m, "ILogger"};  // comment with "strings"
    base.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a);
    py::enum_<ILogger::Severity>(base, "Severity", py::arithmetic()).value("ERROR", x).value("WARNING", y)
        .export_values();
    py::class_<IBuilderConfig>(m, "IBuilderConfig")
        .def_property("max_workspace_size", &get, &set)
        .def_property_readonly("flags", &flags)
        .def("set_flag", [](IBuilderConfig& c, BuilderFlag f) { c.setFlag(f); }, "flag"_a);
    m.def("nptype", &nptype, "trt_type"_a);
    '''
    surface = _script().parse_bindings({"x.cpp": text})
    classes = surface["classes"]
    assert classes["ILogger"]["members"]["log"] == {"kind": "method", "args": ["severity", "msg"]}
    assert classes["ILogger"]["members"]["WARNING"] == {"kind": "value"}  # export_values
    assert set(classes["ILogger.Severity"]["members"]) == {"ERROR", "WARNING", "name", "value"}
    config = classes["IBuilderConfig"]["members"]
    assert config["max_workspace_size"]["kind"] == "property" and config["flags"]["kind"] == "readonly"
    assert config["set_flag"]["args"] == ["flag"] and surface["module"]["nptype"] == "function"


MIRROR = os.environ.get("EDGECSP_TENSORRT_SOURCES", "/work/.mirror/NVIDIA+TensorRT/repo")


@pytest.mark.skipif(not os.path.isdir(MIRROR), reason="needs a git checkout of NVIDIA/TensorRT (set "
                    "EDGECSP_TENSORRT_SOURCES); the surfaces were recorded from one, not reproducible in CI")
@pytest.mark.parametrize("name", ["tensorrt-8.2.json", "tensorrt-8.5.json", "tensorrt-8.6.source.json",
                                  "tensorrt-10.3.source.json"])
def test_the_script_reproduces_the_source_surfaces(name):
    script = _script()
    recorded = open(os.path.join(standins.SURFACES, name)).read()
    version = name.split("-")[1].replace(".source", "").replace(".json", "")
    assert script.render(script.from_source(MIRROR, "release/" + version)) == recorded


WHEELS = os.environ.get("EDGECSP_TENSORRT_WHEELS", "/tmp/trtwheels")


@pytest.mark.skipif(not glob.glob(os.path.join(WHEELS, "tensorrt*bindings*.whl")),
                    reason="needs the bindings wheels (pip download --no-deps tensorrt-bindings==8.6.1 "
                           "tensorrt-cu12-bindings==10.3.0 into EDGECSP_TENSORRT_WHEELS); not downloaded in CI")
@pytest.mark.parametrize("version,pattern", [("8.6", "tensorrt_bindings-8.6.1-*.whl"),
                                             ("10.3", "tensorrt_cu12_bindings-10.3.0-*.whl")])
def test_the_script_reproduces_the_wheel_surfaces(version, pattern):
    script = _script()
    wheel = glob.glob(os.path.join(WHEELS, pattern))[0]
    recorded = open(os.path.join(standins.SURFACES, standins.VERSIONS[version])).read()
    assert script.render(script.from_wheel(wheel)) == recorded


# -- every TensorRT and pycuda name the package uses --------------------------------------------------------
def _names_used(*aliases):
    """``{dotted name after the alias: [file:line]}`` for attribute chains on ``aliases`` ("trt", "self._cuda")
    in edgecsp/backends/tensorrt."""
    found = {}
    for path in glob.glob(os.path.join(PACKAGE, "backends", "tensorrt", "*.py")):
        for node in ast.walk(ast.parse(open(path).read())):
            if not isinstance(node, ast.Attribute):
                continue
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if not isinstance(cur, ast.Name):
                continue
            dotted = ".".join([cur.id] + list(reversed(parts)))
            for alias in aliases:
                if dotted.startswith(alias + "."):
                    found.setdefault(dotted[len(alias) + 1:], []).append(
                        "{}:{}".format(os.path.basename(path), node.lineno))
    # keep the longest chains (trt.BuilderFlag.FP16, not also trt.BuilderFlag)
    return dict((n, w) for n, w in found.items() if not any(o.startswith(n + ".") for o in found))


def _exists(surface, dotted):
    head, _, rest = dotted.partition(".")
    if head not in surface["module"]:
        return False
    if not rest or surface["module"][head] in ("attribute", "function"):  # trt.__version__.split: a str's
        return True
    return rest.split(".")[0] in standins.members_of(surface, head) or (head + "." + rest.split(".")[0]) in surface[
        "classes"]


def test_every_tensorrt_name_the_package_uses_exists_where_it_is_used():
    used = _names_used("trt")
    assert "BuilderFlag.FP16" in used and "ILogger.Severity" in used  # the scan sees the code
    missing = []
    for dotted, where in sorted(used.items()):
        for version, name in standins.VERSIONS.items():
            if dotted in GUARDED and version not in GUARDED[dotted]:
                continue
            if not _exists(standins.load_surface(name), dotted):
                missing.append("trt.{} (at {}) is not in TensorRT {}".format(dotted, ", ".join(where), version))
    assert missing == []
    for dotted, versions in GUARDED.items():  # the table says the truth about each guarded name
        for version, name in standins.VERSIONS.items():
            assert _exists(standins.load_surface(name), dotted) == (version in versions), (dotted, version)


def test_every_pycuda_call_the_package_makes_is_in_pycuda():
    surface = standins.load_surface("pycuda-2022.json")
    used = _names_used("cuda", "self._cuda")
    assert {"mem_alloc", "memcpy_htod", "pagelocked_empty", "Stream"} <= set(used)
    assert [n for n in used if n.split(".")[0] not in surface["module"]] == []


# -- the code paths against the stand-ins -------------------------------------------------------------------
def _manifest(**overrides):
    values = dict(target="x86-cuda", precision="fp16", onnx="m.onnx", onnx_sha256="a" * 64, input_name="images",
                  input_shape=[1, 3, 32, 32], outputs=["p8"], meta=trt_models.tiny_meta().to_dict(),
                  trt_version=["10.0.1", "10.x"], sm=None, workspace_mib=1024, max_batch=1, dla_core=None,
                  allow_slow_int8=False, fp32_layers=[], calibration=None,
                  fp16_check={"ran": False, "why_not": "test"}, lint={"matrix": "10.1", "warnings": []}, notes=[],
                  source_onnx="m.onnx", source_onnx_sha256="a" * 64, edgecsp="test")
    values.update(overrides)
    return BundleManifest(**values)


IO = [("images", True, (1, 3, 32, 32)), ("p8", False, (1, 14, 4, 4))]


@pytest.mark.parametrize("version", sorted(standins.VERSIONS))
def test_fp16_build_with_fp32_layers_and_timing_cache(version, tmp_path):
    fake = standins.FakeTensorRT(version, IO, layers=[("conv", ["c"]), ("relu", ["r"])])
    trt = fake.module()
    onnx_path = str(tmp_path / "m.onnx")
    open(onnx_path, "wb").close()
    plan = plan_engine(_manifest(fp32_layers=[{"tensor": "r", "node": "relu"}]), make_options())
    engine, timing = engine_build._build(trt, onnx_path, plan, _manifest(), make_options(), str(tmp_path / "m.engine"),
                                         str(tmp_path / "none.timing"))
    assert engine == b"engine-bytes" and timing == b"timing"
    config = fake.configs[0]
    flags = [f.name for f in config.flags]
    obey = "OBEY_PRECISION_CONSTRAINTS"  # 8.2 has it too: the 8.2 stand-in of old lacked it
    assert flags == ["FP16", obey]
    if version == "8.2":  # no memory pools on 8.2: the workspace is a property there
        assert ("IBuilderConfig", "max_workspace_size=", (1024 << 20,), {}) in fake.calls
    else:
        assert list(config.pools.values()) == [1024 << 20]


@pytest.mark.parametrize("version", ["8.5", "10.3"])
def test_dynamic_batch_int8_calibrates_at_its_own_profile(version, tmp_path):
    """The main profile's kOPT is max_batch; calibration gets min = opt = max = the calibrator's batch."""
    io = [("images", True, (-1, 3, 32, 32)), ("p8", False, (-1, 14, 4, 4))]
    fake = standins.FakeTensorRT(version, io)
    trt, cuda = fake.module(), standins.FakeCuda(standins.load_surface("pycuda-2022.json"), fake.memory)
    manifest = _manifest(precision="int8", input_shape=[None, 3, 32, 32], max_batch=4, target="xavier-nx",
                         calibration={"cache": "calib.cache", "algorithm": "EntropyCalibration2"})
    plan = plan_engine(manifest, make_options())
    assert plan.profile[1] == (4, 3, 32, 32) and calibration_shape(plan) == (1, 3, 32, 32)
    calibrator = make_calibrator(trt, cuda.module(), plan.algorithm, plan.batch_size,
                                 [np.zeros((1, 3, 32, 32), np.float32)] * 2)
    config = engine_build._configure(trt, trt.Builder(trt.Logger()), None, plan, calibrator, b"")
    main, calib = fake.profiles
    assert main.shapes["images"] == ((1, 3, 32, 32), (4, 3, 32, 32), (4, 3, 32, 32))
    assert calib.shapes["images"] == ((1, 3, 32, 32),) * 3
    assert fake.configs[0].calibration_profile is not None and config is not None
    assert standins.check_overrides(calibrator) == []  # every override is a method TensorRT calls
    fake.configs[0].int8_calibrator = calibrator  # what _configure set, read back by the fake builder
    assert trt.Builder(trt.Logger()).build_serialized_network(None, config) == b"engine-bytes"
    assert calibrator.batches_fed == 2


@pytest.mark.parametrize("version", ["8.2", "10.3"])
def test_a_failing_calibration_batch_is_raised_after_the_build_with_its_images(version, tmp_path):
    fake = standins.FakeTensorRT(version, IO)
    trt, cuda = fake.module(), standins.FakeCuda(standins.load_surface("pycuda-2022.json"), fake.memory)

    def batches():
        yield np.zeros((1, 3, 32, 32), np.float32)
        raise InputError("cannot decode image b.jpg")

    calibrator = make_calibrator(trt, cuda.module(), "EntropyCalibration2", 1, batches(),
                                 sample_names=["a.jpg", "b.jpg", "c.jpg"])
    assert calibrator.get_batch(["images"]) is not None
    assert calibrator.get_batch(["images"]) is None  # nothing crosses TensorRT 8.2's noexcept trampoline
    assert calibrator.get_batch(["images"]) is None  # and it stays stopped
    with pytest.raises(InputError, match=r"INT8 calibration failed in get_batch at batch 1 \(b.jpg\): "
                                         r"InputError: cannot decode image b.jpg"):
        calibrator.raise_failure()
    wrong = make_calibrator(trt, cuda.module(), "MinMaxCalibration", 2, [np.zeros((1, 3, 32, 32), np.float32)])
    assert wrong.get_batch(["images"]) is None
    with pytest.raises(RuntimeError, match="a calibration batch of 1 images for a calibrator of batch 2"):
        wrong.raise_failure()


@pytest.mark.parametrize("version", ["8.2", "10.3"])
def test_build_failures_carry_tensorrts_own_errors(version, tmp_path):
    fake = standins.FakeTensorRT(version, IO, build_ok=False,
                                 build_errors=["[graphShapeAnalyzer.cpp::analyzeShapes::1285] Error Code 4: "
                                               "Miscalculated shape of Concat_12"])
    trt = fake.module()
    onnx_path = str(tmp_path / "m.onnx")
    open(onnx_path, "wb").close()
    plan = plan_engine(_manifest(), make_options())
    printed = []
    logger = make_logger(trt, echo=printed.append)
    assert standins.check_overrides(logger) == []
    fake.loggers.append(logger)
    with pytest.raises(UnsupportedError, match=r"failed to build the engine: \[graphShapeAnalyzer.cpp.*Concat_12$"):
        engine_build._serialize(trt, trt.Builder(logger), None, engine_build._configure(
            trt, trt.Builder(logger), None, plan, None, b""), logger)
    assert printed and printed[0].startswith("[TensorRT]")


def test_the_failure_message_only_blames_the_workspace_when_tensorrt_does():
    assert "raise --workspace" in build_failure_message("8.2.1", ["Requested amount of GPU memory (1 bytes) could "
                                                                  "not be allocated: out of memory"])
    assert "raise --workspace" not in build_failure_message("8.2.1", ["Network has dynamic or shape inputs, but no "
                                                                      "optimization profile has been defined"])
    assert "TensorRT reported no error" in build_failure_message("8.2.1", [])


def _engine_files(tmp_path, version, input_shape, max_batch=1):
    engine = str(tmp_path / "m.engine")
    with open(engine, "wb") as handle:
        handle.write(b"engine-bytes")
    import hashlib

    record = EngineManifest(engine="m.engine", engine_sha256=hashlib.sha256(b"engine-bytes").hexdigest(),
                            tensorrt=standins.FULL_VERSIONS[version], gpu="Fake", sm="8.7", target="x86-cuda",
                            precision="fp16", input_name="images", input_shape=list(input_shape), outputs=["p8"],
                            onnx_sha256="b" * 64, meta=trt_models.tiny_meta().to_dict(), max_batch=max_batch,
                            calibration=None, fp32_layers=[], dla_core=None, workspace_mib=64, edgecsp="test")
    with open(manifest_path(engine), "w") as handle:
        handle.write(to_json(record))
    return engine


def _runner_with(monkeypatch, fake, cuda):
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module())
    pycuda = cuda.module()
    monkeypatch.setitem(sys.modules, "pycuda", type(sys)("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda)
    sys.modules["pycuda"].driver = pycuda
    monkeypatch.setattr(runner_module, "cuda_device", lambda index=0: GpuInfo("Fake", "8.7"))
    monkeypatch.setattr(runner_module, "check_engine_manifest", lambda *args: None)  # the versions are fakes'


@pytest.mark.parametrize("version", sorted(standins.VERSIONS))
def test_runner_runs_a_static_batch_of_four_through_either_io_api(version, tmp_path, monkeypatch):
    """Bindings (8.2) or named tensors (8.5+), pinned buffers, async copies: the outputs are the engine's."""
    io = [("images", True, (4, 3, 32, 32)), ("p8", False, (4, 14, 4, 4))]
    fake = standins.FakeTensorRT(version, io)
    cuda = standins.FakeCuda(standins.load_surface("pycuda-2022.json"), fake.memory)
    _runner_with(monkeypatch, fake, cuda)
    engine = _engine_files(tmp_path, version, [4, 3, 32, 32], max_batch=1)  # the manifest says 1: dim 0 wins
    x = np.random.RandomState(0).rand(4, 3, 32, 32).astype(np.float32)
    runner = TensorRTRunner(engine)
    with runner:
        assert runner._max_batch == 4 and runner.input_shape == (4, 3, 32, 32)
        out = runner.infer(x)[0]
    assert out.shape == (4, 14, 4, 4)  # the head the metadata describes; the fake fills it from x's first values
    np.testing.assert_allclose(out, (2 * x.ravel()[:out.size] + 1).reshape(out.shape))
    api = "execute_async_v2" if version == "8.2" else "execute_async_v3"
    assert [c for c in fake.calls if c[1] == api]
    assert cuda.retained == cuda.detached == 1 and cuda.stack == []  # the primary context is released
    assert engine_max_batch((-1, 3, 32, 32), 6) == 6 and engine_max_batch((2, 3, 8, 8), 6) == 2


@pytest.mark.parametrize("version", ["8.2", "10.3"])
def test_an_enqueue_failure_raises(version, tmp_path, monkeypatch):
    fake = standins.FakeTensorRT(version, IO, enqueue_ok=False)
    cuda = standins.FakeCuda(standins.load_surface("pycuda-2022.json"), fake.memory)
    _runner_with(monkeypatch, fake, cuda)
    engine = _engine_files(tmp_path, version, [1, 3, 32, 32])
    with TensorRTRunner(engine) as runner:
        with pytest.raises(RuntimeError, match="could not enqueue m.engine for execute_async_v"):
            runner.infer(np.zeros((1, 3, 32, 32), np.float32))
    assert cuda.detached == 1


def test_the_stand_ins_refuse_what_the_version_lacks():
    """The strictness itself: the failure modes the old SimpleNamespace stand-ins let through."""
    trt82, trt10 = standins.FakeTensorRT("8.2", IO).module(), standins.FakeTensorRT("10.3", IO).module()
    with pytest.raises(standins.SurfaceError, match="tensorrt 8.2 has no attribute 'MemoryPoolType'"):
        trt82.MemoryPoolType
    with pytest.raises(standins.SurfaceError, match="BuilderFlag has no member 'STRICT_TYPES'"):
        trt10.BuilderFlag.STRICT_TYPES
    config = trt10.Builder(trt10.Logger()).create_builder_config()
    with pytest.raises(standins.SurfaceError, match="no settable property 'max_workspace_size'"):
        config.max_workspace_size = 1
    with pytest.raises(standins.SurfaceError, match=r"set_memory_pool_limit\(<1>, size\) does not match"):
        config.set_memory_pool_limit(trt10.MemoryPoolType.WORKSPACE, size=1)
    with pytest.raises(standins.SurfaceError, match="has no attribute 'get_binding_shape'"):
        engine = trt10.Runtime(trt10.Logger()).deserialize_cuda_engine(b"engine-bytes")
        engine.create_execution_context().get_binding_shape(0)


# -- GStreamer elements per JetPack -------------------------------------------------------------------------
def test_every_gstreamer_element_edgecsp_builds_exists_on_each_jetpack():
    from edgecsp.runtime import gstreamer

    table = json.load(open(os.path.join(standins.SURFACES, "gstreamer-jetpack.json")))
    pipelines = [gstreamer.file_pipeline("v" + ext, codec) for ext in gstreamer.DEMUXERS for codec in ("h264", "h265")]
    pipelines += [gstreamer.rtsp_pipeline("rtsp://cam/s", codec) for codec in ("h264", "h265")]
    pipelines.append(gstreamer.csi_pipeline(0))
    elements = set()
    for pipeline in pipelines:
        for stage in pipeline.split("!"):
            word = stage.split()[0]
            if "/" not in word:  # caps filters are not elements
                elements.add(word)
    jetpacks = set(t.jetpack for t in list_targets() if t.jetpack)
    assert jetpacks <= set(table["jetpack"])
    for jetpack in jetpacks:
        missing = elements - set(table["common"]) - set(table["jetpack"][jetpack])
        assert missing == set(), (jetpack, missing)


@pytest.mark.parametrize("version", ["8.5", "10.3"])
def test_dla_build_options(version):
    fake = standins.FakeTensorRT(version, IO)
    trt = fake.module()
    plan = plan_engine(_manifest(target="xavier-nx", dla_core=1), make_options())
    config = engine_build._configure(trt, trt.Builder(trt.Logger()), None, plan, None, b"")
    assert config.default_device_type == trt.DeviceType.DLA and config.DLA_core == 1
    assert [f.name for f in fake.configs[0].flags] == ["FP16", "GPU_FALLBACK"]


def test_percentile_is_refused_for_calibration_on_the_device():
    manifest = _manifest(precision="int8", calibration={"cache": "calib.cache", "algorithm": "MinMaxCalibration"})
    with pytest.raises(UnsupportedError, match="TensorRT on the device has no percentile calibrator"):
        plan_engine(manifest, make_options(calib="/data/images", calib_method="percentile"))
    device = _manifest(precision="int8", calibration={"config": {"source": "/data"}, "method": "percentile"})
    with pytest.raises(UnsupportedError, match="no percentile calibrator"):
        plan_engine(device, make_options())
    # a host-made percentile cache (written with a MinMax header) is fine: TensorRT only reads it
    assert plan_engine(manifest, make_options()).calibration == "cache"


def test_the_calibration_context_releases_the_primary_context(monkeypatch):
    from edgecsp.backends.tensorrt import calibrator

    cuda = standins.FakeCuda(standins.load_surface("pycuda-2022.json"))
    monkeypatch.setattr(calibrator, "require", lambda name, purpose="": cuda.module())
    with calibrator.cuda_context(0):
        assert len(cuda.stack) == 1
    assert cuda.stack == [] and cuda.retained == cuda.detached == 1
