"""PyTorch -> ONNX, in small stages: load the model, trace it, attach metadata, simplify, check, verify.

Decisions (documented in README "Export"):
* TorchScript exporter (``dynamo=False``) at opset 13 by default: TensorRT 8.2 (JetPack 4.6.1+, TX2/Nano) parses
  opset <= 13; the dynamo exporter writes opset 18+ and cannot convert down. Mish is written as
  Softplus -> Tanh -> Mul by the model itself (``edgecsp.models.layers.Mish``), so no Mish op at any opset.
* Box decoding stays in the runtime: the graph ends at the heads' 1x1 convolutions (layout ``yolo_raw``).
  TensorRT 8.2 handles the decode's Reshape/Slice/Exp chains poorly in FP16, NMS plugins differ per version
  (EfficientNMS_TRT returns negative scores on 8.2), and darknet models with both decode forms share one numpy
  implementation that is tested here. The runtime's decode costs well under a millisecond per frame.
* Every file is written atomically, and the final ONNX carries the metadata in ``metadata_props``.
"""
import os
import uuid
from typing import NamedTuple, Optional, Tuple

import numpy as np

from edgecsp._files import READS, WRITES, Staged, check_paths, file_sha256
from edgecsp._lazy import require
from edgecsp.errors import InputError, UnsupportedError, VerificationError
from edgecsp.export.metadata import meta_from_model
from edgecsp.onnxio import set_onnx_meta, simplify
from edgecsp.runtime.meta import ModelMeta
from edgecsp.validate import positive_int

DEFAULT_OPSET = 13
MIN_OPSET, MAX_OPSET = 11, 20
INPUT_NAME = "images"


class ExportConfig(NamedTuple):
    """What ``edgecsp export`` does; exactly one of ``model`` (registry name), ``card`` or ``darknet_cfg`` is set."""

    model: Optional[str] = None
    checkpoint: Optional[str] = None
    card: Optional[str] = None
    output: Optional[str] = None  # default: engines/<name>.onnx
    opset: int = DEFAULT_OPSET
    input_size: Optional[Tuple[int, int]] = None  # (h, w); default: the model's
    batch: int = 1
    dynamic_batch: bool = False
    simplify: bool = True
    verify: bool = True
    atol: float = 1e-4
    rtol: float = 1e-3
    darknet_cfg: Optional[str] = None  # with darknet_weights: import a darknet model (edgecsp.darknet)
    darknet_weights: Optional[str] = None
    names_file: Optional[str] = None  # darknet .names (one class per line); default class0..classN-1
    decode_in_graph: bool = False  # append the YOLO decode: one (N, M, 6) output for DeepStream (decode_graph.py)


# what export reads and writes: the output may not replace or sit inside an input (edgecsp._files.check_paths)
PATHS = (("checkpoint", "--checkpoint", READS), ("card", "--card", READS), ("darknet_cfg", "--darknet", READS),
         ("darknet_weights", "--darknet", READS), ("names_file", "--names", READS), ("output", "-o", WRITES))


class ExportReport(NamedTuple):
    path: str
    meta: ModelMeta
    opset: int
    nodes_raw: int
    nodes_simplified: int
    torch_vs_ort_max_abs: float  # on the final (simplified) model
    simplified_vs_raw_max_abs: float
    seconds: float
    reference_max_abs: float = float("nan")  # largest |PyTorch output|: the scale the diffs are relative to
    decode_max_abs: float = float("nan")  # --decode-in-graph: graph decode vs edgecsp's numpy decode


