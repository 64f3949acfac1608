"""The numeric helpers every output layout shares: a numerically safe float32 logistic, cached cell grids and the
exp clip. The layouts themselves (``edgecsp.runtime.layouts``: one module each) hold their decodes; a model's is
``meta.spec.decode``. Python 3.6 compatible; numpy only.
"""
import threading

import numpy as np

# exp(tw) beyond e**10 (22,000 x the anchor) is never a real box; the cap keeps later area products (x * y up to
# ~1e14) far from float32 overflow, which would turn IoUs into NaN in NMS.
EXP_CLIP = 10.0
# float32 exp overflows above 88.7, and 1 / (1 + e**85) is already subnormal (slow on some CPUs); at 80 the
# result stays a normal float (~1.8e-35), indistinguishable from 0 for any score.
SIGMOID_CLIP = 80.0

_GRIDS = {}
_GRIDS_LOCK = threading.Lock()
_GRIDS_MAX = 32  # a handful of input sizes at most; the bound only protects against pathological callers


def sigmoid(x):
    """Numerically safe float32 logistic (no overflow warnings for any input)."""
    t = np.clip(np.asarray(x, dtype=np.float32), -SIGMOID_CLIP, SIGMOID_CLIP)
    np.negative(t, out=t)
    np.exp(t, out=t)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    return t


def cell_grid(h, w):
    """Cell offsets for an HxW map as a read-only float32 array shaped (1, 1, 2, H*W): row 0 = x, row 1 = y."""
    key = (h, w)
    grid = _GRIDS.get(key)
    if grid is None:
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        grid = np.stack([xs.reshape(-1), ys.reshape(-1)])[None, None]
        grid.setflags(write=False)  # shared across calls and threads
        with _GRIDS_LOCK:
            if len(_GRIDS) >= _GRIDS_MAX:
                _GRIDS.clear()
            _GRIDS[key] = grid
    return grid
