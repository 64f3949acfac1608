"""Parameter and FLOP counts of a torch module at an input size.

Convention: **GFLOPs = 2 x multiply-accumulates (MACs) of the Conv2d and Linear layers / 1e9**, for one image.
This is darknet's "BFLOPs", the unit of the CSPNet and YOLOv4 papers' tables (e.g. CSPDarknet53 at 256x256:
13.07 BFLOPs, about 6.5 GMACs; timm's tables list GMACs, half these numbers). Biases, BatchNorm, activations,
pooling and residual additions are not counted, as darknet does not count them: BatchNorm folds into the
preceding conv when TensorRT or OpenVINO build an engine, and the rest is elementwise work negligible next to
the convolutions.

torch is imported on first use, so ``edgecsp models`` can import this module with only numpy installed.
"""
from typing import Tuple

from edgecsp._lazy import require


def count_params(module, trainable_only=False):
    # type: (object, bool) -> int
    """Number of parameters (all of them, or only those with ``requires_grad``); buffers are not counted."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_macs(module, input_size, in_channels=3):
    # type: (object, Tuple[int, int], int) -> int
    """Multiply-accumulates of the Conv2d and Linear layers for one (in_channels, h, w) image.

    Runs one forward pass on zeros in eval mode (the module's train/eval state is restored), so the count
    follows the real graph: layers called twice count twice, layers never called count zero.
    """
    torch = require("torch", "counting FLOPs")
    height, width = input_size
    total = [0]

    def conv_hook(conv, inputs, output):
        # every output element is a dot product over (in_channels / groups) x kernel_h x kernel_w inputs
        kernel_h, kernel_w = conv.kernel_size
        total[0] += output.numel() * (conv.in_channels // conv.groups) * kernel_h * kernel_w

    def linear_hook(linear, inputs, output):
        total[0] += output.numel() * linear.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))

    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = module.training
    module.eval()  # BatchNorm in train mode would update its running statistics with our zeros
    try:
        with torch.no_grad():
            module(torch.zeros(1, in_channels, height, width, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return total[0]


def count_flops(module, input_size, in_channels=3):
    # type: (object, Tuple[int, int], int) -> float
    """GFLOPs (= 2 x MACs / 1e9, the papers' BFLOPs) of the Conv2d and Linear layers for one image."""
    return 2.0 * count_macs(module, input_size, in_channels) / 1e9
