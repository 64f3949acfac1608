"""Dependencies point one way (STYLE.md §8): a module imports only from its own package and from lower layers.

Every ``import`` and ``from ... import`` of an edgecsp module counts, the ones inside functions included; the
layer table below is the architecture README's "Architecture" section in code.
"""
import ast
import os
import pkgutil
import subprocess
import sys

import edgecsp

PACKAGE_DIR = os.path.dirname(os.path.abspath(edgecsp.__file__))

# top to bottom; a unit is a module or a package prefix. Units of one layer must not import each other.
LAYERS = [
    ("entry point", ["edgecsp.__main__"]),
    ("cli", ["edgecsp.cli"]),
    ("bench", ["edgecsp.bench"]),
    ("library commands", ["edgecsp.build", "edgecsp.infer", "edgecsp.bench_measure"]),
    ("serving", ["edgecsp.serving"]),
    ("training", ["edgecsp.training"]),
    ("evaluation", ["edgecsp.evaluation"]),
    ("export and backends", ["edgecsp.export", "edgecsp.backends"]),
    ("calibration", ["edgecsp.calibration"]),
    ("importers", ["edgecsp.darknet"]),
    ("models, data, ONNX helpers", ["edgecsp.models", "edgecsp.data", "edgecsp.onnxio"]),
    ("runtime and targets", ["edgecsp.runtime", "edgecsp.targets"]),
    ("foundation", ["edgecsp._files", "edgecsp._lazy", "edgecsp.validate", "edgecsp"]),
    ("quiet third-party logs", ["edgecsp._quiet"]),
    ("errors", ["edgecsp.errors"]),
]


def unit_of(module):
    """``(layer index, unit)`` of an edgecsp module: the longest unit prefix that matches."""
    best = None
    for index, (_, units) in enumerate(LAYERS):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                if best is None or len(unit) > len(best[1]):
                    best = (index, unit)
    return best


def modules():
    found = {"edgecsp": os.path.join(PACKAGE_DIR, "__init__.py")}
    for info in pkgutil.walk_packages(edgecsp.__path__, "edgecsp."):
        spec = info.module_finder.find_spec(info.name)
        found[info.name] = spec.origin
    return found


def imports_of(module, path):
    """Every edgecsp module ``module`` imports (absolute or relative, at any depth of the file)."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from edgecsp.x import y` may import the submodule edgecsp.x.y
            names += [(name + "." + a.name, node.lineno) for a in node.names] + [(name, node.lineno)]
    known = modules_cache()
    return [(n, line) for n, line in names if n in known and (n == "edgecsp" or n.startswith("edgecsp."))]


_CACHE = {}


def modules_cache():
    if not _CACHE:
        _CACHE.update(modules())
    return _CACHE


def upward_imports():
    problems = []
    for module, path in sorted(modules_cache().items()):
        mine = unit_of(module)
        assert mine is not None, "{} is in no layer: add it to LAYERS (and the README's Architecture)".format(module)
        for name, line in imports_of(module, path):
            theirs = unit_of(name)
            if theirs[1] == mine[1] or theirs[0] > mine[0]:
                continue  # its own unit, or a lower layer
            if name == "edgecsp" and not path.endswith("__init__.py"):
                continue
            problems.append("{}:{} ({}) imports {} ({})".format(
                os.path.relpath(path, os.path.dirname(PACKAGE_DIR)), line, LAYERS[mine[0]][0], name,
                LAYERS[theirs[0]][0]))
    return problems


def test_every_module_belongs_to_a_layer_and_imports_only_downwards():
    assert len(modules_cache()) > 60
    assert upward_imports() == []


def test_the_layer_check_catches_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """The check is not vacuous: a runtime module importing backends inside a function is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from edgecsp.backends import open_runner\n    return open_runner\n")
    monkeypatch.setitem(_CACHE, "edgecsp.runtime.bad_example", str(bad))
    problems = upward_imports()
    assert len(problems) == 1 and "runtime and targets) imports edgecsp.backends" in problems[0]


def test_no_package_cycles():
    """Between top-level packages the import graph is acyclic (a cycle is an upward import somewhere)."""
    graph = {}
    for module, path in modules_cache().items():
        top = ".".join(module.split(".")[:2])
        for name, _ in imports_of(module, path):
            other = ".".join(name.split(".")[:2])
            if other != top and other != "edgecsp":
                graph.setdefault(top, set()).add(other)

    def reaches(start, goal, seen):
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(top for top in graph if reaches(top, top, {top}))
    assert cycles == []


_FORKED_IMPORTS = r"""
import importlib, json, os, sys
import numpy  # third-party packages may be preloaded: only the order of edgecsp's own modules is under test
for heavy in ("torch", "onnx", "onnxruntime", "openvino", "cv2"):
    try:
        importlib.import_module(heavy)
    except ImportError:
        pass
failed = {}
for name in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:  # a fresh interpreter state for edgecsp: nothing of it is imported yet
        try:
            importlib.import_module(name)
            os._exit(0)
        except ImportError as exc:
            sys.stderr.write("%s: ImportError %s\n" % (name, exc))
            os._exit(3)
        except BaseException as exc:
            sys.stderr.write("%s: %s %s\n" % (name, type(exc).__name__, exc))
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status:
        failed[name] = os.WEXITSTATUS(status)
print(json.dumps(failed))
"""


def test_each_module_imports_first_on_its_own():
    """``python -c "import edgecsp.X"`` works for every X: no module depends on another being imported first."""
    import json

    from edgecsp._lazy import available

    names = sorted(modules_cache())
    proc = subprocess.run([sys.executable, "-c", _FORKED_IMPORTS, json.dumps(names)], capture_output=True,
                          text=True, timeout=600, cwd=os.path.dirname(PACKAGE_DIR))
    assert proc.returncode == 0, proc.stderr
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    # without torch, the PyTorch model modules may only fail with its ImportError
    torch_missing = set() if available("torch") else {
        n for n, code in failed.items() if code == 3 and "{}: ImportError No module named 'torch'".format(n) in proc.stderr}
    assert len(names) > 60 and set(failed) - torch_missing == set(), proc.stderr
