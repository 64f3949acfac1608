"""Record the API surface of TensorRT's Python bindings: every class, method, property and enum member, with
argument names, as the JSON the strict stand-ins of tests/backends/tensorrt/ are built from.

Two sources, each recorded in the file's ``provenance``:

* ``source``: the pybind11 binding sources of a release branch of NVIDIA/TensorRT (python/src/**/*.cpp and the
  package's __init__.py, which adds nptype, volume and the context-manager methods), read from a git checkout:
      python scripts/trt_api_surface.py source /path/to/TensorRT release/8.2 > tests/backends/tensorrt/surfaces/tensorrt-8.2.json
* ``wheel``: a real bindings wheel from PyPI (``pip download --no-deps tensorrt-cu12-bindings==10.3.0``), imported
  and read with dir() and pybind11's signatures. PyPI's ``*-libs`` wheels are placeholders that download from
  NVIDIA's index (not reachable here), so the script links the bindings against stub libraries that define the
  few C entry points they import (``createInferBuilder_INTERNAL``...; the API itself is C++ virtual interfaces):
  enough to import and read every class, method, property and enum, never to run anything:
      python scripts/trt_api_surface.py wheel tensorrt_cu12_bindings-10.3.0-cp311-none-manylinux_2_17_x86_64.whl
* ``module``: the tensorrt module importable in this interpreter, read the same way.

The surface is ``{"tensorrt": "8.2", "provenance": {...}, "module": {name: kind}, "classes": {name: {"bases":
[...], "members": {name: {"kind": ..., "args": [...]}}}}}``; enums are classes whose members have kind "value";
nested names are dotted ("ILogger.Severity"). Python 3.8+ (a host tool).
"""
import ast
import json
import re
import subprocess
import sys

FORMAT = "edgecsp-api-surface"
_CLASS = re.compile(r"py::(class_|enum_)<((?:[^<>;{}]|<(?:[^<>]|<[^<>]*>)*>)*)>\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*\"(\w+)\"")
_CHAIN_START = re.compile(r"\b(\w+)\s*\.\s*(def\w*|value|attr)\s*\(")
_ARG = re.compile(r"\"(\w+)\"_a\b")
_STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")
_KINDS = {"def": "method", "def_static": "static", "def_property": "property", "def_readwrite": "property",
          "def_property_readonly": "readonly", "def_readonly": "readonly", "def_property_static": "static_property",
          "def_property_readonly_static": "static_property", "value": "value"}


def strip_comments(text):
    """C++ source without // and /* */ comments (string literals kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif text[i] == '"':
            match = _STRING.match(text, i)
            end = match.end() if match else i + 1
            out.append(text[i:end])
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _balanced(text, start):
    """The index just past the bracket that closes the one at ``start`` (strings skipped)."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack, i = [pairs[text[start]]], start + 1
    while i < len(text) and stack:
        ch = text[i]
        if ch == '"':
            match = _STRING.match(text, i)
            i = match.end() if match else i + 1
            continue
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch == stack[-1]:
            stack.pop()
        i += 1
    return i


def _chain(text, pos):
    """``[(call, inner text)]`` of the ``.call(...)`` chain starting at ``pos``, and where it ends."""
    calls = []
    while True:
        match = re.compile(r"\s*\.\s*(\w+)\s*\(").match(text, pos)
        if not match:
            return calls, pos
        open_at = match.end() - 1
        close = _balanced(text, open_at)
        calls.append((match.group(1), text[open_at + 1:close - 1]))
        pos = close


def _add_calls(surface, owner, calls, scope=None):
    """Record the members a ``.def(...)``/``.value(...)`` chain adds to ``owner``; ``export_values`` copies an
    enum's values into ``scope`` (its parent class, or the module), as pybind11 does."""
    for call, inner in calls:
        if call == "export_values" and scope is not None:
            for member, entry in owner["members"].items():
                if entry["kind"] == "value":
                    scope.setdefault(member, {"kind": "value"})
            continue
        if call in ("def", "def_static") and inner.lstrip().startswith(("py::init", "py::pickle")):
            owner["members"]["__init__"] = {"kind": "method", "args": _ARG.findall(inner)}
            continue
        kind = _KINDS.get(call)
        name = _STRING.match(inner.lstrip())
        if kind is None or not name:
            continue
        member = {"kind": kind}
        if kind in ("method", "static"):
            member["args"] = _ARG.findall(inner)
        if call == "def_property" and re.search(r",\s*nullptr\s*(?:,|$)", inner.split(",", 2)[-1] if "," in inner
                                                 else ""):
            member["kind"] = "property"
        existing = owner["members"].get(name.group(1))
        if existing and existing.get("args") is not None and member.get("args") is not None:
            member["overloads"] = existing.get("overloads", [existing["args"]]) + [member["args"]]
        owner["members"][name.group(1)] = member


