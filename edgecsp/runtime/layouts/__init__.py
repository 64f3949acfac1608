"""Output layouts: how a model's outputs are laid out and turned into detections (one module per layout).

A layout is everything edgecsp knows about one way detectors write their outputs: who writes it, the
parameters it needs (anchors, strides, column order...), the output shapes for a batch, a dense decode to boxes
(xyxy in network-input pixels) and scores, a fast candidate decode held exactly to the dense one, whether the
model already applied NMS, what DeepStream needs, which ``edgecsp export --onnx`` options describe it, and how to
recognise it from an ONNX's outputs and its producer's metadata. ``ModelMeta`` carries the layout's name and its
parameters; nothing outside this package branches on a layout's name.

Adding a layout is adding one module to this package that defines a :class:`Layout` subclass with a ``name``:
the registry finds it (``LAYOUT_MODULES`` lists the modules in recognition order; a module not listed is still
registered, recognised last). Python 3.6 compatible; numpy only.
"""
import importlib
import os
import pkgutil
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from edgecsp.errors import MetadataError
from edgecsp.runtime.schema import SchemaProblem, record

# recognition order: the more specific layouts first (a 3-D (N, M, 6) output is end-to-end before it is anything else)
LAYOUT_MODULES = ("classify", "yolo_raw", "detections", "dets_labels", "anchor_free", "anchor_decoded", "yolox_raw",
                  "dist_points", "gfl")


