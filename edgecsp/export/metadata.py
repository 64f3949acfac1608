"""Build the runtime's ModelMeta from a PyTorch model (detector or classifier)."""
from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.meta import ModelMeta


def _per_head(value, count):
    # one value for every head (edgecsp's detectors) or a list with one per head (darknet: per [yolo] layer)
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def meta_from_model(model, model_name, input_size=None, letterbox=None, outputs=None, **extra):
    """ModelMeta describing ``model``'s outputs; ``extra`` goes into the provenance dict.

    ``letterbox`` defaults to the model's own ``letterbox`` attribute (darknet: [net] letter_box), else True.
    """
    if hasattr(model, "strides"):  # a YoloDetector (edgecsp/models/yolo.py) or DarknetDetector
        count = len(model.strides)
        heads = [HeadMeta(int(s), [tuple(float(v) for v in a) for a in anchors], float(sxy), bool(nc))
                 for s, anchors, sxy, nc in zip(model.strides, model.anchors, _per_head(model.scale_x_y, count),
                                                _per_head(model.new_coords, count))]
        size = tuple(input_size or model.input_size)
        letterbox = getattr(model, "letterbox", True) if letterbox is None else letterbox
        return yolo_meta(list(model.names), size, heads, activated=bool(getattr(model, "activated", False)),
                         letterbox=bool(letterbox), pad_value=int(getattr(model, "pad_value", 114)),
                         outputs=list(outputs or ["head{}".format(s) for s in model.strides]),
                         model=model_name, extra=dict(extra))
    num_classes = getattr(model, "num_classes", None) or 1000
    names = list(getattr(model, "names", None) or ["class{}".format(i) for i in range(num_classes)])
    return ModelMeta(names=names, input_size=tuple(input_size or (224, 224)), task="classify", letterbox=False,
                     layout="classify", params={"probabilities": getattr(model, "output_layout", "logits") == "probs"},
                     outputs=list(outputs or ["logits"]), model=model_name, extra=dict(extra))
