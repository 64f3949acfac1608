"""The host half of `edgecsp build` for TensorRT targets: the device bundle, its manifest and its checks."""
import json
import os
import re

import numpy as np
import pytest

from edgecsp.backends import read_artefact_meta
from edgecsp.backends.tensorrt.host import bundle as bundle_module
from edgecsp.backends.tensorrt.host.bundle import write_bundle
from edgecsp.backends.tensorrt.cache_format import parse_cache
from edgecsp.backends.tensorrt.host.calib_cache import activation_histograms, compute_amaxes
from edgecsp.backends.tensorrt.host.device_install import wheel_name
from edgecsp.backends.tensorrt.calib_data import calibration_set
from edgecsp.backends.tensorrt.options import make_options
from edgecsp.backends.tensorrt.host.lint import lint_model
from edgecsp.backends.tensorrt.manifest import (BUNDLE_MANIFEST, check_bundle_files, read_bundle, sha256_of)
from edgecsp.build import BuildConfig, build
from edgecsp.cli import main
from edgecsp.errors import InputError, MetadataError, UnsupportedError
from edgecsp.runtime.meta import META_KEY, ModelMeta

from tests.backends.tensorrt import trt_models

pytestmark = [pytest.mark.onnx, pytest.mark.onnxruntime, pytest.mark.opencv]
FILES = {"tiny.onnx", BUNDLE_MANIFEST, "build_on_device.sh", "README.txt", wheel_name()}


@pytest.fixture
def tiny(tmp_path):
    return trt_models.save(trt_models.clean_model(), tmp_path / "tiny.onnx")


@pytest.fixture
def images(tmp_path):
    return trt_models.write_images(tmp_path / "calib", count=3)


def _leftovers(folder):
    return [n for n in os.listdir(str(folder)) if n.startswith(".edgecsp-build-")]


def test_cli_build_for_tx2_writes_a_complete_device_bundle(tiny, images, tmp_path, capsys):
    out = tmp_path / "engines" / "tiny-tx2"
    assert main(["build", "--target", "tx2", tiny, "-o", str(out), "--calib", images, "--count", "3"]) == 0
    stdout = capsys.readouterr().out
    assert "wrote device bundle" in stdout and "The TensorRT engine is built on the tx2 itself, not here" in stdout
    assert set(os.listdir(str(out))) == FILES | {"fp16_range.json"}
    assert _leftovers(tmp_path / "engines") == []
    manifest = read_bundle(str(out))
    assert (manifest.target, manifest.precision, manifest.onnx, manifest.input_name) == ("tx2", "fp16", "tiny.onnx",
                                                                                         "images")
    assert manifest.input_shape == [1, 3, 32, 32] and manifest.outputs == ["p8"] and manifest.sm == "6.2"
    assert manifest.onnx_sha256 == sha256_of(str(out / "tiny.onnx")) and manifest.source_onnx_sha256 == sha256_of(tiny)
    assert manifest.fp16_check == {"ran": True, "images": 3, "report": "fp16_range.json"}
    assert manifest.calibration is None and manifest.trt_version == ["8.2.1", "8.2.1"]
    assert manifest.lint == {"matrix": "8.2", "warnings": []}
    assert ModelMeta.from_dict(manifest.meta).extra["target"] == "tx2"
    assert check_bundle_files(str(out), manifest) == str(out / "tiny.onnx")
    commands = (out / "build_on_device.sh").read_text()
    assert "THE TENSORRT ENGINE IS NOT IN THIS FOLDER: it is built on the tx2 itself" in commands
    device_line = "edgecsp build --target tx2 --precision fp16 --device-build . -o tiny-tx2-fp16.engine"
    assert device_line + "\n" in commands
    assert ("# /usr/src/tensorrt/bin/trtexec --onnx=tiny.onnx --saveEngine=tiny-tx2-fp16.engine --fp16 "
            "--workspace=1024\n") in commands
    assert "edgecsp:jetpack4 build --target tx2" in commands and os.access(str(out / "build_on_device.sh"), os.X_OK)
    import onnx

    bundled = onnx.load(str(out / "tiny.onnx"))
    assert lint_model(bundled, "tx2") == []
    assert json.loads(dict((p.key, p.value) for p in bundled.metadata_props)[META_KEY])["extra"]["precision"] == "fp16"