class Decoded(NamedTuple):
    """One image's decoded rows: ``boxes`` (K, 4) float32 xyxy in network-input pixels and either per-class
    ``scores`` (K, C) with ``classes`` None, or one ``scores`` (K,) per row with its ``classes`` (K,) int64."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: Optional[np.ndarray] = None


class Recognised(NamedTuple):
    """What a layout read from an ONNX it recognised (``Layout.recognise``)."""

    params: dict  # the layout's parameters, JSON form
    outputs: List[str]  # the ONNX's output names in the layout's order
    names: Optional[List[str]] = None  # class names, when the file says them (Ultralytics' metadata)
    preprocess: dict = {}  # ModelMeta preprocessing fields of that family (channel_order, scale, mean, std...)
    family: str = ""  # who wrote it ("Ultralytics YOLOv8", "YOLOX", ...): messages and ModelMeta.model
    nms: dict = {}  # that family's NMS rule (ModelMeta.nms): {"multi_label": bool, "iou": float}


class Layout(object):
    """One output layout; subclasses set the class attributes and implement the methods that raise here."""

    name = ""  # the metadata's "layout"
    task = "detect"  # or "classify"
    writers = ""  # who writes it (documentation, `edgecsp export --onnx` messages)
    fields = ()  # schema Fields of the layout's parameters (``ModelMeta.params``)
    export_options = ()  # the `edgecsp export --onnx` options that describe it when it is not recognised
    deepstream_parser = None  # DeepStream-Yolo's parse function for this layout's outputs; None: not for nvinfer
    legacy_names = ()  # the format-1 layout names this layout reads (``params_from_format_1``)
    graph_decode = False  # `edgecsp export --decode-in-graph` (edgecsp.export.decode_graph) appends its decode

    # -- parameters --------------------------------------------------------------------------------------------
    def read_params(self, document, where):
        """The parameters from their JSON form (checked by ``fields``): a dict, or what ``make_params`` returns."""
        try:
            checked = record(list(self.fields))(document if document is not None else {}, "params")
        except SchemaProblem as problem:
            raise MetadataError("{}: {} (layout {}); re-export the model".format(where, problem, self.name))
        return self.make_params(checked)

    def make_params(self, checked):
        """The in-memory parameters from checked JSON values (default: the dict itself)."""
        return checked

    def params_dict(self, params):
        """The JSON form of ``params`` (inverse of ``make_params``)."""
        return dict(params)

    def params_from_format_1(self, document, old_name):
        """The JSON parameters of a format-1 record (``document``) whose layout was ``old_name``."""
        raise NotImplementedError

    def problems(self, meta):
        """What contradicts itself in ``meta`` for this layout (a list of phrases; empty when consistent)."""
        return []

    # -- interface ---------------------------------------------------------------------------------------------
    def output_count(self, meta):
        return 1

    def output_shape(self, meta, index):
        """The shape output ``index`` must have (None where any size goes: the batch, K detections)."""
        raise NotImplementedError

    def shape_fits(self, meta, index, dims):
        """Whether an output shaped ``dims`` (None for unknown sizes) can be output ``index``."""
        needed = self.output_shape(meta, index)
        return len(dims) == len(needed) and all(d is None or n is None or d == n for d, n in zip(dims, needed))

    def describe_output(self, meta, index):
        """What output ``index`` is, in words, for messages."""
        return "output"

    def output_dtype(self, meta, index):
        """The numpy dtype name of output ``index`` (Triton configs of engines, which do not say it)."""
        return "float32"

    def deepstream_problem(self, meta):
        """Why DeepStream-Yolo's parser cannot take this model's outputs as they are (None when it can)."""
        if self.graph_decode:
            return ("its {} outputs are raw; DeepStream's parser wants the boxes decoded in the graph: export it with "
                    "`edgecsp export ... --decode-in-graph`".format(self.name))
        return ("DeepStream-Yolo's parser does not take {} outputs ({}); run it with edgecsp infer or "
                "Triton".format(self.name, self.writers))

    # -- decoding ----------------------------------------------------------------------------------------------
    def batch_first(self, meta):
        """Whether every output's first axis is the batch (else the rows say their image: ``decode``'s ``batch``
        tells how many images there are, and rows of padding images are dropped)."""
        return True

    def nms_applied(self, meta):
        """True when the outputs are final detections: the runtime only thresholds them and caps their count."""
        return False

    def decode(self, outputs, meta, batch=None):
        """Every row of a batch's outputs (a list in ``meta.outputs`` order): a list of N :class:`Decoded`
        (``batch``: N, for layouts whose outputs do not say it)."""
        raise NotImplementedError

    def candidates(self, outputs, meta, conf, batch=None):
        """The rows that can score above ``conf``, with the same values and order as ``decode``'s rows: a list
        of N :class:`Decoded`. Default: the dense decode, rows filtered."""
        return [keep_passing(d, conf) for d in self.decode(outputs, meta, batch)]

    # -- examples for the registry's tests ----------------------------------------------------------------------
    def example(self):
        """A small consistent model of this layout: ``{"input_size": (H, W), "classes": C, "params": {...}}``
        (params in JSON form); ``tests/runtime/test_layout_registry.py`` runs every layout's example."""
        raise NotImplementedError("layout {} has no example(): add one for the registry's tests".format(self.name))

    def sample(self, meta, rng, batch):
        """Outputs of ``batch`` images that this layout's decode takes (default: uniform values in [0, 1) shaped
        as ``output_shape``, 20 rows where the size is free); layouts whose values have meaning (class columns,
        batch indices) override it."""
        arrays = []
        for index in range(self.output_count(meta)):
            shape = self.output_shape(meta, index)
            dims = [batch if axis == 0 and self.batch_first(meta) else (20 if d is None else d)
                    for axis, d in enumerate(shape)]
            arrays.append(rng.random_sample(dims).astype(np.float32))
        return arrays

    # -- import --------------------------------------------------------------------------------------------------
    def recognise(self, outputs, producer):
        """A :class:`Recognised` when ``outputs`` (``[(name, shape)]`` of an ONNX, None for a dynamic size) and
        ``producer`` (its ``metadata_props`` as a dict, plus ``"input_size"``: (H, W)) are this layout's, else None."""
        return None

    def import_doubts(self, meta, output_ops):
        """What looks wrong in ``meta`` as `edgecsp export --onnx` wrote it for a graph whose outputs are written by
        ``output_ops`` (``{output: op type}``, seen through reshapes): ``(refused, doubts)``, lists of phrases. The
        import refuses the first (one line, exit 3: they cannot be right) and warns about the others."""
        return [], []

    def from_options(self, options, outputs, input_size):
        """The parameters (JSON form) that ``edgecsp export --onnx --layout NAME`` options describe
        (``options``: the values of ``export_options`` that were given, plus ``--param KEY=VALUE`` pairs), for
        ``outputs`` ``[(name, shape)]``; InputError when they do not fit."""
        from edgecsp.errors import InputError

        raise InputError("layout {} takes no options: leave them out".format(self.name))


def keep_passing(decoded, conf):
    """``decoded`` without the rows that cannot score above ``conf``."""
    if decoded.scores.ndim == 1:
        keep = decoded.scores > np.float32(conf)
    else:
        keep = (decoded.scores > np.float32(conf)).any(axis=1) if decoded.scores.shape[1] else \
            np.zeros(decoded.scores.shape[0], bool)
    if keep.all():
        return decoded
    return Decoded(decoded.boxes[keep], decoded.scores[keep], None if decoded.classes is None else
                   decoded.classes[keep])


