"""Building blocks shared by the model families (torch)."""
import torch
from torch import nn
import torch.nn.functional as F

ACTIVATIONS = ("mish", "leaky", "relu", "relu6", "silu", "swish", "logistic", "linear")


class Mish(nn.Module):
    """x * tanh(softplus(x)).

    Written out rather than ``nn.Mish`` so that every exporter and opset emits Softplus -> Tanh -> Mul, which
    TensorRT 8.2 (no Mish op) and OpenVINO both parse; ``export`` may still fuse it back at opset >= 18.
    """

    def forward(self, x):
        return x * torch.tanh(F.softplus(x))


def make_activation(name):
    """nn.Module for a darknet-style activation name."""
    if name == "mish":
        return Mish()
    if name == "leaky":
        return nn.LeakyReLU(0.1)  # darknet's leaky slope
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "logistic":
        return nn.Sigmoid()
    if name == "linear":
        return nn.Identity()
    raise ValueError("unknown activation {!r}; known: {}".format(name, ", ".join(ACTIVATIONS)))


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + activation, 'same' padding for odd kernels."""

    def __init__(self, in_ch, out_ch, kernel=1, stride=1, groups=1, act="leaky", bn_eps=1e-5):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=0.03),
            make_activation(act),
        )
        self.in_channels, self.out_channels = in_ch, out_ch