def parse_bindings(texts):
    """The surface of the binding sources ``texts`` ({file name: C++ text})."""
    classes, module, cpp_names, variables = {}, {}, {}, {}
    sources = dict((name, strip_comments(text)) for name, text in sorted(texts.items()))
    for text in sources.values():  # first every declared class, so bases and scopes resolve in any file order
        for match in _CLASS.finditer(text):
            cpp = match.group(2).split(",")[0].strip()
            cpp_names.setdefault(cpp, match.group(5))
            cpp_names.setdefault(cpp.split("::")[-1], match.group(5))
    for text in sources.values():
        for match in _CLASS.finditer(text):
            kind, template, variable, scope, name = match.groups()
            parent = variables.get(scope)
            full = "{}.{}".format(parent, name) if parent else name
            args = [a.strip() for a in re.split(r",(?![^<]*>)", template)]
            bases = [cpp_names[a] for a in args[1:] if a in cpp_names and not a.startswith("Py")]
            owner = classes.setdefault(full, {"bases": bases, "members": {}})
            if kind == "enum_":  # pybind11 gives every enum these two
                owner["members"].setdefault("name", {"kind": "readonly"})
                owner["members"].setdefault("value", {"kind": "readonly"})
            if parent is None:
                module[name] = "enum" if kind == "enum_" else "class"
            if variable:
                variables[variable] = full
            open_at = match.end() - 1
            while text[open_at] not in "({":
                open_at -= 1
            calls, _ = _chain(text, _balanced(text, open_at))
            scope_members = classes[parent]["members"] if parent else None
            _add_calls(classes, owner, calls, scope_members)
        for match in _CHAIN_START.finditer(text):
            target = match.group(1)
            if target == "m" and match.group(2) in ("def", "attr"):
                inner_end = _balanced(text, match.end() - 1)
                name = _STRING.match(text[match.end():inner_end].lstrip())
                if name:
                    module[name.group(1)] = "function" if match.group(2) == "def" else "attribute"
            elif target in variables:
                calls, _ = _chain(text, match.start(1) + len(target))
                _add_calls(classes, classes[variables[target]], calls)
    return {"module": module, "classes": classes}


def add_package_init(surface, text):
    """What the package's __init__.py adds: module functions/attributes, and methods it sets on classes."""
    tree = ast.parse(re.sub(r"##(\w+)##", r"\1", text))  # the release scripts' placeholders (##TENSORRT_MODULE##)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            surface["module"][node.name] = "function"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and not target.id.startswith("_") or (
                        isinstance(target, ast.Name) and target.id == "__version__"):
                    surface["module"][target.id] = "attribute"
    functions = set(n.name for n in tree.body if isinstance(n, ast.FunctionDef))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    owner = surface["classes"].get(target.value.id)
                    if owner is None:
                        continue
                    method = (isinstance(node.value, (ast.Name, ast.Lambda)) and
                              (isinstance(node.value, ast.Lambda) or node.value.id in functions))
                    owner["members"].setdefault(target.attr, {"kind": "method", "args": []} if method
                                                else {"kind": "attribute"})
    return surface


def from_source(repo, branch):
    def git(*args):
        return subprocess.run(["git", "-C", repo] + list(args), capture_output=True, text=True, check=True).stdout

    files = [f for f in git("ls-tree", "-r", "--name-only", branch, "python/src").split()
             if f.endswith(".cpp") and "/parsers/py" not in f or f.endswith("pyOnnx.cpp")]
    surface = parse_bindings(dict((f, git("show", "{}:{}".format(branch, f))) for f in files))
    inits = [f for f in git("ls-tree", "-r", "--name-only", branch, "python/packaging").split()
             if f.endswith("tensorrt/__init__.py") and "frontend" not in f]
    for f in inits:
        add_package_init(surface, git("show", "{}:{}".format(branch, f)))
    commit = git("rev-parse", branch).strip()
    version = branch.rsplit("/", 1)[-1]
    return dict(format=FORMAT, tensorrt=version, provenance={
        "kind": "binding sources", "repository": "NVIDIA/TensorRT", "branch": branch, "commit": commit,
        "files": files + inits, "tool": "scripts/trt_api_surface.py source"}, **surface)


_SIGNATURE = re.compile(r"^\s*(?:\d+\.\s*)?(\w+)\((.*?)\)\s*->", re.M)


def _args_from_doc(doc):
    overloads = []
    for match in _SIGNATURE.finditer(doc or ""):
        names = []
        for part in re.split(r",\s*(?![^\[]*\])", match.group(2)):
            name = part.split(":")[0].strip()
            if name and name != "self" and not name.startswith("*"):
                names.append(name)
        overloads.append(names)
    return overloads


