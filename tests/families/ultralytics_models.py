"""Real Ultralytics exports for the parity tests, with weights that detect something.

Ultralytics (AGPL-3.0) is a test tool here: edgecsp never imports it. The exports run in a child process
(``python -m tests.families.ultralytics_models OUT IMAGE...``) so that its settings, its environment and the
``torchvision`` stand-in below never reach the test process:

* ``YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0`` and a private ``YOLO_CONFIG_DIR``: nothing is downloaded or installed;
* PyPI's torchvision does not import beside the CPU torch build (its C++ ops do not load), and Ultralytics'
  ``export(nms=True)`` calls ``torchvision.ops.nms`` while tracing. The child registers a Python
  ``torchvision::nms`` (a line-by-line port of torchvision's CPU kernel) before importing torchvision; the ONNX
  graph gets ONNX ``NonMaxSuppression`` from torchvision's own symbolic, so the stand-in only gives the trace its
  shapes. The test process never imports torchvision, so Ultralytics' ``non_max_suppression`` runs its own
  ``TorchNMS`` there (:func:`ultralytics_nms` hides torchvision in case another test imported it).

Weights: ``YOLO("yolov8n.yaml")`` builds a random model (seeded) that detects nothing (its class biases start at
``log(5 / nc / (640 / stride)^2)``, its batch norms at their defaults). :func:`make_hot` makes it detect 10-40
boxes on each test image (class ids carry no meaning; class names are ``thing 0`` ...): (1) every batch norm's
statistics are set from the test images (one forward pass in training mode, cumulative averages); (2) a random
backbone amplifies contrast, so the features of one image vary ten times more than another's and one bias gives
one image 300 boxes and the next none: the final class convolutions are refitted so that each class logit has unit
spread over every image's positions and no image-wide or padding offset (:func:`_even_class_weights`); (3) each
class gets a fixed offset ``N(0, CLASS_SPREAD)``, the DFL box bins a decaying bias (boxes a few strides wide;
YOLO26's one-bin regression a positive one, so no box is inverted); (4) one bias for all class logits is bisected
until every image has ``TARGET`` detections after Ultralytics' own NMS (conf 0.25, IoU 0.7, best class), or above
conf 0.25 among the one-to-one head's top 300 for the end-to-end export, then checked on the model itself.
"""
import json
import os
import subprocess
import sys

IMGSZ = 320
CONF, IOU, MAX_DET = 0.25, 0.7, 300  # Ultralytics' predict defaults (cfg/default.yaml)
SEED = 0
CLASS_SPREAD = 3.0  # class logits: bias + N(0, CLASS_SPREAD) per class + N(0, 1) per position
BOX_DECAY = 0.3  # DFL bin k of every side gets bias -BOX_DECAY * k
TARGET = (10, 40)  # detections per image after NMS
MIN_MARGIN = 2e-3  # no score that decides a detection closer than this to CONF (ORT / OpenVINO differ by ~3e-4)
OFFSET_DRAWS = 8
# (export name, model yaml, export keyword arguments)
EXPORTS = (
    ("yolov8n", "yolov8n.yaml", {}),  # anchor_free (1, 84, 2100)
    ("yolov8n-nms", "yolov8n.yaml", {"nms": True}),  # detections (1, 300, 6), NMS in the graph
    ("yolo26n", "yolo26n.yaml", {}),  # 8.4.x exports YOLO26 one-to-many by default: anchor_free
    ("yolo26n-e2e", "yolo26n.yaml", {"nms": False}),  # the one-to-one head, end-to-end (1, 300, 6)
)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_exports(out_dir, images, timeout=900):
    """Run the child process; returns ``{name: onnx path}`` plus ``"report"``: what :func:`make_hot` chose."""
    # one thread: the weights are the same whatever the parent set (importing Ultralytics sets OMP_NUM_THREADS=1)
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_VERBOSE="False", OMP_NUM_THREADS="1",
               YOLO_CONFIG_DIR=os.path.join(out_dir, "settings"), PYTHONPATH=ROOT)
    work = os.path.join(out_dir, "work")  # Ultralytics writes <yaml stem>.onnx into the working directory
    os.makedirs(work, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "tests.families.ultralytics_models", out_dir] + list(images),
                          cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode:
        raise RuntimeError("the Ultralytics exports failed:\n" + done.stdout.decode(errors="replace")[-4000:])
    with open(os.path.join(out_dir, "report.json")) as f:
        report = json.load(f)
    paths = dict((name, os.path.join(out_dir, name + ".onnx")) for name, _, _ in EXPORTS)
    paths["report"] = report
    return paths


