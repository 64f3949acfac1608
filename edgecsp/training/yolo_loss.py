"""YOLO training loss for ``new_coords`` detectors (the Scaled-YOLOv4 / YOLOv5 formulation).

Box parametrisation (matches ``edgecsp.runtime.decode`` with ``new_coords`` and ``scale_x_y = 2``):
``xy = (2 * sigmoid(t_xy) - 0.5 + cell) * stride`` and ``wh = (2 * sigmoid(t_wh)) ** 2 * anchor``.
A ground-truth box is assigned to every anchor whose width/height ratio to it is below ``anchor_t`` and to its
own cell plus the two nearest neighbouring cells; box loss is 1 - CIoU, objectness is BCE against the IoU of the
prediction, classification is BCE against one-hot labels.
"""
import math
from typing import List, Sequence

import torch
from torch import nn


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired boxes given as (cx, cy, w, h), shape (N, 4) each."""
    b1x1, b1x2 = box1[:, 0] - box1[:, 2] / 2, box1[:, 0] + box1[:, 2] / 2
    b1y1, b1y2 = box1[:, 1] - box1[:, 3] / 2, box1[:, 1] + box1[:, 3] / 2
    b2x1, b2x2 = box2[:, 0] - box2[:, 2] / 2, box2[:, 0] + box2[:, 2] / 2
    b2y1, b2y2 = box2[:, 1] - box2[:, 3] / 2, box2[:, 1] + box2[:, 3] / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * \
            (torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)).clamp(0)
    w1, h1, w2, h2 = box1[:, 2], box1[:, 3] + eps, box2[:, 2], box2[:, 3] + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = (box2[:, 0] - box1[:, 0]) ** 2 + (box2[:, 1] - box1[:, 1]) ** 2
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


class YoloLoss(nn.Module):
    """Loss for a ``YoloDetector`` with ``new_coords``; targets are rows (image, class, cx, cy, w, h) in pixels."""

    def __init__(self, strides: Sequence[int], anchors: Sequence[Sequence[Sequence[float]]], num_classes: int,
                 input_size=(256, 256), anchor_t=4.0, box_gain=0.05, obj_gain=1.0, cls_gain=0.5):
        super().__init__()
        self.strides = list(strides)
        self.anchors = [torch.tensor(a, dtype=torch.float32) for a in anchors]
        self.nc = num_classes
        self.anchor_t = anchor_t
        # YOLOv5's scaling of the gains to the number of classes, levels and input size
        levels = len(self.strides)
        self.box_gain = box_gain * 3 / levels
        self.cls_gain = cls_gain * num_classes / 80 * 3 / levels
        self.obj_gain = obj_gain * (max(input_size) / 640) ** 2 * 3 / levels
        self.balance = [4.0, 1.0, 0.4] if levels == 3 else [4.0, 1.0] if levels == 2 else [1.0] * levels
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, outputs: List[torch.Tensor], targets: torch.Tensor):
        """Return (total loss scaled by batch size, detached components [box, obj, cls])."""
        device = outputs[0].device
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        batch = outputs[0].shape[0]
        for level, (out, stride, anchors) in enumerate(zip(outputs, self.strides, self.anchors)):
            n, _, h, w = out.shape
            na = anchors.shape[0]
            pred = out.view(n, na, 5 + self.nc, h, w).permute(0, 1, 3, 4, 2)  # (n, a, h, w, 5+c)
            tobj = torch.zeros(pred.shape[:4], device=device)
            b, a, gj, gi, tbox, tcls = self._assign(targets, anchors.to(device), stride, h, w)
            if b.numel():
                p = pred[b, a, gj, gi]
                pxy = p[:, :2].sigmoid() * 2 - 0.5
                pwh = (p[:, 2:4].sigmoid() * 2) ** 2 * anchors.to(device)[a] / stride
                ciou = bbox_ciou(torch.cat([pxy, pwh], 1), tbox)
                lbox = lbox + (1.0 - ciou).mean()
                tobj[b, a, gj, gi] = ciou.detach().clamp(0).to(tobj.dtype)
                if self.nc > 1:
                    t = torch.zeros_like(p[:, 5:])
                    t[torch.arange(t.shape[0]), tcls] = 1.0
                    lcls = lcls + self.bce(p[:, 5:], t)
            lobj = lobj + self.bce(pred[..., 4], tobj) * self.balance[level]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        return (lbox + lobj + lcls) * batch, torch.stack([lbox, lobj, lcls]).detach()

    def _assign(self, targets, anchors, stride, h, w):
        """Match targets to (image, anchor, cell); returns indices, box targets in grid units, classes."""
        device = anchors.device
        na = anchors.shape[0]
        if targets.numel() == 0:
            e = torch.zeros(0, dtype=torch.long, device=device)
            return e, e, e, e, torch.zeros(0, 4, device=device), e
        t = targets.to(device)
        ratio = t[None, :, 4:6] / anchors[:, None, :]  # (a, t, 2)
        keep = torch.max(ratio, 1.0 / ratio).max(2)[0] < self.anchor_t
        ai = torch.arange(na, device=device)[:, None].expand(na, t.shape[0])[keep]
        tt = t[None].expand(na, -1, -1)[keep]  # (k, 6)
        gxy = tt[:, 2:4] / stride
        gwh = tt[:, 4:6] / stride
        # own cell plus the two nearest neighbours (x and y), since 2*sigmoid-0.5 reaches [-0.5, 1.5]
        frac = gxy % 1.0
        offsets = [torch.zeros_like(gxy)]
        masks = [torch.ones(gxy.shape[0], dtype=torch.bool, device=device)]
        for axis, limit in ((0, w), (1, h)):
            low = (frac[:, axis] < 0.5) & (gxy[:, axis] > 1.0)
            high = (frac[:, axis] > 0.5) & (gxy[:, axis] < limit - 1.0)
            for m, sign in ((low, -1.0), (high, 1.0)):
                off = torch.zeros_like(gxy)
                off[:, axis] = sign
                offsets.append(off)
                masks.append(m)
        rows, cells, anchor_ids, wh = [], [], [], []
        for off, m in zip(offsets, masks):
            rows.append(tt[m])
            cells.append((gxy[m] + off[m]).floor())
            anchor_ids.append(ai[m])
            wh.append(gwh[m])
        tt, cell, ai, gwh = torch.cat(rows), torch.cat(cells), torch.cat(anchor_ids), torch.cat(wh)
        gi = cell[:, 0].long().clamp(0, w - 1)
        gj = cell[:, 1].long().clamp(0, h - 1)
        gxy = tt[:, 2:4] / stride
        tbox = torch.cat([gxy - torch.stack([gi, gj], 1).to(gxy.dtype), gwh], 1)
        return tt[:, 0].long(), ai, gj, gi, tbox, tt[:, 1].long()


class ModelEMA:
    """Exponential moving average of model weights (ramped decay); the EMA model is what gets evaluated."""

    def __init__(self, model: nn.Module, decay: float = 0.999, tau: float = 500.0):
        import copy
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module):
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])