def from_module():
    import inspect

    import tensorrt as trt

    classes, module = {}, {}

    def record(name, obj):
        members = {}
        for member, value in vars(obj).items():
            if member.startswith("__") and member not in ("__init__", "__enter__", "__exit__", "__bool__", "__len__",
                                                          "__getitem__", "__int__", "__index__"):
                continue
            if hasattr(type(value), "__members__") and not inspect.isclass(value):  # a pybind11 enum value
                members[member] = {"kind": "value"}
            elif isinstance(value, property) or type(value).__name__ == "property":
                members[member] = {"kind": "property" if value.fset is not None else "readonly"}
            elif type(value).__name__ in ("instancemethod", "function", "builtin_function_or_method",
                                          "cppfunction") or callable(value) and not inspect.isclass(value):
                overloads = _args_from_doc(getattr(value, "__doc__", ""))
                entry = {"kind": "static" if isinstance(vars(obj)[member], staticmethod) else "method",
                         "args": overloads[0] if overloads else []}
                if len(overloads) > 1:
                    entry["overloads"] = overloads
                members[member] = entry
            elif inspect.isclass(value):
                record("{}.{}".format(name, member), value)
            else:
                members[member] = {"kind": "attribute"}
        bases = [b.__name__ for b in obj.__bases__ if b.__module__.startswith("tensorrt")]
        classes[name] = {"bases": bases, "members": members}

    for name in dir(trt):
        if name.startswith("_") and name != "__version__":
            continue
        value = getattr(trt, name)
        if inspect.isclass(value):
            module[name] = "enum" if hasattr(value, "__members__") else "class"
            record(name, value)
        elif callable(value):
            module[name] = "function"
        elif not inspect.ismodule(value):
            module[name] = "attribute"
    version = ".".join(trt.__version__.split(".")[:2])
    return {"format": FORMAT, "tensorrt": version, "provenance": {
        "kind": "installed wheel", "package": "tensorrt " + trt.__version__, "python": sys.version.split()[0],
        "tool": "scripts/trt_api_surface.py module"}, "module": module, "classes": classes}


_NOT_STUBBED = re.compile(r"^(_?Py|_ITM|_ZGTt|__gmon_start__|__pthread_key_create)")


def from_wheel(wheel):
    """Unpack ``wheel``, link it against stub libraries, and read its surface in a child interpreter."""
    import hashlib
    import os
    import tempfile
    import zipfile

    with open(wheel, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with tempfile.TemporaryDirectory() as work:
        zipfile.ZipFile(wheel).extractall(work)
        binding = [os.path.join(root, name) for root, _, names in os.walk(work) for name in names
                   if name.startswith("tensorrt") and name.endswith(".so")][0]
        package = os.path.join(work, "tensorrt")
        if not os.path.isdir(package):
            os.rename(os.path.dirname(binding), package)
            binding = os.path.join(package, os.path.basename(binding))
        symbols = subprocess.run(["nm", "-D", "--undefined-only", binding], capture_output=True, text=True,
                                 check=True).stdout.split()
        wanted = sorted(set(s for s in symbols if len(s) > 1 and "@" not in s and s != "U"
                            and not _NOT_STUBBED.match(s)))
        needed = re.findall(r"\[(lib(?:nv)\w*\.so\.\d+)\]", subprocess.run(
            ["readelf", "-d", binding], capture_output=True, text=True, check=True).stdout)
        stubs = os.path.join(work, "stubs")
        os.mkdir(stubs)
        source = os.path.join(stubs, "stub.c")
        with open(source, "w") as handle:
            handle.write("".join("void* {}(void) {{ return 0; }}\n".format(name) for name in wanted))
        for library in needed:
            subprocess.run(["gcc", "-shared", "-fPIC", "-o", os.path.join(stubs, library), source,
                            "-Wl,-soname," + library], check=True)
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "module"], capture_output=True, text=True,
                               check=True, cwd=work, env=dict(os.environ, LD_LIBRARY_PATH=stubs, PYTHONPATH=work))
    surface = json.loads(child.stdout)
    surface["provenance"].update(kind="wheel from PyPI", wheel=os.path.basename(wheel), wheel_sha256=digest,
                                 stubbed=wanted, tool="scripts/trt_api_surface.py wheel")
    return surface


def render(surface):
    """JSON with one line per class: small, and a diff shows which classes changed."""
    def one(value):
        return json.dumps(value, sort_keys=True)

    head = ",\n".join(' "{}": {}'.format(k, one(surface[k])) for k in sorted(surface) if k != "classes")
    classes = ",\n".join('  "{}": {}'.format(k, one(v)) for k, v in sorted(surface["classes"].items()))
    return "{\n" + head + ',\n "classes": {\n' + classes + "\n }\n}\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["source"] and len(argv) == 3:
        sys.stdout.write(render(from_source(argv[1], argv[2])))
    elif argv[:1] == ["wheel"] and len(argv) == 2:
        sys.stdout.write(render(from_wheel(argv[1])))
    elif argv[:1] == ["module"]:
        sys.stdout.write(render(from_module()))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
