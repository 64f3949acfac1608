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
