"""Read and write darknet ``.weights`` files (numpy only).

Layout (AlexeyAB ``load_weights_upto`` / ``save_weights_upto``), little-endian:

* header: ``int32 major, minor, revision``, then ``seen`` (images trained on) as ``uint64`` when
  ``major * 10 + minor >= 2``, else as ``int32``;
* then, for every ``[convolutional]`` layer in cfg order, float32: ``biases[filters]``, and when
  ``batch_normalize=1`` ``scales[filters]``, ``rolling_mean[filters]``, ``rolling_variance[filters]``; then the
  kernel ``weights[filters, in_channels / groups, size, size]``.

Nothing else in the layers edgecsp imports carries weights. The file must hold exactly the floats the cfg asks
for: a shorter file is truncated (darknet would silently leave zeros), a longer one belongs to another cfg.
"""
import os
from collections import OrderedDict
from typing import Dict, NamedTuple

import numpy as np

from edgecsp._files import atomic_output
from edgecsp.errors import InputError

DEFAULT_VERSION = (0, 2, 5)  # what AlexeyAB darknet writes today


class WeightsHeader(NamedTuple):
    major: int
    minor: int
    revision: int
    seen: int

    @property
    def seen_bytes(self):
        return 8 if self.major * 10 + self.minor >= 2 else 4


def param_shapes(layer):
    """OrderedDict name -> shape of the arrays a planned layer owns, in file order (empty for most kinds)."""
    shapes = OrderedDict()
    if layer.kind != "convolutional":
        return shapes
    a = layer.attrs
    n = a["filters"]
    shapes["biases"] = (n,)
    if a["batch_normalize"]:
        shapes["scales"] = (n,)
        shapes["rolling_mean"] = (n,)
        shapes["rolling_variance"] = (n,)
    shapes["weights"] = (n, a["in_channels"] // a["groups"], a["size"], a["size"])
    return shapes


def expected_floats(plan):
    """Number of float32 values after the header that ``plan``'s cfg needs."""
    return sum(int(np.prod(s)) for layer in plan.layers for s in param_shapes(layer).values())


def read_weights(path, plan):
    # type: (str, object) -> tuple
    """``(header, params)`` with ``params[layer_index][name]`` float32 arrays; InputError on any size mismatch."""
    if not os.path.isfile(path):
        raise InputError("darknet weights {} not found: pass the .weights file trained with this cfg".format(path))
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    major = minor = revision = 0
    if len(data) >= 12:
        major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    seen_bytes = 8 if major * 10 + minor >= 2 else 4
    if len(data) < 12 + seen_bytes:
        raise InputError("{} is {} bytes, too short for a darknet weights header ({} bytes): the file is "
                         "truncated or not darknet weights".format(name, len(data), 12 + seen_bytes))
    seen = int(np.frombuffer(data, "<u8" if seen_bytes == 8 else "<i4", 1, 12)[0])
    header = WeightsHeader(major, minor, revision, seen)
    body = len(data) - 12 - seen_bytes
    expected = expected_floats(plan)
    if body % 4 or body // 4 != expected:
        found = "{} floats".format(body // 4) + (" and {} stray bytes".format(body % 4) if body % 4 else "")
        raise InputError("{} holds {} after its header (version {}.{}.{}) but {} needs exactly {} floats{}: {}".format(
            name, found, major, minor, revision, os.path.basename(plan.cfg.path), expected,
            _where_short(plan, body // 4), "the weights file is truncated" if body // 4 < expected else
            "the weights belong to another cfg"))
    values = np.frombuffer(data, "<f4", expected, 12 + seen_bytes)
    params = OrderedDict()  # type: Dict[int, Dict[str, np.ndarray]]
    offset = 0
    for layer in plan.layers:
        shapes = param_shapes(layer)
        if not shapes:
            continue
        arrays = OrderedDict()
        for key, shape in shapes.items():
            count = int(np.prod(shape))
            arrays[key] = values[offset:offset + count].reshape(shape).astype(np.float32)
            offset += count
        params[layer.index] = arrays
    return header, params


def _where_short(plan, found):
    """`` (the file ends inside layer 57, line 610)`` when ``found`` floats run out before the cfg does."""
    total = 0
    for layer in plan.layers:
        total += sum(int(np.prod(s)) for s in param_shapes(layer).values())
        if total > found:
            return " (the file ends inside layer {}, [{}] at line {})".format(
                layer.index, layer.section.kind, layer.section.line)
    return ""


def write_weights(path, plan, params, header=None):
    """Write ``params`` (as returned by :func:`read_weights` or :func:`random_weights`) for ``plan`` atomically."""
    header = header or WeightsHeader(DEFAULT_VERSION[0], DEFAULT_VERSION[1], DEFAULT_VERSION[2], 0)
    chunks = [np.asarray(header[:3], "<i4").tobytes(),
              np.asarray([header.seen], "<u8" if header.seen_bytes == 8 else "<i4").tobytes()]
    for layer in plan.layers:
        for key, shape in param_shapes(layer).items():
            try:
                array = np.asarray(params[layer.index][key], "<f4")
            except KeyError:
                raise InputError("no {} given for layer {} ([{}] at line {})".format(
                    key, layer.index, layer.section.kind, layer.section.line))
            if array.shape != tuple(shape):
                raise InputError("{} of layer {} has shape {} but the cfg needs {}".format(
                    key, layer.index, array.shape, tuple(shape)))
            chunks.append(array.tobytes())
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
    return path


def random_weights(plan, seed=0):
    """Random but well-scaled parameters for ``plan`` (for tests and pipeline checks without trained weights).

    Kernels are He-initialised (std ``sqrt(2 / fan_in)``) and batch-norm statistics are drawn so that every
    layer roughly keeps its input's scale: means ~ N(0, 0.1), variances in [0.5, 1.5], scales in [0.5, 1.0],
    biases ~ N(0, 0.1). Activations therefore stay O(1) through 100+ layers, and BN variances are far from 0
    (which keeps darknet's and other runtimes' epsilon conventions from mattering more than ~1e-5 per layer).
    """
    rng = np.random.default_rng(seed)
    params = OrderedDict()
    for layer in plan.layers:
        shapes = param_shapes(layer)
        if not shapes:
            continue
        n = layer.attrs["filters"]
        fan_in = int(np.prod(shapes["weights"][1:]))
        arrays = OrderedDict()
        arrays["biases"] = rng.normal(0.0, 0.1, n)
        if layer.attrs["batch_normalize"]:
            arrays["scales"] = rng.uniform(0.5, 1.0, n)
            arrays["rolling_mean"] = rng.normal(0.0, 0.1, n)
            arrays["rolling_variance"] = rng.uniform(0.5, 1.5, n)
            std = np.sqrt(2.0 / fan_in)
        else:
            std = np.sqrt(1.0 / fan_in)  # a linear head: keep its outputs (box/objectness logits) O(1)
        arrays["weights"] = rng.normal(0.0, std, shapes["weights"])
        params[layer.index] = OrderedDict((k, v.astype(np.float32)) for k, v in arrays.items())
    return params
