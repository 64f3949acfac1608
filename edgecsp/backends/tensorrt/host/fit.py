"""Make an exported ONNX fit a TensorRT target before the lint: opset check, Mish decomposition, simplification.

Host side (needs onnx; onnxsim for simplification). An ONNX file cannot be converted to a lower opset
reliably, so a too-new opset is refused with the `edgecsp export --opset N` that fixes it. Python 3.6 syntax.
"""
from typing import List, Tuple

from edgecsp._lazy import available, require
from edgecsp.backends.tensorrt.host.lint import DEFAULT_DOMAINS, matrix_for
from edgecsp.onnxio import check_opset, onnx_opset, set_onnx_meta
from edgecsp.targets import get_target


def mish_nodes(model):
    """The Mish nodes of ``model``'s main graph, in any domain (darknet converters use custom ones)."""
    return [n for n in model.graph.node if n.op_type == "Mish"]


def decompose_mish(model, keep_standard=False):
    # type: (...) -> Tuple[object, int]
    """Replace every Mish(x) by Mul(x, Tanh(Softplus(x))) in place; returns ``(model, replaced)``.

    With ``keep_standard`` the opset-18 ONNX Mish (default domain) stays, for a TensorRT that parses it.
    Output tensor names are kept, so calibration caches and FP32 layer lists still match. A custom domain that
    no node uses any more is dropped from ``opset_import``.
    """
    helper = require("onnx", "rewriting ONNX graphs").helper
    graph = model.graph
    nodes, replaced = [], 0
    for index, node in enumerate(graph.node):
        if node.op_type != "Mish" or (keep_standard and node.domain in DEFAULT_DOMAINS):
            nodes.append(node)
            continue
        replaced += 1
        x, y = node.input[0], node.output[0]
        stem = node.name or "mish_{}".format(index)
        softplus, tanh = stem + "/softplus", stem + "/tanh"
        nodes.append(helper.make_node("Softplus", [x], [softplus], name=softplus))
        nodes.append(helper.make_node("Tanh", [softplus], [tanh], name=tanh))
        nodes.append(helper.make_node("Mul", [x, tanh], [y], name=stem))
    if replaced:
        del graph.node[:]
        graph.node.extend(nodes)
        used = set(n.domain for n in graph.node)
        for entry in list(model.opset_import):
            if entry.domain not in DEFAULT_DOMAINS and entry.domain not in used:
                model.opset_import.remove(entry)
    return model, replaced


def name_nodes(model):
    """Give every unnamed node of the main graph a name (``<op>_<index>``); returns how many it named.

    TensorRT names layers after ONNX nodes, and trtexec's --layerPrecisions needs those names.
    """
    taken = set(n.name for n in model.graph.node if n.name)
    named = 0
    for index, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = "{}_{}".format(node.op_type, index)  # no ':' (trtexec's --layerPrecisions separator)
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        named += 1
    return named


def fit_graph(model, meta, target, simplify=True, where="model"):
    # type: (...) -> Tuple[object, List[str]]
    """``(fitted model, notes)``: ``model`` checked against ``target``'s opset, Mish decomposed where the target's
    TensorRT lacks it, simplified with onnxsim when ``simplify`` (and installed), nodes named, ``meta`` stamped.

    UnsupportedError (naming `edgecsp export --opset N`) when the opset is above what the target parses.
    """
    target = get_target(target)
    check_opset(onnx_opset(model), target, where)
    notes = []
    if mish_nodes(model):
        model, count = decompose_mish(model, keep_standard="Mish" in matrix_for(target)["supported"])
        if count:
            notes.append("decomposed {} Mish node(s) into Softplus/Tanh/Mul".format(count))
    if simplify and available("onnxsim"):
        from edgecsp.onnxio import simplify as onnxsim_simplify

        before = len(model.graph.node)
        model = onnxsim_simplify(model)
        notes.append("simplified with onnxsim ({} -> {} nodes)".format(before, len(model.graph.node)))
    elif simplify:
        notes.append("not simplified: onnxsim is not installed (pip install 'edgecsp[export]')")
    if name_nodes(model):
        notes.append("named the unnamed nodes (TensorRT layer names)")
    return set_onnx_meta(model, meta), notes