class without_torchvision(object):
    """Ultralytics' NMS uses ``torchvision.ops.nms`` whenever torchvision is in ``sys.modules``; this hides it for
    the duration, so the reference is always Ultralytics' own ``TorchNMS``."""

    def __enter__(self):
        self.saved = sys.modules.pop("torchvision", None)

    def __exit__(self, *exc):
        if self.saved is not None:
            sys.modules["torchvision"] = self.saved


def ultralytics_nms(prediction, conf=CONF, iou=IOU, max_det=MAX_DET, end2end=False):
    """Ultralytics' ``non_max_suppression`` as its DetectionPredictor calls it (best class, class-aware), on a
    numpy batch; a list of (K, 6) numpy arrays x1, y1, x2, y2, score, class."""
    import numpy as np
    import torch
    from ultralytics.utils.nms import non_max_suppression

    with without_torchvision():
        out = non_max_suppression(torch.from_numpy(np.ascontiguousarray(prediction)), conf, iou, None, False,
                                  max_det=max_det, nc=0, end2end=end2end)
    return [o.numpy() for o in out]


def ultralytics_letterbox(image, imgsz=IMGSZ):
    """What Ultralytics' predictor feeds an exported (static) model for a BGR ``image``: LetterBox(auto=False),
    BGR -> RGB, / 255, as a (1, 3, H, W) float32 array; and the letterboxed BGR image."""
    import numpy as np
    from ultralytics.data.augment import LetterBox

    boxed = LetterBox((imgsz, imgsz), auto=False, stride=32)(image=image)
    return (boxed[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)), boxed


# -- the child process ---------------------------------------------------------------------------------------------
def _register_torchvision_nms():
    """A Python ``torchvision::nms`` (and the ``qnms`` torchvision's fake registrations expect), then torchvision."""
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

    def nms(boxes, scores, iou_threshold):  # torchvision/csrc/ops/cpu/nms_kernel.cpp: stable order, drop IoU > thr
        order = torch.argsort(scores, descending=True, stable=True)
        x1, y1, x2, y2 = boxes.unbind(1)
        area = (x2 - x1) * (y2 - y1)
        dead = torch.zeros(order.numel(), dtype=torch.bool)
        keep = []
        for a in range(order.numel()):
            if dead[a]:
                continue
            i = order[a]
            keep.append(int(i))
            rest = order[a + 1:]
            w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
            h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
            inter = w * h
            dead[a + 1:] |= inter / (area[i] + area[rest] - inter) > iou_threshold
        return torch.tensor(keep, dtype=torch.int64)

    lib.impl("nms", nms, "CPU")
    import torchvision.ops.boxes

    torchvision.ops.boxes._assert_has_ops = lambda: None  # its compiled ops did not load; ours are registered
    return lib


def _batch(images):
    import cv2
    import numpy as np

    return np.concatenate([ultralytics_letterbox(cv2.imread(path))[0] for path in images])


def _calibrate_batch_norm(net, batch):
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass sets the statistics of this batch
    net.train()
    with torch.no_grad():
        net(batch)
    net.eval()
    for m in norms:
        m.momentum = 0.03


def _detections(net, batch, end2end):
    """Detections per image of the model as it is (Ultralytics' forward and post-processing)."""
    import torch

    net.end2end = end2end
    with torch.no_grad():
        out = net(batch)
    out = (out[0] if isinstance(out, (list, tuple)) else out).numpy()
    return [len(d) for d in ultralytics_nms(out, end2end=end2end)]


