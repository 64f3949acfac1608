"""Read and write darknet ``.weights`` files (numpy only).

Layout (AlexeyAB ``load_weights_upto`` / ``save_weights_upto``), little-endian:

* header: ``int32 major, minor, revision``, then ``seen`` (images trained on) as ``uint64`` when
  ``major * 10 + minor >= 2``, else as ``int32``;
* then, for every ``[convolutional]`` layer in cfg order, float32: ``biases[filters]``, and when
  ``batch_normalize=1`` ``scales[filters]``, ``rolling_mean[filters]``, ``rolling_variance[filters]``; then the
  kernel ``weights[filters, in_channels / groups, size, size]``.

Nothing else in the layers edgecsp imports carries weights. The file must hold exactly the floats the cfg asks
for: a shorter file is truncated (darknet would silently leave zeros), a longer one belongs to another cfg. The
size is checked from the file's length before its body is read, and only those floats are read: a wrong file of
any size costs no memory.
"""
import os
import stat
from collections import OrderedDict
from typing import Dict, NamedTuple

import numpy as np

from edgecsp._files import atomic_output
from edgecsp.darknet.cfg import excerpt
from edgecsp.darknet.graph import conv_params
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
    return sum(conv_params(layer.attrs) for layer in plan.layers if layer.kind == "convolutional")


def _count(shape):
    count = 1
    for v in shape:
        count *= int(v)
    return count


def read_weights(path, plan):
    # type: (str, object) -> tuple
    """``(header, params)`` with ``params[layer_index][name]`` float32 arrays; InputError on any size mismatch.

    The file's length is compared with what the cfg needs before anything past the header is read."""
    name = excerpt(os.path.basename(path), 40)
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise InputError("darknet weights {} not found{}: pass the .weights file trained with this cfg".format(
            excerpt(path, 80), "" if info is None else " (not a regular file)"))
    expected = expected_floats(plan)
    cfg_name = excerpt(os.path.basename(plan.cfg.path), 40)
    try:
        with open(path, "rb") as f:
            head = f.read(20)
            major = minor = revision = 0
            if len(head) >= 12:
                major, minor, revision = (int(v) for v in np.frombuffer(head, "<i4", 3))
            seen_bytes = 8 if major * 10 + minor >= 2 else 4
            header_bytes = 12 + seen_bytes
            size = os.fstat(f.fileno()).st_size
            if size < header_bytes:
                raise InputError("{} is {} bytes, too short for a darknet weights header ({} bytes): the file is "
                                 "truncated or not darknet weights".format(name, size, header_bytes))
            seen = int(np.frombuffer(head, "<u8" if seen_bytes == 8 else "<i4", 1, 12)[0])
            body = size - header_bytes
            if body != 4 * expected:
                found = "{} floats".format(body // 4) + (" and {} stray bytes".format(body % 4) if body % 4 else "")
                raise InputError(
                    "{} holds {} after its {}-byte header (version {}.{}.{}; {} bytes in all) but {} needs exactly "
                    "{} floats ({} bytes in all){}: {}".format(
                        name, found, header_bytes, major, minor, revision, size, cfg_name, expected,
                        header_bytes + 4 * expected, _where_short(plan, body // 4),
                        "the weights file is truncated, copy or download it again" if body < 4 * expected else
                        "the weights belong to another cfg, pass the .cfg they were trained with"))
            f.seek(header_bytes)
            values = np.fromfile(f, "<f4", expected)
    except OSError as exc:
        raise InputError("cannot read darknet weights {} ({}): check the path and permissions".format(
            name, excerpt(exc.strerror or exc, 40)))
    if values.size != expected:
        raise InputError("{} changed while it was read ({} of {} floats): read it again once it is written "
                         "completely".format(name, values.size, expected))
    finite = np.isfinite(values)
    if not finite.all():  # a diverged training run or a damaged file: every output would be NaN
        first = int(np.argmin(finite))
        raise InputError("{} holds {} NaN or infinite values, the first in layer {}: training diverged or the file is "
                         "damaged, use another .weights".format(name, int(values.size - np.count_nonzero(finite)),
                                                                _where_short(plan, first, False)))
    header = WeightsHeader(major, minor, revision, seen)
    params = OrderedDict()  # type: Dict[int, Dict[str, np.ndarray]]
    offset = 0
    for layer in plan.layers:
        shapes = param_shapes(layer)
        if not shapes:
            continue
        arrays = OrderedDict()
        for key, shape in shapes.items():
            count = _count(shape)
            arrays[key] = values[offset:offset + count].reshape(shape).astype(np.float32)
            offset += count
        params[layer.index] = arrays
    return header, params


def _where_short(plan, found, short=True):
    """`` (the file ends inside layer 57, [convolutional] at line 610)`` when ``found`` floats run out before the cfg
    does; ``short=False``: ``57 ([convolutional] at line 610)``, the layer that holds float number ``found``."""
    total = 0
    for layer in plan.layers:
        total += sum(_count(s) for s in param_shapes(layer).values())
        if total > found:
            where = "[{}] at line {}".format(layer.section.kind, layer.section.line)
            return " (the file ends inside layer {}, {})".format(layer.index, where) if short else "{} ({})".format(
                layer.index, where)
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
