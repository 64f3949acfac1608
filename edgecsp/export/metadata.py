"""Build the runtime's ModelMeta from a PyTorch model (detector or classifier)."""
from edgecsp.runtime.meta import HeadMeta, ModelMeta


def meta_from_model(model, model_name, input_size=None, letterbox=True, outputs=None, **extra):
    """ModelMeta describing ``model``'s outputs; ``extra`` goes into the provenance dict."""
    if hasattr(model, "strides"):  # a YoloDetector (see edgecsp/models/yolo.py)
        heads = [HeadMeta(int(s), [tuple(float(v) for v in a) for a in anchors], float(model.scale_x_y),
                          bool(model.new_coords))
                 for s, anchors in zip(model.strides, model.anchors)]
        size = tuple(input_size or model.input_size)
        return ModelMeta(names=list(model.names), input_size=size, task="detect", letterbox=letterbox,
                         heads=heads, outputs=list(outputs or ["head{}".format(s) for s in model.strides]),
                         model=model_name, extra=dict(extra))
    num_classes = getattr(model, "num_classes", None) or 1000
    names = list(getattr(model, "names", None) or ["class{}".format(i) for i in range(num_classes)])
    return ModelMeta(names=names, input_size=tuple(input_size or (224, 224)), task="classify", letterbox=False,
                     layout="logits", outputs=list(outputs or ["logits"]), model=model_name, extra=dict(extra))