def test_default_bundle_path_and_rewrite(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    first = build(BuildConfig(tiny, target="nano"))
    assert first == os.path.join("engines", "tiny-nano-fp16-bundle") and os.path.isdir(first)
    assert read_bundle(first).fp16_check["why_not"] == "no calibration images (--calib)"
    again = build(BuildConfig(tiny, target="nano", options={"workspace_mib": 512}))
    assert again == first and read_bundle(again).workspace_mib == 512  # an older bundle is replaced whole
    assert "--workspace=512" in open(os.path.join(again, "build_on_device.sh")).read()
    assert _leftovers(tmp_path / "engines") == []


def test_int8_for_tx2_is_refused_by_the_cli_and_writes_nothing(tiny, images, tmp_path, capsys):
    out = tmp_path / "b"
    calib = ["--calib", images, "--count", "3"]
    assert main(["build", "-t", "tx2", "-p", "int8", tiny, "-o", str(out)] + calib) == 7
    err = capsys.readouterr().err
    assert "INT8 for tx2 is refused" in err and "--precision fp16" in err and "--allow-slow-int8" in err
    assert not out.exists()
    assert main(["build", "-t", "tx2", "-p", "int8", tiny, "-o", str(out), "--allow-slow-int8"] + calib) == 0
    manifest = read_bundle(str(out))
    assert manifest.allow_slow_int8 and manifest.calibration["cache"] == "calib.cache"
    assert "--allow-slow-int8" in (out / "build_on_device.sh").read_text()


def test_int8_cache_scales_match_the_histograms(tiny, images, tmp_path):
    out = write_bundle(tiny, str(tmp_path / "nx"), "int8", "xavier-nx", calib=images, calib_count=3,
                       calib_method="minmax")
    manifest = read_bundle(out)
    assert manifest.calibration["method"] == "minmax" and manifest.calibration["samples"] == 3
    assert manifest.calibration["algorithm"] == "MinMaxCalibration"
    record = json.load(open(os.path.join(out, manifest.calibration["record"])))
    assert manifest.calibration["record"] == "tiny-xavier-nx-int8.calibration.json"
    assert record["model"]["sha256"] == sha256_of(tiny) and record["samples"] == 3
    assert record["cache"] == {"file": "calib.cache", "sha256": sha256_of(os.path.join(out, "calib.cache"))}
    version, algorithm, scales = parse_cache(open(os.path.join(out, "calib.cache")).read())
    assert (version, algorithm) == (8502, "MinMaxCalibration")
    import onnx

    bundled = onnx.load(os.path.join(out, "tiny.onnx"))
    meta = ModelMeta.from_dict(manifest.meta)
    batches = calibration_set(make_options(calib=images, calib_count=3), meta)
    amaxes = compute_amaxes(activation_histograms(bundled, lambda: iter(batches)), "minmax")
    assert scales == dict((n, float(np.float32(a / 127.0))) for n, a in amaxes.items())
    # trtexec reads caches with EntropyCalibration2: a MinMax cache gets no trtexec line, and the files say why
    commands = open(os.path.join(out, "build_on_device.sh")).read()
    assert "trtexec --onnx" not in commands and "--int8" not in commands.replace("--precision int8", "")
    assert "No equivalent trtexec line: this bundle's calibration cache is MinMaxCalibration" in commands
    assert "has no trtexec line" in open(os.path.join(out, "README.txt")).read()
    entropy = write_bundle(tiny, str(tmp_path / "nx-entropy"), "int8", "xavier-nx", calib=images, calib_count=3)
    assert "--int8 --calib=calib.cache" in open(os.path.join(entropy, "build_on_device.sh")).read()


def test_int8_without_a_cache_gets_no_trtexec_line(tiny, images, tmp_path):
    out = write_bundle(tiny, str(tmp_path / "dev"), "int8", "xavier-nx", calib=images, calib_count=3,
                       calibrate_on="device")
    commands = open(os.path.join(out, "build_on_device.sh")).read()
    assert "trtexec --onnx" not in commands and "placeholder dynamic ranges" in commands
    with pytest.raises(UnsupportedError, match="TensorRT on the device has no percentile calibrator"):
        write_bundle(tiny, str(tmp_path / "pct"), "int8", "xavier-nx", calib=images, calib_count=3,
                     calibrate_on="device", calib_method="percentile")
    assert not (tmp_path / "pct").exists()


def test_int8_needs_calibration_data(tiny, tmp_path):
    with pytest.raises(InputError, match="INT8 needs calibration data: pass --calib"):
        write_bundle(tiny, str(tmp_path / "o"), "int8", "orin")


def test_given_calibration_cache_is_copied(tiny, tmp_path):
    cache = tmp_path / "mine.cache"
    cache.write_text("TRT-8502-EntropyCalibration2\nimages: 3c010204\n")
    out = write_bundle(tiny, str(tmp_path / "o"), "int8", "agx-xavier", calib_cache=str(cache))
    assert open(os.path.join(out, "calib.cache")).read() == cache.read_text()
    assert read_bundle(out).calibration["method"] == "given"
    cache.write_text("not a cache")
    with pytest.raises(InputError, match="not a TensorRT calibration cache"):
        write_bundle(tiny, str(tmp_path / "p"), "int8", "agx-xavier", calib_cache=str(cache))


def test_a_bundle_calibration_record_is_reused_only_for_the_same_model(tiny, images, tmp_path):
    first = write_bundle(tiny, str(tmp_path / "nx"), "int8", "xavier-nx", calib=images, calib_count=3)
    record = os.path.join(first, read_bundle(first).calibration["record"])
    again = write_bundle(tiny, str(tmp_path / "orin"), "int8", "orin", calib_cache=record)
    assert open(os.path.join(again, "calib.cache")).read() == open(os.path.join(first, "calib.cache")).read()
    assert read_bundle(again).calibration["method"] == "entropy"
    other = trt_models.save(trt_models.constant_resize_model(), tmp_path / "other.onnx")
    with pytest.raises(InputError, match="refusing to reuse .*calibrated for model"):
        write_bundle(other, str(tmp_path / "x"), "int8", "orin", calib_cache=record)


@pytest.mark.parametrize("make, message", [
    (trt_models.nonzero_model, r"mask_indices \(NonZero\): TensorRT 8.2 cannot parse NonZero"),
    (lambda: trt_models.clean_model(opset=17), r"opset 17 but target tx2 takes at most 13: re-export with "
                                                r"`edgecsp export --opset 13`")])
def test_lint_failures_stop_the_build_before_anything_is_written(make, message, tmp_path, capsys):
    path = trt_models.save(make(), tmp_path / "bad.onnx")
    out = tmp_path / "bundle"
    assert main(["build", "-t", "tx2", path, "-o", str(out)]) == 7
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() and _leftovers(tmp_path) == []
    assert main(["build", "-t", "orin", path, "-o", str(out)]) == 0  # TensorRT 8.6 parses both


def test_fp16_overflow_layers_are_kept_in_fp32(tmp_path, images):
    path = trt_models.save(trt_models.overflow_model(), tmp_path / "hot.onnx")
    out = write_bundle(path, str(tmp_path / "nx"), "fp16", "xavier-nx", calib=images, calib_count=3,
                       fp32_tensors=["conv"],
                       simplify=False)  # onnxsim would fold the Mul into the Conv
    manifest = read_bundle(out)
    # the overflows, the decode after the head convolution (its Mul), then the tensor asked for
    assert [(l["tensor"], l["node"]) for l in manifest.fp32_layers] == [("scaled_up", "scale_up"),
                                                                         ("scaled_relu", "relu"), ("p8", "scale_down"),
                                                                         ("conv", "head")]
    assert manifest.fp32_layers[2]["why"] == "decode tail, kept in float"
    readme = open(os.path.join(out, "README.txt")).read()  # overflows counted apart from the decode tail
    assert "2 layer(s) overflow FP16" in readme and "2 layer(s) kept in FP32: the decode tail" in readme
    report = json.load(open(os.path.join(out, "fp16_range.json")))
    assert [f["tensor"] for f in report["overflowing"]] == ["scaled_up", "scaled_relu"]
    commands = open(os.path.join(out, "build_on_device.sh")).read()
    assert "--layerPrecisions=scale_up:fp32,relu:fp32,scale_down:fp32,head:fp32" in commands
    tx2 = write_bundle(path, str(tmp_path / "tx2"), "fp16", "tx2", calib=images, calib_count=3)
    assert "trtexec 8.2.1 cannot keep layers in FP32" in open(os.path.join(tx2, "build_on_device.sh")).read()
    with pytest.raises(InputError, match="--fp32-tensor nope is not a tensor"):
        write_bundle(path, str(tmp_path / "x"), "fp16", "xavier-nx", fp32_tensors=["nope"])


def test_an_interrupted_bundle_leaves_nothing_and_keeps_the_old_one(tiny, tmp_path, monkeypatch):
    out = str(tmp_path / "b")
    write_bundle(tiny, out, None, "tx2")
    before = open(os.path.join(out, BUNDLE_MANIFEST)).read()

    def explode(manifest):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_module, "readme_text", explode)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(tiny, out, None, "tx2", workspace_mib=64)
    assert open(os.path.join(out, BUNDLE_MANIFEST)).read() == before and _leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        write_bundle(tiny, str(tmp_path / "new"), None, "tx2")
    assert not (tmp_path / "new").exists()