def load_torch_model(config):
    """(model in eval mode, registry name, source description, source sha256) from a registry name or a card."""
    from edgecsp.models import create_model, get_entry
    from edgecsp.models.card import load_card

    if config.darknet_cfg or config.darknet_weights:
        if config.model or config.card or config.checkpoint:
            raise InputError("--darknet CFG WEIGHTS replaces the model name, --card and --checkpoint: give only one")
        from edgecsp.darknet import load_for_export

        return load_for_export(config.darknet_cfg, config.darknet_weights, config.names_file, config.input_size)
    if bool(config.model) == bool(config.card):
        raise InputError("give either a registry model name or --card CARD.json (see `edgecsp models`)")
    torch = require("torch", "exporting PyTorch models")
    checkpoint, kwargs = config.checkpoint, {}
    if config.card:
        card = load_card(config.card)
        name, kwargs = card.model, card.kwargs
        checkpoint = checkpoint or card.weights
    else:
        name = config.model
    entry = get_entry(name)  # unknown name -> InputError listing the registry
    model = create_model(name, **kwargs)
    if getattr(model, "input_size", None) is None:
        model.input_size = tuple(entry.input_size)  # classifiers: the registry's default input size
    digest = "random-init"
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise InputError("checkpoint {} not found: pass the .pt file saved from the model's state_dict".format(
                checkpoint))
        digest = file_sha256(checkpoint)
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file; all mean "not a loadable checkpoint"
            raise InputError("cannot load checkpoint {} ({}: {}): save it with torch.save(model.state_dict())".format(
                checkpoint, exc.__class__.__name__, str(exc).splitlines()[0] if str(exc) else ""))
        if isinstance(state, dict):
            for key in ("model", "state_dict", "ema"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if not isinstance(state, dict):
            raise InputError("checkpoint {} holds a {}, not a state_dict: save it with "
                             "torch.save(model.state_dict())".format(checkpoint, type(state).__name__))
        missing, unexpected = _compare_keys(model.state_dict(), state)
        if missing or unexpected:
            raise InputError("checkpoint {} does not fit model {}: {} missing keys (e.g. {}), {} unexpected (e.g. {}); "
                             "check the model name or --card".format(checkpoint, name, len(missing),
                                                                     missing[:2], len(unexpected), unexpected[:2]))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError("checkpoint {} does not fit model {} (shapes differ: {}): check the model name".format(
                checkpoint, name, str(exc).splitlines()[1:2]))
    return model.eval(), name, checkpoint or "random weights", digest


def _compare_keys(expected, given):
    missing = sorted(k for k in expected if k not in given)
    unexpected = sorted(k for k in given if k not in expected)
    return missing, unexpected


def trace_to_onnx(model, path, input_size, opset, batch=1, dynamic_batch=False, output_names=None):
    """torch.onnx.export with the TorchScript exporter; returns the output names."""
    torch = require("torch", "exporting to ONNX")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError("opset {} is outside {}..{}: use 13 for TensorRT 8.2 (TX2/Nano), 17 for TensorRT "
                               "8.5/8.6".format(opset, MIN_OPSET, MAX_OPSET))
    sample = torch.zeros(batch, 3, int(input_size[0]), int(input_size[1]))
    with torch.no_grad():
        outs = model(sample)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    names = list(output_names or ["output{}".format(i) for i in range(len(outs))])
    axes = None
    if dynamic_batch:
        axes = {INPUT_NAME: {0: "batch"}}
        axes.update({n: {0: "batch"} for n in names})
    import warnings

    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated upstream but is the one that writes opset 13 (see module doc)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (sample,), path, input_names=[INPUT_NAME], output_names=names,
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False,
                          external_data=False)
    return names


def check_model(path, opset):
    """onnx.checker (full) plus the opset and the op types the target families cannot parse."""
    onnx = require("onnx", "checking ONNX models")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    found = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if found != [opset]:
        raise VerificationError("{} declares opset {} instead of {}: the exporter did not honour --opset".format(
            path, found, opset))
    ops = {n.op_type for n in model.graph.node}
    if opset < 18 and "Mish" in ops:
        raise VerificationError("{} contains a Mish node at opset {}: TensorRT 8.x cannot parse it".format(path, opset))
    return model


def run_onnx(path, x):
    """Outputs of the ONNX model at ``path`` on ``x`` with ONNX Runtime (CPU)."""
    ort = require("onnxruntime", "verifying the export")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def max_abs_diff(a_list, b_list):
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0
               for a, b in zip(a_list, b_list))


def _check_close(name, ref, got, atol, rtol):
    for i, (r, g) in enumerate(zip(ref, got)):
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            raise VerificationError("{}: output {} shape {} != {}".format(name, i, g.shape, r.shape))
        if not np.all(np.isfinite(g)):
            raise VerificationError("{}: output {} has NaN/Inf".format(name, i))
        excess = np.abs(g - r) - (atol + rtol * np.abs(r))
        if np.any(excess > 0):
            raise VerificationError("{}: output {} differs by up to {:.3g} (atol {}, rtol {}): the export is not "
                                    "faithful; report it with the model name".format(
                                        name, i, float(np.max(np.abs(g - r))), atol, rtol))


