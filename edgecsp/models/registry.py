"""The model registry: ``@register_model`` on a factory function, ``create_model(name)`` to build one.

This module imports nothing heavy; the families (``cspnet.py``, ``yolo.py``) import torch and are imported
when the registry is first queried.
"""
import importlib
from typing import Callable, Dict, List, NamedTuple, Tuple

from edgecsp._lazy import require
from edgecsp.errors import InputError
from edgecsp.validate import shown

_FAMILY_MODULES = ("edgecsp.models.cspnet", "edgecsp.models.yolo")


class ModelEntry(NamedTuple):
    name: str
    family: str  # module stem, e.g. "cspnet", "yolo"
    task: str  # "classify" | "detect"
    input_size: Tuple[int, int]  # default (height, width)
    description: str
    factory: Callable
    paper_params_m: float = 0.0  # the paper's parameter count in millions, 0 when not applicable


_REGISTRY = {}  # type: Dict[str, ModelEntry]
_loaded = [False]


def register_model(task, input_size, description, paper_params_m=0.0, name=None):
    """Decorator: register ``fn(**kwargs) -> nn.Module`` under its function name (or ``name``)."""

    def wrap(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError("model {!r} registered twice".format(key))
        family = fn.__module__.rsplit(".", 1)[-1]
        _REGISTRY[key] = ModelEntry(key, family, task, tuple(input_size), description, fn, paper_params_m)
        return fn

    return wrap


def _load_families():
    if not _loaded[0]:
        require("torch", "the PyTorch model zoo")
        for module in _FAMILY_MODULES:
            importlib.import_module(module)
        _loaded[0] = True


def list_models():
    # type: () -> List[ModelEntry]
    """All registered models, sorted by name (imports torch)."""
    _load_families()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_entry(name):
    # type: (str) -> ModelEntry
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError("unknown model {!r}: choose one of {} (see `edgecsp models`)".format(
            name, ", ".join(sorted(_REGISTRY))))


def create_model(name, **kwargs):
    """Build a registered model (random weights); kwargs go to its factory (e.g. num_classes). InputError when
    the factory does not take one of them (a model card's ``kwargs`` come from a file)."""
    import inspect

    entry = get_entry(name)
    parameters = inspect.signature(entry.factory).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        strays = sorted(k for k in kwargs if k not in parameters)
        if strays:
            raise InputError("model {} takes no argument {} (it takes {}): fix the card's kwargs".format(
                name, ", ".join(strays), ", ".join(parameters) or "none"))
    if not kwargs:
        return entry.factory()
    try:
        return entry.factory(**kwargs)
    except (TypeError, ValueError) as exc:  # a keyword the model's class lacks, or a value of the wrong kind
        raise InputError("model {} cannot be built with {} ({}: {}): fix the card's kwargs".format(
            name, shown(kwargs, 80), type(exc).__name__, shown(str(exc), 120)))
