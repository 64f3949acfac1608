#!/usr/bin/env python3
"""Encode the onnx-tensorrt operator matrices (markdown) as the package data module ``opsets.py``.

Run once per new TensorRT release and commit both this script's output and the script:

    python scripts/encode_trt_operators.py ../shared/fixtures/tensorrt edgecsp/backends/tensorrt/host/opsets.py

The lint reads the generated module, never the markdown. Facts that the matrices do not state but that are known
to break builds (``CURATED``) are added here with their source, so every rule the lint applies is in one place.
"""
import argparse
import os
import re
import sys
import textwrap

from edgecsp._files import write_text_atomic

FILE_RE = re.compile(r"^onnx-tensorrt-operators-(\d+)\.(\d+)-GA\.md$")
HEADER_MAX_RE = re.compile(r"TensorRT (\d+\.\d+) supports operators up to Opset (\d+)", re.I)
HEADER_RANGE_RE = re.compile(r"TensorRT (\d+\.\d+) supports operators in the inclusive range of opset (\d+) to "
                             r"opset (\d+)", re.I)
# a restriction sentence that pins inputs to build-time constants (the typo "initailizer" is in the 8.2 matrix)
CONST_RE = re.compile(r"must be (?:an? )?(?:initiali[sz]ers?|initailizers?|constant tensors?|build-time constants?)",
                      re.I)
NAME_RE = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")

# Known parser limits missing from the markdown: {matrix version: {"constant_inputs": {op: [inputs]},
# "warnings": {op: text}}}.
CURATED = {
    "8.2": {
        # onnx-tensorrt release/8.2 importResize: "Resize scales must be an initializer!" (the issue tracker and
        # the TX2 fact sheet of this project); 8.4+ import computed scales as a shape tensor.
        "constant_inputs": {"Resize": ["scales"]},
        "warnings": {"EfficientNMS_TRT": "the EfficientNMS_TRT plugin of TensorRT 8.2 returns negative scores; "
                                         "export without NMS (edgecsp runs NMS in numpy)"},
    },
}


def parse_matrix(text):
    """``{"trt", "min_opset", "max_opset", "supported", "unsupported", "experimental", "constant_inputs"}``."""
    match = HEADER_RANGE_RE.search(text)
    if match:
        trt, min_opset, max_opset = match.group(1), int(match.group(2)), int(match.group(3))
    else:
        match = HEADER_MAX_RE.search(text)
        if not match:
            raise ValueError("no 'TensorRT X supports operators ... opset N' header")
        trt, min_opset, max_opset = match.group(1), 1, int(match.group(2))
    supported, unsupported, experimental, constant_inputs = [], [], [], {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("| Operator"):
            in_table = True
            continue
        if not in_table or not line.startswith("|") or set(line.strip()) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        op, flag = cells[0], cells[1] if len(cells) > 1 else ""
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", op):
            continue
        if flag.upper().startswith("Y"):
            supported.append(op)
            if "EXPERIMENTAL" in flag.upper():
                experimental.append(op)
        elif flag.upper().startswith("N"):
            unsupported.append(op)
        else:
            raise ValueError("operator {}: unreadable 'Supported' cell {!r}".format(op, flag))
        restriction = cells[3] if len(cells) > 3 else ""
        for sentence in re.split(r"\.\s|<br\s*/?>|\\\.", restriction):
            if CONST_RE.search(sentence) and "only supported if" not in sentence:
                names = NAME_RE.findall(sentence)
                if names:
                    constant_inputs.setdefault(op, [])
                    constant_inputs[op].extend(n for n in names if n not in constant_inputs[op])
    return {"trt": trt, "min_opset": min_opset, "max_opset": max_opset, "supported": sorted(supported),
            "unsupported": sorted(unsupported), "experimental": sorted(experimental),
            "constant_inputs": dict(sorted(constant_inputs.items()))}


def encode(folder):
    """``{matrix key: parsed matrix}`` for every fixture file in ``folder``, with CURATED merged in."""
    matrices = {}
    for name in sorted(os.listdir(folder)):
        match = FILE_RE.match(name)
        if not match:
            continue
        with open(os.path.join(folder, name)) as handle:
            matrix = parse_matrix(handle.read())
        matrix["source"] = name
        extra = CURATED.get(matrix["trt"], {})
        for op, inputs in extra.get("constant_inputs", {}).items():
            merged = matrix["constant_inputs"].setdefault(op, [])
            merged.extend(i for i in inputs if i not in merged)
        matrix["constant_inputs"] = dict(sorted(matrix["constant_inputs"].items()))
        matrix["warnings"] = dict(sorted(extra.get("warnings", {}).items()))
        matrices[matrix["trt"]] = matrix
    if not matrices:
        raise ValueError("no onnx-tensorrt-operators-X.Y-GA.md files in {}".format(folder))
    return matrices


def _tuple(items, indent):
    pad = " " * indent
    lines, line = [], pad
    for item in items:
        piece = repr(item) + ", "
        if len(line) + len(piece) > 118:
            lines.append(line.rstrip())
            line = pad
        line += piece
    lines.append(line.rstrip())
    return "(\n" + "\n".join(lines) + "\n" + " " * (indent - 4) + ")"


def render(matrices):
    out = ['"""TensorRT ONNX-parser operator matrices, one per TensorRT release (package data, Python 3.6).',
           "",
           "GENERATED by scripts/encode_trt_operators.py from onnx-tensorrt's operators.md files; do not edit by",
           "hand. Keys are the TensorRT version each matrix describes. ``constant_inputs`` lists the inputs that must",
           "be initializers/Constant outputs; ``warnings`` are known-bad plugins. See the script for curated facts.",
           '"""', "", "MATRICES = {"]
    for key in sorted(matrices, key=lambda k: tuple(int(p) for p in k.split("."))):
        m = matrices[key]
        out.append("    {!r}: {{".format(key))
        out.append("        'source': {!r},".format(m["source"]))
        out.append("        'min_opset': {},".format(m["min_opset"]))
        out.append("        'max_opset': {},".format(m["max_opset"]))
        for field in ("supported", "unsupported", "experimental"):
            out.append("        {!r}: frozenset({}),".format(field, _tuple(m[field], 12)))
        out.append("        'constant_inputs': {")
        for op, names in m["constant_inputs"].items():
            out.append("            {!r}: {!r},".format(op, tuple(names)))
        out.append("        },")
        out.append("        'warnings': {")
        for op, text in m["warnings"].items():
            out.append("            {!r}: (".format(op))
            out.extend("                {!r}".format(part) for part in textwrap.wrap(text, 90, drop_whitespace=False))
            out.append("            ),")
        out.append("        },")
        out.append("    },")
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", help="folder with onnx-tensorrt-operators-X.Y-GA.md files")
    parser.add_argument("output", help="the Python module to write (edgecsp/backends/tensorrt/host/opsets.py)")
    args = parser.parse_args(argv)
    text = render(encode(args.fixtures))
    write_text_atomic(args.output, text)
    print("wrote {} ({} matrices)".format(args.output, text.count("'source'")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
