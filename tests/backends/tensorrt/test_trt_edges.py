"""Less travelled paths of the TensorRT host half: device-side calibration requests, skipped checks, lint corners,
manifest corruption, build modes, GStreamer without GStreamer."""
import json
import os
import sys

import pytest


from edgecsp.backends import get_backend
from edgecsp.backends.tensorrt.host.bundle import write_bundle
from edgecsp.backends.tensorrt.engine_build import plan_engine
from edgecsp.backends.tensorrt.host.lint import lint_model
from edgecsp.backends.tensorrt.manifest import BUNDLE_MANIFEST, check_bundle_files, read_bundle
from edgecsp.backends.tensorrt.options import make_options
from edgecsp.build import BuildConfig, build, resolve_mode
from edgecsp.cli import main
from edgecsp.errors import InputError, MetadataError, UnsupportedError
from edgecsp.targets import get_target

from tests.backends.tensorrt import trt_models

def needs_onnx(test):
    return pytest.mark.onnx(pytest.mark.onnxruntime(pytest.mark.opencv(test)))


@pytest.fixture
def tiny(tmp_path):
    return trt_models.save(trt_models.clean_model(), tmp_path / "tiny.onnx")


@needs_onnx
def test_device_side_calibration_is_recorded_not_computed(tiny, tmp_path):
    images = trt_models.write_images(tmp_path / "imgs", count=2)
    out = write_bundle(tiny, str(tmp_path / "b"), "int8", "orin", calib=images, calib_count=2, calib_seed=3,
                       calibrate_on="device")
    manifest = read_bundle(out)
    assert "calib.cache" not in os.listdir(out) and manifest.calibration["cache"] is None
    assert manifest.calibration["config"] == {"source": os.path.abspath(images), "count": 2, "seed": 3,
                                              "every": None}
    assert "done by TensorRT on the device" in open(os.path.join(out, "README.txt")).read()
    assert "--calib=" not in open(os.path.join(out, "build_on_device.sh")).read()
    assert plan_engine(manifest, make_options()).calibration == "images"


@needs_onnx
def test_percentile_and_skipped_fp16_checks_are_recorded(tiny, tmp_path):
    images = trt_models.write_images(tmp_path / "imgs", count=2)
    out = write_bundle(tiny, str(tmp_path / "p"), "int8", "orin", calib=images, calib_count=2,
                       calib_method="percentile", fp16_check=False)
    manifest = read_bundle(out)
    assert manifest.fp16_check["why_not"] == "disabled (--no-fp16-check)"
    record = json.load(open(os.path.join(out, manifest.calibration["record"])))
    assert record["algorithm"]["percentile"] == 99.99 and record["algorithm"]["method"] == "percentile"
    fp32 = write_bundle(tiny, str(tmp_path / "f"), "fp32", "orin", calib=images, calib_count=2)
    assert read_bundle(fp32).fp16_check["why_not"] == "FP32 build"
    assert main(["build", "-t", "orin", tiny, "-o", str(tmp_path / "c"), "--calib", images, "--count", "2",
                 "--no-fp16-check"]) == 0
    assert read_bundle(str(tmp_path / "c")).fp16_check["why_not"] == "disabled (--no-fp16-check)"


@needs_onnx
def test_lint_corners():
    from onnx import helper

    with pytest.raises(UnsupportedError, match="target cpu does not use TensorRT"):
        lint_model(trt_models.clean_model(), "cpu")
    custom = trt_models.clean_model()
    custom.graph.node.append(helper.make_node("Gelu", ["p8"], ["g"], domain="com.microsoft", name="gelu"))
    assert "custom-domain operator com.microsoft::Gelu" in str(lint_model(custom, "orin")[0])
    unknown = trt_models.clean_model()
    unknown.graph.node.append(helper.make_node("Mish", ["p8"], ["m"], name="mish"))
    assert "Mish is not in TensorRT 8.6's operator list" in str(lint_model(unknown, "orin")[0])
    assert lint_model(unknown, "x86-cuda") == []
    old = trt_models.clean_model(opset=8)
    assert "ONNX opset 8 is below the 9 that TensorRT 10.0 parses" in str(lint_model(old, "x86-cuda")[0])
    branch = helper.make_graph([helper.make_node("NonZero", ["p8"], ["nz"], name="inner_nonzero")], "then", [],
                               [helper.make_tensor_value_info("nz", 7, None)])
    nested = trt_models.clean_model()
    nested.graph.node.append(helper.make_node("If", ["cond"], ["nz_out"], then_branch=branch, else_branch=branch,
                                              name="if"))
    names = [f.node for f in lint_model(nested, "tx2")]
    assert names == ["inner_nonzero", "inner_nonzero"]  # found inside both branches