def _class_inputs(net, batch, convs, end2end):
    """What each final class convolution sees on ``batch`` (images, channels, H, W per level), what it writes
    (images, classes, positions, all levels, its bias left out) and the model's output for ``batch``."""
    import torch

    seen, wrote = [None] * len(convs), [None] * len(convs)

    def hook(i):
        def keep(module, args, out):
            seen[i] = args[0]
            wrote[i] = (out - module.bias.view(1, -1, 1, 1)).flatten(2)
        return keep

    handles = [conv.register_forward_hook(hook(i)) for i, conv in enumerate(convs)]
    try:
        net.end2end = end2end
        with torch.no_grad():
            out = net(batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen, torch.cat(wrote, 2), (out[0] if isinstance(out, (list, tuple)) else out)


def _even_class_weights(weight, features, steps=300):
    """``weight`` (classes, channels) moved so that every class logit has the same spread on every image.

    A random backbone amplifies contrast: the features of one image can vary ten times more than another's, and
    one bias then gives one image 300 boxes and the next none. The rows are kept orthogonal to each image's mean
    feature and to its corner (padding) feature, so no image is lifted as a whole and the padding stays quiet, and
    are fitted (Adam on log-variance) to unit variance over each image's positions."""
    import torch

    x = features.flatten(2).double()
    anchors = torch.cat([x.mean(2), x[:, :, 0], x[:, :, -1]]) - x.mean(dim=(0, 2))
    basis = torch.linalg.qr(anchors.T)[0]  # (channels, 3 * images)
    x = x - x.mean(2, keepdim=True)
    cov = torch.einsum("bcn,bdn->bcd", x, x) / x.shape[2]
    w = weight.double().clone()
    w -= (w @ basis) @ basis.T
    w.requires_grad_(True)
    optimiser = torch.optim.Adam([w], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            loss = (torch.einsum("kc,bcd,kd->kb", w, cov, w).log() ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                w -= (w @ basis) @ basis.T
    w = w.detach()
    spread = torch.einsum("kc,bcd,kd->kb", w, cov, w).sqrt()
    return (w / spread.mean(1, keepdim=True)).float(), spread


def make_hot(net, batch, end2end):
    """Even class weights, class offsets, box regression, then the class bias that gives ``TARGET`` detections on
    every image; returns what it chose (for the report)."""
    import torch

    head = net.model[-1]
    branch = head.one2one if end2end else head.one2many
    convs = [conv[-1] for conv in branch["cls_head"]]
    spreads = []
    with torch.no_grad():
        for conv, features in zip(convs, _class_inputs(net, batch, convs, end2end)[0]):
            weight, spread = _even_class_weights(conv.weight[:, :, 0, 0], features)
            conv.weight[:, :, 0, 0] = weight
            spreads.append([round(float(v), 3) for v in spread.median(0).values])
        for conv in branch["box_head"]:
            if head.reg_max > 1:  # DFL bins: favour short distances (boxes of a few strides)
                conv[-1].bias.copy_((-BOX_DECAY * torch.arange(float(head.reg_max))).repeat(4))
            else:  # YOLO26: the distances are the output itself, in strides: keep them positive
                conv[-1].weight.mul_(0.3)
                conv[-1].bias.fill_(1.5)
    # the class logits without their bias in one pass (the forward runs both branches); the one-to-many output's
    # boxes for Ultralytics' NMS (the one-to-one count needs none)
    _, logits, out = _class_inputs(net, batch, convs, False)
    boxes = None if end2end else out[:, :4]
    for draw in range(OFFSET_DRAWS):  # the class offsets decide how evenly the images fill: redraw if none fits
        offsets = torch.randn(head.nc, generator=torch.Generator().manual_seed(SEED + 1 + draw)) * CLASS_SPREAD
        shifted = logits + offsets.view(1, -1, 1)
        chosen = _bisect_bias(shifted, boxes)
        if chosen is None:
            continue
        chosen, margin = _widest_margin(shifted, boxes, chosen)
        if margin < MIN_MARGIN:
            continue
        with torch.no_grad():
            for conv in convs:
                conv.bias.copy_(chosen + offsets)
        counts = _detections(net, batch, end2end)  # the model itself, as exported
        if TARGET[0] <= min(counts) and max(counts) <= TARGET[1]:
            break
    else:
        raise RuntimeError("no class bias gives {}-{} detections on every image with every deciding score {} or more "
                           "from the threshold".format(TARGET[0], TARGET[1], MIN_MARGIN))
    return {"class_bias": round(chosen, 4), "offset_draw": draw, "detections": counts,
            "score_margin": round(margin, 5), "logit_spread_per_image": spreads}


def _counts(logits, boxes, bias):
    """Detections per image for class logits ``logits + bias`` (images, classes, positions): with ``boxes``
    (images, 4, positions) after Ultralytics' NMS, else the one-to-one count (scores above CONF among its top
    MAX_DET); and the margin: how close any score that decides (a position's best, or any one-to-one score) comes to
    CONF."""
    import torch

    scores = torch.sigmoid(logits + bias)
    if boxes is None:
        counts = [min(MAX_DET, int((s > CONF).sum())) for s in scores]
        deciding = scores
    else:
        counts = [len(d) for d in ultralytics_nms(torch.cat([boxes, scores], 1).numpy())]
        deciding = scores.max(dim=1).values
    return counts, float((deciding - CONF).abs().min())


def _fits(counts):
    return TARGET[0] <= min(counts) and max(counts) <= TARGET[1]


def _bisect_bias(logits, boxes):
    """A bias that puts every image's count in ``TARGET`` (None if bisection finds none)."""
    lo, hi = -14.0, 2.0
    for _ in range(20):
        bias = (lo + hi) / 2
        counts, _ = _counts(logits, boxes, bias)
        if os.environ.get("EDGECSP_HOT_DEBUG"):
            print("class bias {:.3f}: detections {}".format(bias, counts), file=sys.stderr)
        if min(counts) < TARGET[0]:
            lo = bias
        elif max(counts) > TARGET[1]:
            hi = bias
        else:
            return bias
    return None


def _widest_margin(logits, boxes, bias, reach=1.0, step=0.01):
    """Among the biases within ``reach`` of ``bias`` that fit ``TARGET``, the one whose scores stay farthest from
    CONF: a detection then cannot appear or vanish between ONNX Runtime, OpenVINO and Ultralytics' arithmetic."""
    best = (-1.0, bias)
    for k in range(-int(reach / step), int(reach / step) + 1):
        counts, margin = _counts(logits, boxes, bias + k * step)
        if _fits(counts) and margin > best[0]:
            best = (margin, bias + k * step)
    return best[1], best[0]


def main(out_dir, images):
    import torch

    torch.set_num_threads(1)
    # before Ultralytics: export(nms=True) traces torchvision.ops.nms; the op lives as long as its library object
    library = _register_torchvision_nms()  # noqa: F841
    from ultralytics import YOLO

    batch = torch.from_numpy(_batch(images))
    report = {"images": [os.path.basename(p) for p in images], "seed": SEED}
    for cfg in sorted(set(c for _, c, _ in EXPORTS)):
        torch.manual_seed(SEED)
        model = YOLO(cfg)  # one model per yaml: its exports share the weights
        model.model.names = dict((i, "thing {}".format(i)) for i in range(model.model.model[-1].nc))
        _calibrate_batch_norm(model.model, batch)
        exports = [(name, kwargs) for name, c, kwargs in EXPORTS if c == cfg]
        for end2end in sorted(set(kwargs.get("nms") is False for _, kwargs in exports)):
            report["{} {}".format(cfg, "one2one" if end2end else "one2many")] = make_hot(model.model, batch, end2end)
        for name, kwargs in exports:
            path = model.export(format="onnx", imgsz=IMGSZ, opset=13, simplify=False, verbose=False, **kwargs)
            os.replace(path, os.path.join(out_dir, name + ".onnx"))
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
