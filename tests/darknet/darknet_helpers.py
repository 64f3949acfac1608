"""Helpers for the darknet tests: sized cfg copies, calibrated random weights, OpenCV DNN reference runs.

Imported by the test files next to it (pytest collects only test_*.py).
"""
import os
import re

from tests.gates import SHARED_FIXTURES, needs, needs_import

DARKNET_FIXTURES = os.path.join(SHARED_FIXTURES, "darknet")
FIXTURE_CFGS = ("yolov4-tiny", "yolov4-csp", "yolov3-tiny-prn", "csdarknet53-omega")


def fixture_file(name):
    """``../shared/fixtures/darknet/<name>``: skipped without the fixtures, failed in CI (which lays them out)."""
    needs("fixtures")
    path = os.path.join(DARKNET_FIXTURES, name)
    assert os.path.isfile(path), "darknet fixture {} is missing from ../shared/fixtures/darknet".format(path)
    return path


def fixture_cfg(name):
    return fixture_file(name + ".cfg")


def sized_cfg(source, size, folder, yolo_extra=""):
    """A copy of ``source`` with [net] width/height set to ``size`` (and ``yolo_extra`` lines in each [yolo])."""
    with open(source) as f:
        text = f.read()
    net_end = text.index("[", text.index("[net]") + 1)
    net = re.sub(r"(?m)^\s*width\s*=.*$", "width={}".format(size), text[:net_end])
    net = re.sub(r"(?m)^\s*height\s*=.*$", "height={}".format(size), net)
    rest = text[net_end:]
    if yolo_extra:
        rest = rest.replace("[yolo]", "[yolo]\n" + yolo_extra)
    path = os.path.join(str(folder), "{}-{}.cfg".format(os.path.splitext(os.path.basename(source))[0], size))
    with open(path, "w") as f:
        f.write(net + rest)
    return path


def image_input(size, seed=0):
    """An image-like NCHW float32 input in 0..1 (smooth gradients plus noise)."""
    from edgecsp.export.onnx_export import sample_input

    return sample_input((1, 3, size, size), seed)


def calibrated_weights(plan, path, x, seed=0):
    """Write random .weights for ``plan`` whose activations stay O(1) on ``x``; returns the params.

    ``random_weights`` alone lets activations drift to ~0.1-0.3 in deep nets (its BN statistics do not match the
    data), which would make any comparison weak. Here each [convolutional]'s kernel is rescaled, in network
    order, so that on ``x`` its output variance equals the BN ``rolling_variance`` drawn in [0.5, 1.5] (and the
    mean is folded into ``rolling_mean``): BN then really normalises, as in a trained net. Convs without BN
    (heads, classifier logits) are scaled to a standard deviation of 1.5. The variances stay in [0.5, 1.5], which
    is what the tolerance analysis in test_darknet_opencv.py assumes.
    """
    import torch
    import torch.nn.functional as F

    from edgecsp.darknet import build_model, random_weights, write_weights

    model = build_model(plan, random_weights(plan, seed))
    cache = []
    with torch.no_grad():
        xt = torch.from_numpy(x)
        for layer_plan, layer in zip(plan.layers, model.layers):
            args = [xt if i < 0 else cache[i] for i in layer_plan.inputs]
            if layer_plan.kind == "convolutional":
                conv = layer.conv
                z = F.conv2d(args[0], conv.weight, None, conv.stride, conv.padding, 1, conv.groups)
                if layer.bn is not None:
                    factor = (layer.bn.running_var / z.var((0, 2, 3)).clamp_min(1e-12)).sqrt()
                    conv.weight.mul_(factor.view(-1, 1, 1, 1))
                    layer.bn.running_mean.add_(z.mean((0, 2, 3)) * factor)
                else:
                    conv.weight.mul_(1.5 / float(z.std()))
            cache.append(layer(*args))
    params = model.darknet_params()
    write_weights(path, plan, params)
    return params


def opencv_run(cfg_path, weights_path, x, heads):
    """OpenCV DNN on ``x``: (raw head tensors feeding each [yolo], decoded [yolo] outputs), or (the net output,
    []) for a classifier. The blob is set directly (no blobFromImage: no resize, swapRB or scaling by OpenCV)."""
    cv2 = needs_import("cv2")
    net = cv2.dnn.readNetFromDarknet(cfg_path, weights_path)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)  # an OpenCV-only approximation of 3x3 convs; not what darknet computes
    net.setInput(x)
    if not heads:
        return [net.forward()], []
    names = list(net.getLayerNames())
    # OpenCV names layers by its own counter (which drifts from darknet's at grouped routes), but it always
    # inserts "permute_*" right before each [yolo]: the layer just before it is the [yolo]'s input
    permutes = [i for i, n in enumerate(names) if n.startswith("permute_")]
    assert len(permutes) == len(heads)
    raw_names = [names[i - 1] for i in permutes]
    yolo_names = [names[i + 1] for i in permutes]
    outs = net.forward(raw_names + yolo_names)
    return list(outs[:len(heads)]), list(outs[len(heads):])


def conv_depth(plan):
    """Largest number of [convolutional] layers on any path from the input to an output of ``plan``."""
    depth = []
    for layer in plan.layers:
        before = max([depth[i] for i in layer.inputs if i >= 0] or [0])
        depth.append(before + (layer.kind == "convolutional"))
    outputs = [h.inputs[0] for h in plan.heads] or [len(plan.layers) - 1]
    return max(depth[i] for i in outputs)


def coco_names():
    return fixture_file("coco.names")