def test_output_must_be_a_bundle_folder(tiny, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not an edgecsp device bundle"):
        write_bundle(tiny, str(tmp_path / "mine"), None, "tx2")
    # `edgecsp build -o FOLDER`: users pass folders; the bundle goes inside under its default name
    inside = build(BuildConfig(tiny, target="tx2", output=str(tmp_path / "mine")))
    assert inside == os.path.join(str(tmp_path / "mine"), "tiny-tx2-fp16-bundle")
    assert sorted(os.listdir(str(tmp_path / "mine"))) == ["notes.txt", "tiny-tx2-fp16-bundle"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file: a device bundle is a folder"):
        write_bundle(tiny, str(tmp_path / "file"), None, "tx2")
    with pytest.raises(InputError, match="named like an engine"):
        build(BuildConfig(tiny, target="tx2", output=str(tmp_path / "x.engine")))


def test_this_machine_refuses_to_build_engines(tiny, tmp_path, capsys):
    assert main(["build", "-t", "tx2", "--device-build", tiny, "-o", str(tmp_path / "m.engine")]) == 7
    assert ("cannot build the tx2 engine on this machine: TensorRT is not installed on this machine (on a Jetson: "
            "sudo apt-get install python3-libnvinfer); write the device bundle instead") in capsys.readouterr().err
    out = str(tmp_path / "b")
    write_bundle(tiny, out, None, "tx2")
    assert main(["build", "-t", "tx2", out]) == 7
    assert "cannot build the tx2 engine from bundle" in capsys.readouterr().err
    assert main(["build", "-t", "tx2", "--bundle", out]) == 3  # a bundle of a bundle


def test_options_belong_to_tensorrt_targets(tiny, tmp_path):
    with pytest.raises(InputError, match="target cpu-ort .onnxruntime backend. takes no option workspace_mib"):
        build(BuildConfig(tiny, target="cpu-ort", options={"workspace_mib": 64}))
    with pytest.raises(UnsupportedError, match="device bundles are for targets whose engines are built"):
        build(BuildConfig(tiny, target="cpu-ort", mode="bundle"))
    with pytest.raises(InputError, match="unknown TensorRT build option.*bogus"):
        write_bundle(tiny, str(tmp_path / "o"), None, "tx2", bogus=1)
    with pytest.raises(InputError, match="--calib-method must be one of entropy, minmax, percentile"):
        write_bundle(tiny, str(tmp_path / "o"), None, "tx2", calib_method="kl")


def test_bundle_checks_refuse_a_modified_onnx(tiny, tmp_path):
    out = write_bundle(tiny, str(tmp_path / "b"), None, "tx2")
    manifest = read_bundle(out)
    with open(os.path.join(out, "tiny.onnx"), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputError, match=r"tiny.onnx in bundle b does not match its manifest \(sha256 .*copy the "
                                         r"bundle again or rebuild it on the host"):
        check_bundle_files(out, manifest)
    with pytest.raises(MetadataError, match="bundle.json not found"):
        read_bundle(str(tmp_path))


@pytest.mark.torch
@pytest.mark.onnxsim
def test_exported_demo_model_bundles_for_tx2(tmp_path, capsys):
    demo = str(tmp_path / "demo.onnx")
    assert main(["export", "shapes_tiny_csp", "--input-size", "64x64", "-o", demo, "--no-verify"]) == 0
    out = tmp_path / "demo-bundle"
    assert main(["build", "--target", "tx2", demo, "-o", str(out)]) == 0
    assert FILES - {"tiny.onnx"} | {"demo.onnx"} <= set(os.listdir(str(out)))
    assert read_bundle(str(out)).input_shape == [1, 3, 64, 64]
    assert read_artefact_meta(demo).model == "shapes_tiny_csp"


def test_uint8_input_is_an_opt_in_for_tensorrt_8_5_and_newer(demo_onnx, tmp_path, capsys):
    """--input uint8: the bundled ONNX takes the letterboxed frames and computes what the float one does on the
    runtime's preprocessing; refused where TensorRT has no uint8 inputs (8.2: tx2, nano) and for INT8."""
    import onnxruntime as ort

    from edgecsp.backends.tensorrt.policy import check_input_form
    from edgecsp.runtime.meta import FLOAT_NCHW, UINT8_NHWC_BGR
    from edgecsp.runtime.preprocess import preprocess

    assert check_input_form("tx2", None, "fp16") == FLOAT_NCHW  # float stays the default everywhere
    assert check_input_form("orin", "uint8", "fp16") == UINT8_NHWC_BGR
    for target, precision, message in (("tx2", "fp16", "needs TensorRT 8.5 or newer .* tx2 runs TensorRT 8.2.1"),
                                       ("nano", "fp16", "nano runs TensorRT 8.2.1"),
                                       ("orin", "int8", "not supported with TensorRT INT8")):
        with pytest.raises(UnsupportedError, match=message):
            check_input_form(target, "uint8", precision)
    out = str(tmp_path / "orin-bundle")
    write_bundle(demo_onnx, out, precision="fp16", target="orin", input_form="uint8")
    manifest = read_bundle(out)
    assert manifest.input_shape == [1, 256, 256, 3] and manifest.meta["input_form"] == UINT8_NHWC_BGR
    frames = [np.random.RandomState(3).randint(0, 255, (200, 320, 3)).astype(np.uint8)]
    meta = read_artefact_meta(demo_onnx)
    floats, _ = preprocess(frames, meta)
    frames_in, _ = preprocess(frames, meta._replace(input_form=UINT8_NHWC_BGR))
    float_session = ort.InferenceSession(demo_onnx, providers=["CPUExecutionProvider"])
    uint8_session = ort.InferenceSession(os.path.join(out, manifest.onnx), providers=["CPUExecutionProvider"])
    assert uint8_session.get_inputs()[0].type == "tensor(uint8)"
    want = float_session.run(None, {"images": floats})
    got = uint8_session.run(None, {"images": frames_in})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert main(["build", "--target", "tx2", "--input", "uint8", demo_onnx, "-o", str(tmp_path / "no")]) == 7
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--input float (the default)" in err[0] and not os.path.exists(str(tmp_path / "no"))


def test_uint8_bundle_runs_the_fp16_check_on_the_float_network(demo_onnx, tmp_path):
    """The FP16 range check feeds the float network float batches, whatever input the bundled ONNX takes."""
    images = trt_models.write_images(tmp_path / "calib", count=2)
    out = str(tmp_path / "orin-bundle")
    write_bundle(demo_onnx, out, precision="fp16", target="orin", input_form="uint8", calib=images, calib_count=2)
    manifest = read_bundle(out)
    assert manifest.fp16_check["ran"] and manifest.fp16_check["images"] == 2
    assert manifest.meta["input_form"] == "uint8_nhwc_bgr"


def test_engine_inputs_must_match_the_input_form():
    from edgecsp.backends.tensorrt.runner import TensorIO, check_engine_inputs
    from edgecsp.runtime.meta import UINT8_NHWC_BGR

    meta = trt_models.tiny_meta()
    float_input = [TensorIO("images", True, (1, 3, 32, 32), "float32", 0)]
    uint8_input = [TensorIO("images", True, (1, 32, 32, 3), "uint8", 0)]
    check_engine_inputs(float_input, meta, "m.engine")
    check_engine_inputs(uint8_input, meta._replace(input_form=UINT8_NHWC_BGR), "m.engine")
    with pytest.raises(UnsupportedError, match=r"input form uint8_nhwc_bgr\) says one uint8 input"):
        check_engine_inputs(float_input, meta._replace(input_form=UINT8_NHWC_BGR), "m.engine")
    with pytest.raises(UnsupportedError, match="says one float32 input"):
        check_engine_inputs(uint8_input, meta, "m.engine")