def as_outputs(outputs, meta, count):
    """``outputs`` (a list in ``meta.outputs`` order, or a dict by name) as a list of ``count`` arrays."""
    if isinstance(outputs, dict):
        if not meta.outputs:
            raise MetadataError("outputs were given by name but the metadata lists no output names: pass them as a "
                                "list in metadata order or re-export the model")
        missing = [name for name in meta.outputs if name not in outputs]
        if missing:
            raise MetadataError("model outputs {} named in the metadata are missing (got {}): re-export the "
                                "model".format(missing, sorted(outputs)))
        outputs = [outputs[name] for name in meta.outputs]
    arrays = [np.asarray(o) for o in outputs]
    if len(arrays) != count:
        raise MetadataError("the model returned {} outputs but its {} metadata describes {}: re-export the "
                            "model".format(len(arrays), meta.layout, count))
    return arrays


def check_array(array, meta, layout, index):
    """``array`` as float32 after checking it has the shape output ``index`` must have; MetadataError else."""
    if not layout.shape_fits(meta, index, tuple(array.shape)):
        needed = layout.output_shape(meta, index)
        raise MetadataError("output {} is shaped {} but the {} metadata ({} classes) needs {} {}: the metadata does "
                            "not belong to this model; re-export it".format(
                                index, tuple(array.shape), layout.name, meta.num_classes,
                                layout.describe_output(meta, index),
                                "(" + ", ".join("?" if d is None else str(d) for d in needed) + ")"))
    return array if array.dtype == np.float32 else array.astype(np.float32)


def grid_size(side, stride):
    """The cells a level of ``stride`` has over ``side`` pixels (strided convolutions with padding, and darknet,
    round odd sizes up)."""
    return -(-int(side) // int(stride))


def level_cells(input_size, strides):
    """The cells of all levels of ``strides`` over an input of ``input_size`` (H, W): the anchor points of an
    anchor-free head, the rows of a one-anchor decoded output."""
    height, width = input_size
    return sum(grid_size(height, s) * grid_size(width, s) for s in strides)


def checked_outputs(outputs, meta, layout):
    """``outputs`` as the list of float32 arrays ``layout`` takes for ``meta`` (``as_outputs`` and ``check_array``
    on each), all of one batch; MetadataError otherwise."""
    arrays = as_outputs(outputs, meta, layout.output_count(meta))
    arrays = [check_array(array, meta, layout, index) for index, array in enumerate(arrays)]
    for index, array in enumerate(arrays):
        if layout.batch_first(meta) and array.shape[0] != arrays[0].shape[0]:
            raise MetadataError("output {} has batch {} but output 0 has batch {}: the outputs do not come from "
                                "one inference".format(index, array.shape[0], arrays[0].shape[0]))
    return arrays


# -- the registry ------------------------------------------------------------------------------------------------
_REGISTRY = {}  # type: Dict[str, Layout]
_ORDER = []  # type: List[Layout]


def _load():
    if _ORDER:
        return
    found = set(m.name for m in pkgutil.iter_modules([os.path.dirname(os.path.abspath(__file__))])
                if not m.name.startswith("_"))
    names = [m for m in LAYOUT_MODULES if m in found] + sorted(found - set(LAYOUT_MODULES))
    registry, order = {}, []  # filled whole, then published: a module that fails to import leaves no half registry
    for module_name in names:
        module = importlib.import_module("{}.{}".format(__name__, module_name))
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Layout) and value.name
                    and value.__module__ == module.__name__):
                layout = value()
                if layout.name in registry:
                    raise RuntimeError("two layouts are named {!r}".format(layout.name))
                registry[layout.name] = layout
                order.append(layout)
    _REGISTRY.update(registry)
    _ORDER.extend(order)


def list_layouts():
    # type: () -> List[Layout]
    """Every layout, in recognition order."""
    _load()
    return list(_ORDER)


def layout_names():
    # type: () -> Tuple[str, ...]
    return tuple(layout.name for layout in list_layouts())


def get_layout(name, where="metadata"):
    # type: (str, str) -> Layout
    """The layout called ``name``; MetadataError listing the known ones otherwise."""
    _load()
    layout = _REGISTRY.get(name)
    if layout is None:
        raise MetadataError("{} names output layout {!r}, which this edgecsp does not know (it knows {}): upgrade "
                            "edgecsp or re-export the model".format(where, name, ", ".join(layout_names())))
    return layout


def recognise(outputs, producer):
    # type: (Sequence[Tuple[str, Optional[Sequence]]], dict) -> Optional[Tuple[Layout, Recognised]]
    """The first layout (in ``LAYOUT_MODULES`` order) that recognises ``outputs``: ``(layout, Recognised)``."""
    for layout in list_layouts():
        found = layout.recognise(outputs, producer)
        if found is not None:
            return layout, found
    return None