@needs_onnx
def test_corrupted_bundles_are_refused(tiny, tmp_path):
    out = write_bundle(tiny, str(tmp_path / "b"), None, "tx2")
    path = os.path.join(out, BUNDLE_MANIFEST)
    data = json.load(open(path))
    for change, message in ((dict(data, kind="other"), "is not an edgecsp-device-bundle manifest"),
                            (dict(data, format=99), "uses manifest format 99 but this edgecsp reads up to 1"),
                            (dict((k, v) for k, v in data.items() if k != "onnx"), "field onnx is missing")):
        json.dump(change, open(path, "w"))
        with pytest.raises(MetadataError, match=message):
            read_bundle(out)
    open(path, "w").write("{")
    with pytest.raises(MetadataError, match="is not valid JSON"):
        read_bundle(out)
    json.dump(data, open(path, "w"))
    manifest = read_bundle(out)
    with pytest.raises(InputError, match="lacks its calibration cache calib.cache"):
        check_bundle_files(out, manifest._replace(calibration={"cache": "calib.cache"}))
    os.remove(os.path.join(out, "tiny.onnx"))
    with pytest.raises(InputError, match="bundle b lacks tiny.onnx: copy the whole folder"):
        check_bundle_files(out, manifest)


def test_build_modes():
    trt, ort = get_backend("tensorrt"), get_backend("onnxruntime")
    assert resolve_mode("auto", get_target("tx2"), trt) == "bundle"  # no TensorRT here
    assert resolve_mode("bundle", get_target("orin"), trt) == "bundle"
    assert resolve_mode("auto", get_target("cpu-ort"), ort) == "here"
    with pytest.raises(InputError, match="build mode must be one of auto, here, bundle"):
        resolve_mode("device", get_target("tx2"), trt)


@needs_onnx
def test_a_folder_source_needs_a_bundle_backend(tmp_path):
    with pytest.raises(InputError, match="is a folder: target cpu-ort builds from an .onnx file"):
        build(BuildConfig(str(tmp_path), target="cpu-ort"))


@needs_onnx
def test_device_build_checks_the_request_before_needing_tensorrt(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the machine without TensorRT, wherever this runs
    from edgecsp.backends.tensorrt.engine_build import build as device_build
    from edgecsp.backends.tensorrt.engine_build import build_from_bundle
    from edgecsp.errors import MissingDependency

    out = write_bundle(tiny, str(tmp_path / "b"), None, "tx2")
    with pytest.raises(InputError, match="this bundle was written for tx2, not nano: write one for nano on the host"):
        build_from_bundle(out, target="nano")
    with pytest.raises(InputError, match="prepared for fp16 .* not fp32: write a fp32 bundle on the host"):
        build_from_bundle(out, precision="fp32")
    with pytest.raises(InputError, match="must end in .engine"):
        build_from_bundle(out, str(tmp_path / "model.onnx"))
    with pytest.raises(MissingDependency, match="python3-libnvinfer"):
        build_from_bundle(out)
    with pytest.raises(MissingDependency, match="python3-libnvinfer"):
        device_build(tiny, str(tmp_path / "m.engine"), None, "tx2")
    assert not [n for n in os.listdir(str(tmp_path)) if n.endswith(".engine") or n.startswith(".edgecsp-build-")]
