"""Flag numpy API newer than the device floor (numpy 1.13, JetPack 4.6's apt numpy) in device-side modules.

vermin checks the Python syntax and standard library against 3.6; this checks numpy. The table lists the APIs a
CV runtime plausibly reaches for that numpy added after 1.13 (functions, numpy.random members, and keyword
arguments added to older functions), with the version that added them (numpy's release notes). A call through
``getattr``/``hasattr`` feature detection is not an AST attribute access and is not flagged.

    python scripts/check_numpy_floor.py edgecsp/runtime edgecsp/backends ...   (exit 1 and a line per finding)
"""
import ast
import os
import sys

FLOOR = (1, 13)

# numpy.<name> (or numpy.random.<name>) -> the version that added it
ATTRIBUTES = {
    "random.default_rng": (1, 17), "random.Generator": (1, 17), "random.PCG64": (1, 17),
    "random.SeedSequence": (1, 17), "random.BitGenerator": (1, 17), "random.Philox": (1, 17),
    "random.SFC64": (1, 17), "random.MT19937": (1, 17),
    "quantile": (1, 15), "nanquantile": (1, 15), "take_along_axis": (1, 15), "put_along_axis": (1, 15),
    "gcd": (1, 15), "lcm": (1, 15), "histogram_bin_edges": (1, 15), "isnat": (1, 13),
    "lib.stride_tricks.sliding_window_view": (1, 20), "typing": (1, 20), "array_api": (1, 22),
    "exceptions": (1, 25), "dtypes": (1, 25), "matrix_transpose": (2, 0), "concat": (2, 0), "permute_dims": (2, 0),
    "astype": (2, 1), "unstack": (2, 1), "cumulative_sum": (2, 1), "bitwise_count": (2, 0), "vecdot": (2, 0),
    "trapezoid": (2, 0), "isdtype": (2, 0), "long": (2, 0), "ulong": (2, 0),
}
# numpy.<function>(..., <keyword>=...) -> the version that added the keyword
KEYWORDS = {
    ("packbits", "bitorder"): (1, 17), ("unpackbits", "bitorder"): (1, 17), ("unpackbits", "count"): (1, 17),
    ("linspace", "axis"): (1, 16), ("logspace", "axis"): (1, 16), ("geomspace", "axis"): (1, 16),
    ("full_like", "shape"): (1, 17), ("zeros_like", "shape"): (1, 17), ("ones_like", "shape"): (1, 17),
    ("empty_like", "shape"): (1, 17), ("concatenate", "dtype"): (1, 20), ("concatenate", "casting"): (1, 20),
    ("argmax", "keepdims"): (1, 22), ("argmin", "keepdims"): (1, 22), ("percentile", "method"): (1, 22),
    ("quantile", "method"): (1, 22), ("unique", "equal_nan"): (1, 24), ("sum", "where"): (1, 17),
    ("mean", "where"): (1, 20), ("max", "where"): (1, 17), ("min", "where"): (1, 17),
}
# numpy.<function>(...) calls that are wrong before a version unless an argument is given
REQUIRED = {("pad", "mode", 2): (1, 17)}  # np.pad's mode became optional in 1.17 (positional index 2)


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _numpy_names(tree):
    """The local names numpy is imported as (``import numpy as np``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "numpy":
                    names.add(alias.asname or "numpy")
    return names


def _label(version):
    return ".".join(str(v) for v in version)


def check_source(text, path="<source>", floor=FLOOR):
    """``[(path, line, message)]`` for numpy API newer than ``floor`` in ``text``."""
    tree = ast.parse(text, path)
    aliases = _numpy_names(tree)
    found = []

    def api(node):
        name = _dotted(node)
        if not name or "." not in name:
            return None
        head, rest = name.split(".", 1)
        return rest if head in aliases else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = api(node)
            if name in ATTRIBUTES and ATTRIBUTES[name] > floor:
                found.append((path, node.lineno, "numpy.{} needs numpy {}".format(name, _label(ATTRIBUTES[name]))))
        if isinstance(node, ast.Call):
            name = api(node.func)
            for keyword in node.keywords:
                key = (name, keyword.arg)
                if key in KEYWORDS and KEYWORDS[key] > floor:
                    found.append((path, node.lineno, "numpy.{}({}=...) needs numpy {}".format(
                        name, keyword.arg, _label(KEYWORDS[key]))))
            for (function, argument, index), version in REQUIRED.items():
                given = len(node.args) > index or any(k.arg == argument for k in node.keywords)
                if name == function and not given and version > floor:
                    found.append((path, node.lineno, "numpy.{} without {}= needs numpy {}".format(
                        function, argument, _label(version))))
    return sorted(set(found))


def check_paths(paths, floor=FLOOR):
    found = []
    for path in paths:
        files = [path] if os.path.isfile(path) else [
            os.path.join(root, name) for root, _, names in os.walk(path) for name in sorted(names)
            if name.endswith(".py")]
        for name in files:
            with open(name) as handle:
                found += check_source(handle.read(), name, floor)
    return found


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    found = check_paths(argv)
    for path, line, message in found:
        print("{}:{}: {} (device floor {}; feature-detect it or use an older API)".format(
            path, line, message, _label(FLOOR)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
