"""Train the demo detector on the synthetic "shapes" data, on the CPU, in minutes.

Every training image goes through the runtime's own ``letterbox`` (so training and inference see identical
geometry), and evaluation uses the runtime's ``postprocess`` and the numpy mAP of ``edgecsp.evaluation``: the
number written into the model card is what the shipped pipeline computes.
"""
import math
import time
from typing import NamedTuple

import numpy as np
import torch

from edgecsp.data.shapes import render_sample
from edgecsp.export.metadata import meta_from_model
from edgecsp.models import create_model
from edgecsp.runtime.preprocess import letterbox, preprocess
from edgecsp.training.yolo_loss import ModelEMA, YoloLoss

# source image sizes (h, w) drawn during training and validation: square, landscape, portrait
SOURCE_SIZES = ((256, 256), (288, 384), (384, 288), (360, 640), (320, 320))


class TrainConfig(NamedTuple):
    model: str = "shapes_tiny_csp"
    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: int = 150
    seed: int = 0
    val_seed: int = 1000  # validation data come from another seed than training
    val_count: int = 300
    threads: int = 0  # 0: torch default
    log_every: int = 50


def _sample_batch(rng, batch, meta):
    """Render, letterbox and flip ``batch`` images; targets rows are (image, class, cx, cy, w, h) in pixels."""
    images, rows = [], []
    for i in range(batch):
        size = SOURCE_SIZES[rng.integers(len(SOURCE_SIZES))]
        img, boxes, labels = render_sample(rng, size)
        img, info = letterbox(img, meta.input_size, meta.pad_value)
        boxes = boxes.astype(np.float32).copy()
        boxes[:, 0::2] = boxes[:, 0::2] * info.scale_x + info.pad_x
        boxes[:, 1::2] = boxes[:, 1::2] * info.scale_y + info.pad_y
        if rng.random() < 0.5:
            img = img[:, ::-1]
            w = meta.input_size[1]
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        images.append(img)
        for b, c in zip(boxes, labels):
            rows.append([i, c, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]])
    x, _ = preprocess(images, meta)  # already at input size: only the runtime's channel order and scaling
    t = np.array(rows, dtype=np.float32).reshape(-1, 6)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(t)


def validation_set(seed, count):
    """The in-memory validation set: ``count`` samples rendered from ``seed`` at the training source sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        size = SOURCE_SIZES[rng.integers(len(SOURCE_SIZES))]
        out.append(render_sample(rng, size))
    return out


@torch.no_grad()
def evaluate_model(model, samples, meta, batch=16, conf=0.001, iou=0.6):
    """mAP of a torch detector on (image, boxes, labels) samples through the runtime's pre/post-processing."""
    from edgecsp.evaluation.detection_map import evaluate_detections
    from edgecsp.runtime.postprocess import postprocess

    model.eval()
    preds, gts = [], []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        x, infos = preprocess([s[0] for s in chunk], meta)
        outputs = [o.numpy() for o in model(torch.from_numpy(x))]
        dets = postprocess(outputs, meta, infos, [s[0].shape[:2] for s in chunk], conf=conf, iou=iou, max_det=100)
        for d, (_, boxes, labels) in zip(dets, chunk):
            preds.append((d.boxes, d.scores, d.class_ids))
            gts.append((boxes, labels))
    return evaluate_detections(preds, gts, meta.num_classes, iou_thresholds=tuple(np.arange(0.5, 0.96, 0.05)))


def train(config, log=print):
    """Train ``config.model`` from scratch; returns (EMA model, seconds)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = create_model(config.model)
    meta = meta_from_model(model, config.model)
    loss_fn = YoloLoss(model.strides, model.anchors, len(model.names), model.input_size)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.999))

    def lr_at(step):
        if step < config.warmup:
            return config.lr * (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    ema = ModelEMA(model)
    started = time.time()
    running = None
    model.train()
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, targets = _sample_batch(rng, config.batch, meta)
        loss, parts = loss_fn(list(model(x)), targets)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        ema.update(model)
        running = parts if running is None else running * 0.9 + parts * 0.1
        if (step + 1) % config.log_every == 0 or step == 0:
            elapsed = time.time() - started
            log("step {:5d}/{}  loss box {:.4f} obj {:.4f} cls {:.4f}  lr {:.2e}  {:.0f} img/s  {:.0f}s".format(
                step + 1, config.steps, float(running[0]), float(running[1]), float(running[2]), lr_at(step),
                (step + 1) * config.batch / elapsed, elapsed))
    return ema.ema, time.time() - started