def sample_input(shape, seed=0):
    """A deterministic, image-like verification input (smooth gradients plus noise in 0..1)."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = np.stack([xx, yy, 1 - xx][:c])[None]
    return np.clip(0.6 * base + 0.4 * rng.random(shape), 0, 1).astype(np.float32)


def default_output(name, input_size, opset):
    return os.path.join("engines", "{}-{}x{}-op{}.onnx".format(name.replace(":", "-"), input_size[0], input_size[1],
                                                               opset))


def export(config, log=None):
    """Run every export stage; returns an ExportReport. Nothing is left at ``output`` unless all checks passed."""
    import time

    check_paths(config, PATHS)  # before anything is loaded; again below with the card's weights, the default name
    onnx = require("onnx", "exporting to ONNX")
    torch = require("torch", "exporting PyTorch models")
    started = time.time()
    log = log or (lambda msg: None)
    model, name, source, digest = load_torch_model(config)
    input_size = tuple(config.input_size or getattr(model, "input_size", None) or (224, 224))
    stride = int(max(getattr(model, "strides", None) or [32]))  # classifiers: their backbone's 32
    if any(v % stride for v in input_size):
        fit = [max(stride, int(round(float(v) / stride)) * stride) for v in input_size]
        raise InputError("input size {}x{} is not a multiple of {}, the largest stride of {}: use a multiple of {} "
                         "(e.g. --input-size {}x{})".format(input_size[0], input_size[1], stride, name, stride,
                                                            fit[0], fit[1]))
    positive_int(config.batch, "--batch")
    output = config.output or default_output(name, input_size, config.opset)
    weights = [p for p in (config.checkpoint, source) if p and os.path.isfile(str(p))]  # a card's weights too
    check_paths(config, PATHS, output=output, checkpoint=weights)
    # every intermediate file lives in the output's staging folder; only the verified model is moved into place
    with Staged([output]) as staged:
        raw_path = os.path.join(staged.staging, ".raw-{}.onnx".format(uuid.uuid4().hex))  # never the output
        names = ["head{}".format(s) for s in model.strides] if hasattr(model, "strides") else ["logits"]
        log("exporting {} ({}) at {}x{}, opset {}".format(name, source, input_size[0], input_size[1], config.opset))
        trace_to_onnx(model, raw_path, input_size, config.opset, config.batch, config.dynamic_batch, names)
        meta = meta_from_model(model, name, input_size=input_size, outputs=names, opset=config.opset,
                               source=os.path.basename(source), source_sha256=digest,
                               dynamic_batch=bool(config.dynamic_batch), torch=torch.__version__,
                               onnx=onnx.__version__)
        raw = set_onnx_meta(onnx.load(raw_path), meta)
        onnx.save(raw, raw_path)
        check_model(raw_path, config.opset)
        final_path = staged.staged[0]
        final = raw
        if config.simplify:
            log("simplifying with onnxsim")
            final = set_onnx_meta(simplify(raw), meta)
        onnx.save(final, final_path)
        check_model(final_path, config.opset)
        nodes_raw, nodes_simplified = len(raw.graph.node), len(final.graph.node)
        diff_torch = diff_simplified = ref_scale = float("nan")
        if config.verify:
            x = sample_input((config.batch, 3) + tuple(input_size))
            with torch.no_grad():
                ref = model(torch.from_numpy(x))
            ref = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]
            got = run_onnx(final_path, x)
            diff_torch = max_abs_diff(ref, got)
            ref_scale = max(float(np.max(np.abs(r))) for r in ref)
            _check_close("PyTorch vs ONNX Runtime", ref, got, config.atol, config.rtol)
            if config.simplify:
                got_raw = run_onnx(raw_path, x)
                diff_simplified = max_abs_diff(got_raw, got)
                _check_close("simplified vs raw ONNX", got_raw, got, 1e-5, 1e-5)
            log("verified: PyTorch vs ONNX Runtime max |diff| {:.3g}{}".format(
                diff_torch, ", simplified vs raw {:.3g}".format(diff_simplified) if config.simplify else ""))
        diff_decode = float("nan")
        if config.decode_in_graph:
            meta, diff_decode = _decode_in_graph(onnx, final, meta, final_path, config)
            log("decode in the graph: vs edgecsp's numpy decode max |diff| {:.3g} px".format(diff_decode))
    return ExportReport(output, meta, config.opset, nodes_raw, nodes_simplified, diff_torch, diff_simplified,
                        time.time() - started, ref_scale, diff_decode)


DECODE_ATOL = 1e-4  # pixels; plus DECODE_RTOL of the coordinate (float32 rounding of up to 640 px coordinates)
DECODE_RTOL = 1e-6


def _decode_in_graph(onnx, final, meta, final_path, config):
    """Append the decode (``decode_graph.append_decode``) to the verified model at ``final_path`` and check the
    new output against the numpy decode of the raw outputs on the same input; ``(new meta, max |diff|)``."""
    from edgecsp.errors import VerificationError
    from edgecsp.export.decode_graph import append_decode, decode_reference

    decoded, decoded_meta = append_decode(final, meta)
    decoded = set_onnx_meta(decoded, decoded_meta)
    x = sample_input((config.batch, 3) + tuple(meta.input_size), seed=1)
    raw_names = [o.name for o in final.graph.output]
    want = decode_reference(dict(zip(raw_names, run_onnx(final_path, x))), meta)
    onnx.save(decoded, final_path)
    check_model(final_path, config.opset)
    got = run_onnx(final_path, x)[0]
    if got.shape != want.shape:
        raise VerificationError("the decoded output is shaped {} but the numpy decode gives {}: report this".format(
            got.shape, want.shape))
    box_diff = np.abs(got[..., :5] - want[..., :5])
    worst = float(box_diff.max())
    bound = DECODE_ATOL + DECODE_RTOL * np.abs(want[..., :5])
    # the class index may differ only where two classes score the same to float rounding
    scores_tied = np.isclose(got[..., 4], want[..., 4], atol=1e-6)
    if (box_diff > bound).any() or not (scores_tied | (got[..., 5] == want[..., 5])).all():
        raise VerificationError("the decode appended to the graph differs from edgecsp's numpy decode by {:.3g} "
                                "(bound {:g}): report this with the model".format(worst, DECODE_ATOL))
    return decoded_meta, worst
