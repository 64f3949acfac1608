"""Shared fixtures, and the one way tests skip: markers gated in ``tests/gates.py`` (see its docstring).

Every marker is declared from ``gates.GATES`` (none in pyproject.toml; ``--strict-markers`` refuses others): a
test marked ``@pytest.mark.openvino`` runs only where ``edgecsp._lazy.available("openvino")``.
"""
import os

import pytest

from tests.gates import GATES, ROOT, needs


def pytest_configure(config):
    for marker, (_, needs_what, _) in sorted(GATES.items()):
        config.addinivalue_line("markers", "{}: needs {}".format(marker, needs_what))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for marker in GATES:
        if item.get_closest_marker(marker):
            needs(marker)


@pytest.fixture(scope="session")
def demo_card():
    return os.path.join(ROOT, "models", "shapes_tiny_csp.json")


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory, demo_card):
    """The shipped demo model exported once per session (opset 13, simplified, verified)."""
    needs("torch", "onnxruntime")
    from edgecsp.export.onnx_export import ExportConfig, export

    out = str(tmp_path_factory.mktemp("demo") / "shapes_tiny_csp.onnx")
    return export(ExportConfig(card=demo_card, output=out)).path


@pytest.fixture(scope="session")
def demo_ir(demo_onnx):
    """The demo model as an OpenVINO FP32 IR."""
    needs("openvino")
    from edgecsp.build import BuildConfig, build

    return build(BuildConfig(onnx_path=demo_onnx, target="cpu", precision="fp32",
                             output=demo_onnx.replace(".onnx", "-cpu-fp32.xml")))


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory):
    """A generated 60-frame video of moving shapes with its ground truth."""
    needs("opencv")
    from edgecsp.data.shapes import generate_video

    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    gt = generate_video(path, 60, seed=11)
    return path, gt


@pytest.fixture(scope="session")
def tiny_detector_onnx(tmp_path_factory):
    """shapes_tiny_csp with random weights at 128x128: a real CSP detector graph (INT8, eval tests), ~2 s."""
    needs("torch", "onnxruntime")
    from edgecsp.export.onnx_export import ExportConfig, export

    out = str(tmp_path_factory.mktemp("tiny_detector") / "tiny_csp.onnx")
    return export(ExportConfig(model="shapes_tiny_csp", output=out, input_size=(128, 128))).path


@pytest.fixture(scope="session")
def shapes_val(tmp_path_factory):
    """A 10-image 'shapes' validation set (COCO json + images), seed 1000 as in the README."""
    needs("opencv")
    from edgecsp.data.shapes import generate_dataset

    return generate_dataset(str(tmp_path_factory.mktemp("shapes_val")), 10, seed=1000)
