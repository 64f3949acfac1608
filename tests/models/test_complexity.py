"""Parameter and FLOP counting: hand-computed layers, the papers' BFLOPs, and no torch import at module load."""
import subprocess
import sys

import pytest

from edgecsp.models import complexity
from tests.gates import optional

torch = optional("torch")
needs_torch = pytest.mark.torch  # the import test below runs without torch


def test_module_import_does_not_import_torch():
    code = "import sys, edgecsp.models.complexity; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True)
    assert result.stdout.strip() == b"False"


@needs_torch
def test_conv_macs_match_hand_computation():
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    # output 8 x 8 x 8 elements, each a dot product over 3 x 3 x 3 inputs
    assert complexity.count_macs(conv, (16, 16)) == 8 * 8 * 8 * (3 * 3 * 3)
    assert complexity.count_flops(conv, (16, 16)) == pytest.approx(2 * 8 * 8 * 8 * 27 / 1e9)


@needs_torch
def test_grouped_conv_and_linear_macs():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(8, 16, kernel_size=3, padding=1, groups=4, bias=False),  # 16 x 10 x 12 outputs, 2x3x3 each
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 5),
    )
    assert complexity.count_macs(model, (10, 12), in_channels=8) == 16 * 10 * 12 * 2 * 9 + 16 * 5


@needs_torch
def test_count_params_and_trainable_only():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    assert complexity.count_params(model) == 8 * 3 * 9 + 8 + 8 + 8  # conv weight + bias, BN weight + bias
    model[1].requires_grad_(False)
    assert complexity.count_params(model, trainable_only=True) == 8 * 3 * 9 + 8


@needs_torch
def test_counting_keeps_train_mode_and_batchnorm_statistics():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).train()
    before = model[1].running_mean.clone()
    complexity.count_flops(model, (8, 8))
    assert model.training
    torch.testing.assert_close(model[1].running_mean, before)
    assert not model[0]._forward_hooks  # hooks are removed


# The CSPNet paper's ImageNet table (darknet BFLOPs at 256 x 256, the darknet classifiers' input size).
PAPER_BFLOPS_256 = {"cspdarknet53": 13.07, "cspresnet50": 8.97, "cspresnext50": 7.93}


@needs_torch
@pytest.mark.parametrize("name", sorted(PAPER_BFLOPS_256))
def test_cspnet_flops_match_paper_bflops(name):
    from edgecsp.models import cspnet

    model = getattr(cspnet, name)()
    assert complexity.count_flops(model, (256, 256)) == pytest.approx(PAPER_BFLOPS_256[name], rel=0.02)
