"""The source PyTorch model as a runner, so that ``edgecsp eval`` and ``edgecsp compare`` measure what export itself
changes: ``torch:MODEL`` (registry name, random weights), ``torch:CARD.json`` (model card and its weights) or
``torch:CFG,WEIGHTS`` (darknet), spelled as ``edgecsp bench --vs`` spells its PyTorch baseline.

The runner returns the raw head outputs an export of the same model returns (``head<stride>``, or ``logits``),
and its metadata is the one export writes (``meta_from_model``), so the runtime decodes both the same way.
"""
import os

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.runtime.runner import BaseRunner

PREFIX = "torch:"
SPEC_HELP = "torch:MODEL|CARD.json|CFG,WEIGHTS (the PyTorch model before export)"


def is_torch_spec(text):
    # type: (object) -> bool
    return isinstance(text, str) and text.startswith(PREFIX)


def export_config(spec, input_size=None):
    """The ``ExportConfig`` that loads the model of a ``torch:...`` spec (InputError for a malformed one)."""
    from edgecsp.validate import path_pair
    from edgecsp.export.onnx_export import ExportConfig

    rest = spec[len(PREFIX):] if is_torch_spec(spec) else str(spec)
    if not rest:
        raise InputError("{!r} names no model: pass {}".format(spec, SPEC_HELP))
    if "," in rest:
        cfg, weights = path_pair(rest, PREFIX)
        return ExportConfig(darknet_cfg=cfg, darknet_weights=weights, input_size=input_size)
    if rest.lower().endswith(".json"):
        if not os.path.isfile(rest):
            raise InputError("{}: model card {} not found".format(spec, rest))
        return ExportConfig(card=rest, input_size=input_size)
    return ExportConfig(model=rest, input_size=input_size)


class TorchRunner(BaseRunner):
    """Runs the PyTorch model of ``spec`` in eval mode under ``torch.inference_mode`` (CPU, float32)."""

    ARTEFACT_IS_FILE = False

    def __init__(self, spec, input_size=None, threads=None):
        super(TorchRunner, self).__init__(spec)
        from edgecsp.runtime.runner import check_threads

        self._config = export_config(spec, tuple(input_size) if input_size else None)
        self._threads = check_threads(threads)
        self._model = None
        self._torch = None

    def _activate(self):
        from edgecsp.export.metadata import meta_from_model
        from edgecsp.export.onnx_export import INPUT_NAME, load_torch_model

        torch = require("torch", "running the PyTorch model (torch:...)")
        if self._threads:
            torch.set_num_threads(self._threads)
        model, name, source, digest = load_torch_model(self._config)
        size = tuple(self._config.input_size or getattr(model, "input_size", None) or (224, 224))
        names = ["head{}".format(s) for s in model.strides] if hasattr(model, "strides") else ["logits"]
        meta = meta_from_model(model, name, input_size=size, outputs=names, source=os.path.basename(str(source)),
                               source_sha256=digest, precision="fp32", backend="torch", torch=torch.__version__)
        self._torch, self._model = torch, model
        self._bind(meta, INPUT_NAME, (None, 3) + size, names)

    def _deactivate(self):
        self._model = None

    def _infer(self, batch):
        with self._torch.inference_mode():
            outputs = self._model(self._torch.from_numpy(batch))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [o.float().numpy() for o in outputs]

    def __repr__(self):
        return "TorchRunner({!r})".format(self.path)


def open_model_runner(spec, threads=None, beside=None):
    """An unopened runner for an artefact path or a ``torch:...`` spec. A PyTorch model runs at the input size of
    the artefact ``beside`` it (the one it is evaluated or compared with), so that their difference is what
    export and build changed; alone, or beside another ``torch:`` spec, at the model's own size."""
    if is_torch_spec(spec):
        size = None
        if beside and not is_torch_spec(beside) and "://" not in str(beside):
            from edgecsp.backends import read_artefact_meta

            size = read_artefact_meta(beside).input_size
        return TorchRunner(spec, input_size=size, threads=threads)
    from edgecsp.backends import open_runner

    return open_runner(spec, **({"threads": threads} if threads else {}))
