import os

import pytest

from edgecsp._lazy import available

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FIXTURES = os.path.join(os.path.dirname(ROOT), "shared", "fixtures")

_GATES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "torch": "torch", "tensorrt": "tensorrt"}


def pytest_collection_modifyitems(config, items):
    # package-gated markers skip through the same availability check the code uses
    for item in items:
        for marker, module in _GATES.items():
            if item.get_closest_marker(marker) and not available(module):
                item.add_marker(pytest.mark.skip(reason="{} is not installed".format(module)))


@pytest.fixture(scope="session")
def demo_card():
    return os.path.join(ROOT, "models", "shapes_tiny_csp.json")


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory, demo_card):
    """The shipped demo model exported once per session (opset 13, simplified, verified)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from edgecsp.export.onnx_export import ExportConfig, export

    out = str(tmp_path_factory.mktemp("demo") / "shapes_tiny_csp.onnx")
    return export(ExportConfig(card=demo_card, output=out)).path


@pytest.fixture(scope="session")
def demo_ir(demo_onnx):
    """The demo model as an OpenVINO FP32 IR."""
    pytest.importorskip("openvino")
    from edgecsp.build import BuildConfig, build

    return build(BuildConfig(onnx_path=demo_onnx, target="cpu", precision="fp32",
                             output=demo_onnx.replace(".onnx", "-cpu-fp32.xml")))


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory):
    """A generated 60-frame video of moving shapes with its ground truth."""
    pytest.importorskip("cv2")
    from edgecsp.data.shapes import generate_video

    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    gt = generate_video(path, 60, seed=11)
    return path, gt


@pytest.fixture(scope="session")
def tiny_detector_onnx(tmp_path_factory):
    """shapes_tiny_csp with random weights at 128x128: a real CSP detector graph (INT8, eval tests), ~2 s."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from edgecsp.export.onnx_export import ExportConfig, export

    out = str(tmp_path_factory.mktemp("tiny_detector") / "tiny_csp.onnx")
    return export(ExportConfig(model="shapes_tiny_csp", output=out, input_size=(128, 128))).path


@pytest.fixture(scope="session")
def shapes_val(tmp_path_factory):
    """A 10-image 'shapes' validation set (COCO json + images), seed 1000 as in the README."""
    pytest.importorskip("cv2")
    from edgecsp.data.shapes import generate_dataset

    return generate_dataset(str(tmp_path_factory.mktemp("shapes_val")), 10, seed=1000)
