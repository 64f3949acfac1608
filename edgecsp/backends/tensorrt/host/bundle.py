"""The host half of a TensorRT build: a device bundle (a folder) with everything the device needs.

``write_bundle`` fits the ONNX to the target (opset, Mish, onnxsim), lints it against the target's TensorRT
operator matrix, runs the FP16 range check and the INT8 calibration on the host when images are given, and
writes: the ONNX, ``bundle.json`` (target, precision, shapes, sha256, calibration provenance, FP32 layers),
``calib.cache`` for INT8, ``fp16_range.json``, ``build_on_device.sh`` (the `edgecsp build` device line and the
equivalent trtexec line), edgecsp's own pure-Python wheel (``host/device_install.py``) and ``README.txt`` (how to
install that wheel with JetPack's pip, build, run). The engine itself is built on the device. The folder is written
in a staging folder and renamed into place. Needs onnx (and onnxruntime for the checks); Python 3.6 syntax.
"""
import json
import os
from typing import List, Optional

from edgecsp import __version__
from edgecsp._files import atomic_folder, file_sha256, write_json
from edgecsp._lazy import require
from edgecsp.backends.tensorrt.cache_format import ALGORITHMS, parse_cache
from edgecsp.backends.tensorrt.host.calib_cache import calibration_cache
from edgecsp.backends.tensorrt.host.device_install import install_steps, write_wheel
from edgecsp.backends.tensorrt.calib_data import batch_size_of, calibration_set
from edgecsp.backends.tensorrt.host.fit import fit_graph
from edgecsp.backends.tensorrt.host.lint import errors_of, lint_model, matrix_key, raise_on_errors
from edgecsp.backends.tensorrt.manifest import BUNDLE_MANIFEST, BundleManifest, engine_name, to_json
from edgecsp.backends.tensorrt.options import make_options
from edgecsp.backends.tensorrt.policy import (OVERRIDE_FLAG, check_device_calibration, check_dla, check_input_form,
                                             check_precision_policy, sm_label)
from edgecsp.backends.tensorrt.host.trtexec import (TRTEXEC, format_command, int8_problem,
                                                    supports_layer_precisions, trtexec_args)
from edgecsp.calibration.config import SOURCE_HELP
from edgecsp.calibration.provenance import provenance_path, reusable_cache
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.onnxio import add_uint8_input, decode_tail, load_onnx, set_onnx_meta
from edgecsp.targets import get_target

BACKEND = "tensorrt"
COMMANDS_FILE = "build_on_device.sh"
README_FILE = "README.txt"
CACHE_FILE = "calib.cache"
FP16_REPORT = "fp16_range.json"


def device_build_args(manifest, bundle_path=".", output=None):
    # type: (BundleManifest, str, Optional[str]) -> List[str]
    """The `edgecsp build` line that builds ``manifest``'s engine on the device (options come from the bundle)."""
    args = ["edgecsp", "build", "--target", manifest.target, "--precision", manifest.precision, "--device-build",
            bundle_path, "-o", output or engine_name(manifest)]
    if manifest.precision == "int8" and manifest.allow_slow_int8:
        args.append(OVERRIDE_FLAG)
    return args


def trtexec_manifest_args(manifest, bundle_path="."):
    # type: (BundleManifest, str) -> List[str]
    """The `edgecsp build --from-trtexec` line that gives the engine of the bundle's trtexec line its manifest."""
    return ["edgecsp", "build", "--target", manifest.target, "--from-trtexec", engine_name(manifest), bundle_path]


def trtexec_problem(manifest):
    # type: (BundleManifest) -> str
    """Why the bundle gets no equivalent trtexec line ("" when it does): INT8 without a usable cache."""
    if manifest.precision != "int8":
        return ""
    calib = manifest.calibration or {}
    return int8_problem(calib.get("cache"), calib.get("algorithm"))


def trtexec_line(manifest):
    # type: (BundleManifest) -> Optional[str]
    """The equivalent trtexec command, or None when it would build a wrong engine (``trtexec_problem``)."""
    if trtexec_problem(manifest):
        return None
    calib = manifest.calibration or {}
    nodes = [layer["node"] for layer in manifest.fp32_layers]
    return format_command(trtexec_args(
        manifest.onnx, engine_name(manifest), manifest.trt_version[0], manifest.precision, manifest.workspace_mib,
        calib_cache=calib.get("cache"), fp32_layers=nodes, dla_core=manifest.dla_core,
        input_name=manifest.input_name, input_shape=manifest.input_shape, max_batch=manifest.max_batch,
        executable=TRTEXEC))


def _describe_target(target):
    parts = ["TensorRT " + (target.trt_version[0] if target.trt_version[0] == target.trt_version[1]
                            else "{} to {}".format(*target.trt_version))]
    if target.jetpack:
        parts.insert(0, "JetPack " + target.jetpack)
    if target.sm:
        parts.append(sm_label(target.sm))
    parts.append("Python " + target.device_python)
    return "{} ({})".format(target.name, ", ".join(parts))


def commands_text(manifest):
    # type: (BundleManifest) -> str
    """The bundle's build_on_device.sh: the edgecsp device line, then the trtexec and docker equivalents."""
    target = get_target(manifest.target)
    engine = engine_name(manifest)
    lines = ["#!/bin/sh",
             "# edgecsp device bundle for {}, precision {}.".format(_describe_target(target), manifest.precision),
             "#",
             "# THE TENSORRT ENGINE IS NOT IN THIS FOLDER: it is built on the {} itself (or in its JetPack".format(
                 target.name),
             "# container there), because an engine only runs on the GPU and TensorRT version that built it.",
             "# Copy this folder to the device and run:  sh {}".format(COMMANDS_FILE),
             "# It writes {} and its manifest {}.json here.".format(engine, engine),
             "set -e",
             'cd "$(dirname "$0")"',
             format_command(device_build_args(manifest)),
             ""]
    problem = trtexec_problem(manifest)
    if problem:
        lines += ["# No equivalent trtexec line: " + problem + "."]
    else:
        lines += ["# Equivalent trtexec line (TensorRT {}), then the edgecsp line that writes its engine's manifest "
                  "(`edgecsp infer`".format(manifest.trt_version[0]),
                  "# and `package` need it; it checks the engine's inputs and outputs against this bundle):",
                  "# " + trtexec_line(manifest),
                  "# " + format_command(trtexec_manifest_args(manifest))]
    if not problem and manifest.fp32_layers and not supports_layer_precisions(manifest.trt_version[0]):
        lines.append("# (trtexec {} cannot keep layers in FP32: the {} layer(s) in bundle.json are only honoured "
                     "by the edgecsp line)".format(manifest.trt_version[0], len(manifest.fp32_layers)))
    if target.docker:
        lines += ["#", "# In the edgecsp JetPack container (docker/Dockerfile.{}, see docker/README.md):".format(
            target.docker),
            "# docker run --rm --runtime nvidia -v \"$PWD\":/bundle -w /bundle edgecsp:{} {}".format(
                target.docker, format_command(device_build_args(manifest)[1:]))]
    return "\n".join(lines) + "\n"


def _next_command(manifest, engine):
    """What to run with the engine: edgecsp infer, or DeepStream for a model whose decode is in the graph."""
    from edgecsp.runtime.meta import ModelMeta

    meta = ModelMeta.from_dict(manifest.meta)
    if not meta.spec.deepstream_problem(meta):
        return ("edgecsp infer --engine {} video.mp4   (or for DeepStream: edgecsp package --deepstream ds/ "
                "{})".format(engine, engine))
    return "edgecsp infer --engine {} video.mp4".format(engine)


def readme_text(manifest):
    # type: (BundleManifest) -> str
    target = get_target(manifest.target)
    engine = engine_name(manifest)
    calib = manifest.calibration
    lines = ["edgecsp device bundle: {} for {}, {}".format(manifest.onnx, _describe_target(target),
                                                          manifest.precision),
             "",
             "The TensorRT engine is built on the {} itself, not here: copy this folder to the device.".format(
                 target.name),
             "",
             "1. " + "\n".join(install_steps(target)),
             "",
             "2. Build the engine, in this folder:",
             "",
             "    sh {}".format(COMMANDS_FILE),
             "",
             "which runs  {}".format(format_command(device_build_args(manifest))),
             "and writes {} (a plain TensorRT engine) and {}.json (its manifest).".format(engine, engine),
             "",
             "3. Run it:",
             "",
             "    " + _next_command(manifest, engine),
             ""]
    overflowing = [layer for layer in manifest.fp32_layers if str(layer.get("why", "")).startswith("FP16 overflow")]
    kept = len(manifest.fp32_layers) - len(overflowing)
    if kept:
        lines.append("{} layer(s) kept in FP32: the decode tail and the tensors asked for (bundle.json, "
                     "fp32_layers).".format(kept))
    if overflowing:
        lines.append("FP16 range check: {} layer(s) overflow FP16 and are kept in FP32 (see {}).".format(
            len(overflowing), FP16_REPORT))
    elif manifest.fp16_check.get("ran"):
        lines.append("FP16 range check: no tensor left the FP16 range on {} calibration image(s).".format(
            manifest.fp16_check.get("images")))
    else:
        lines.append("FP16 range check: not run ({}).".format(manifest.fp16_check.get("why_not", "")))
    if calib and calib.get("cache"):
        lines.append("INT8 calibration: {} ({}), {}, from {}: cache {}{}.".format(
            calib.get("method"), calib.get("algorithm"), calib.get("computed_on"), calib.get("source"),
            calib.get("cache"), ", provenance " + calib["record"] if calib.get("record") else ""))
    elif calib:
        lines.append("INT8 calibration: done by TensorRT on the device from {}.".format(calib["config"]["source"]))
    problem = trtexec_problem(manifest)
    if problem:
        lines.append("{} has no trtexec line: {}; build with the edgecsp line above.".format(COMMANDS_FILE, problem))
    else:
        lines.append("Built the engine with the trtexec line in {} instead? Give it the manifest edgecsp needs "
                     "with  {}".format(COMMANDS_FILE, format_command(trtexec_manifest_args(manifest))))
    for warning in manifest.lint.get("warnings", []):
        lines.append("Lint warning: " + warning)
    return "\n".join(lines) + "\n"


def _check_out_dir(out_dir):
    if os.path.isfile(out_dir):
        raise InputError("bundle output {} is a file: a device bundle is a folder; choose another --output".format(
            out_dir))
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, BUNDLE_MANIFEST)):
        raise InputError("{} exists and is not an edgecsp device bundle: choose another --output (edgecsp only "
                         "replaces its own bundles)".format(out_dir))


def _input_signature(model):
    graph = model.graph
    initializers = set(i.name for i in graph.initializer)
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedError("the model has {} inputs; edgecsp builds single-input models".format(len(inputs)))
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims, [o.name for o in graph.output]


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _fp32_layers(model, findings, extra_tensors, precision):
    """The layers the device keeps in FP32: FP16 overflows, ``--fp32-tensor``s, and the decode a family put in
    its graph after the head convolutions (with INT8, those convolutions too: what every INT8 build keeps float)."""
    producers = dict((out, node.name) for node in model.graph.node for out in node.output)
    layers = [{"tensor": f.tensor, "node": f.node, "why": "FP16 overflow: |x| up to {:.4g}".format(f.absmax)}
              for f in findings]
    if precision != "fp32":
        nodes = dict((node.name, node) for node in model.graph.node)
        layers.extend({"tensor": nodes[name].output[0], "node": name, "why": "decode tail, kept in float"}
                      for name in decode_tail(model, convolutions=precision == "int8")
                      if nodes[name].output and nodes[name].output[0] not in set(l["tensor"] for l in layers))
    listed = set(layer["tensor"] for layer in layers)
    for tensor in extra_tensors:
        if tensor not in producers:
            raise InputError("--fp32-tensor {} is not a tensor written by a node of the model".format(tensor))
        if tensor not in listed:
            layers.append({"tensor": tensor, "node": producers[tensor], "why": "requested"})
    return layers


def write_bundle(onnx_path, out_dir, precision=None, target="tx2", **options):
    """Write the device bundle for ``target`` at ``out_dir`` (a folder) from the ONNX at ``onnx_path``.

    ``options`` are TensorRTOptions fields (calib=..., workspace_mib=...). Returns ``out_dir``. Raises
    UnsupportedError (refused precision, opset, lint errors with every offending node and its fix), InputError
    (bad options or calibration source) before anything is written.
    """
    onnx = require("onnx", "writing a TensorRT device bundle")
    target = get_target(target)
    if target.backend != BACKEND:
        raise UnsupportedError("target {} uses the {} backend, not {}".format(target.name, target.backend, BACKEND))
    opts = make_options(**options)
    precision = check_precision_policy(target, precision, opts.allow_slow_int8)
    dla_core = check_dla(target, opts.dla_core, precision)
    input_form = check_input_form(target, opts.input_form, precision)
    if precision == "int8" and not (opts.calib or opts.calib_cache):
        raise InputError("INT8 needs calibration data: pass --calib with " + SOURCE_HELP + " (or --calib-cache with a "
                         "TensorRT cache or the .calibration.json of an earlier bundle)")
    out_dir = str(out_dir)
    _check_out_dir(out_dir)
    source_path = str(onnx_path)
    where = os.path.basename(source_path)
    model, meta = load_onnx(source_path)
    model, notes = fit_graph(model, meta, target, simplify=opts.simplify, where=where)
    findings = lint_model(model, target)
    raise_on_errors(findings, where, target)
    source_sha = file_sha256(source_path)
    meta = meta.with_extra(target=target.name, precision=precision, backend=BACKEND, source_onnx_sha256=source_sha)
    set_onnx_meta(model, meta)
    # the FP16 check and INT8 calibration run on the float network (``model``); what the device builds, with
    # --input uint8, is that network behind a uint8 prefix
    given = _given_cache(opts, source_sha, meta) if precision == "int8" and opts.calib_cache else None
    calib_set = calibration_set(opts, meta, batch_size_of(_input_signature(model)[1])) if opts.calib else None
    bundled = model
    if input_form != meta.input_form:
        bundled = onnx.ModelProto()
        bundled.CopyFrom(model)
        meta = meta._replace(input_form=input_form)
        set_onnx_meta(add_uint8_input(bundled, meta), meta)
    input_name, input_shape, outputs = _input_signature(bundled)

    with atomic_folder(out_dir) as folder:  # an older bundle there is replaced whole, once this one is complete
        onnx_name = os.path.splitext(where)[0] + ".onnx"
        onnx.save(bundled, os.path.join(folder, onnx_name))
        fp16_record = {"ran": False, "why_not": "no calibration images (--calib)"}
        overflowing = []
        if not opts.fp16_check:
            fp16_record["why_not"] = "disabled (--no-fp16-check)"
        elif precision == "fp32":
            fp16_record["why_not"] = "FP32 build"
        elif calib_set is not None:
            from edgecsp.backends.tensorrt.host.fp16_check import fp16_range_report, report_dict

            overflowing = fp16_range_report(model, calib_set)
            _write(os.path.join(folder, FP16_REPORT),
                   json.dumps(report_dict(overflowing, calib_set.num_samples, opts.calib), indent=2) + "\n")
            fp16_record = {"ran": True, "images": calib_set.num_samples, "report": FP16_REPORT}
        calibration = None
        if precision == "int8":
            engine = "{}-{}-int8{}".format(os.path.splitext(onnx_name)[0], target.name, target.suffix)
            calibration = _calibrate(model, folder, target, opts, given, calib_set, source_sha, engine)
        manifest = BundleManifest(
            target=target.name, precision=precision, onnx=onnx_name,
            onnx_sha256=file_sha256(os.path.join(folder, onnx_name)), input_name=input_name,
            input_shape=input_shape, outputs=outputs, meta=meta.to_dict(), trt_version=list(target.trt_version),
            sm=target.sm, workspace_mib=opts.workspace_mib, max_batch=opts.max_batch, dla_core=dla_core,
            allow_slow_int8=bool(opts.allow_slow_int8),
            fp32_layers=_fp32_layers(model, overflowing, opts.fp32_tensors, precision), calibration=calibration,
            fp16_check=fp16_record,
            lint={"matrix": matrix_key(target), "warnings": [str(f) for f in findings if f not in errors_of(findings)]},
            notes=notes, source_onnx=where, source_onnx_sha256=source_sha, edgecsp=__version__)
        _write(os.path.join(folder, BUNDLE_MANIFEST), to_json(manifest))
        _write(os.path.join(folder, COMMANDS_FILE), commands_text(manifest))
        os.chmod(os.path.join(folder, COMMANDS_FILE), 0o755)
        write_wheel(folder)  # what the device's own pip installs (README.txt, step 1)
        _write(os.path.join(folder, README_FILE), readme_text(manifest))
    return out_dir


def _given_cache(opts, source_sha, meta):
    """``(cache text, record or None)`` for --calib-cache: a TensorRT cache file, or the .calibration.json of an
    earlier bundle (reused only for the same source model, preprocessing and method)."""
    path = opts.calib_cache
    record = None
    if path.lower().endswith(".json"):
        record, path = reusable_cache(path, source_sha, meta, opts.calib_method)
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        raise InputError("cannot read calibration cache {}: {}".format(path, exc))
    parse_cache(text)
    return text, record


def _calibrate(model, folder, target, opts, given, calib_set, source_sha, engine):
    """The calibration provenance for bundle.json; writes calib.cache (and its .calibration.json record)."""
    algorithm = ALGORITHMS[opts.calib_method]
    if given is None and opts.calibrate_on == "device":
        check_device_calibration(opts.calib_method)
        return {"method": opts.calib_method, "algorithm": algorithm, "cache": None, "computed_on": "device (TensorRT)",
                "config": {"source": os.path.abspath(opts.calib), "count": opts.calib_count,
                           "seed": opts.calib_seed, "every": opts.calib_every}}
    if given is not None:
        text, record = given
        summary = {"method": (record or {}).get("algorithm", {}).get("method", "given"),
                   "source": os.path.basename(opts.calib_cache), "computed_on": "earlier calibration (given)"}
    else:
        text, _ = calibration_cache(model, lambda: iter(calib_set), target.trt_version[0], opts.calib_method,
                                    opts.calib_percentile)
        method = {"tool": "edgecsp histograms over ONNX Runtime (FP32 model)", "method": opts.calib_method,
                  "cache_algorithm": algorithm}
        if opts.calib_method == "percentile":
            method["percentile"] = opts.calib_percentile
        record = calib_set.provenance(source_sha, method, tools=_host_tools())
        summary = {"method": opts.calib_method, "source": opts.calib, "samples": calib_set.num_samples,
                   "fingerprint": calib_set.fingerprint(), "computed_on": "host (ONNX Runtime, FP32 model)"}
    _write(os.path.join(folder, CACHE_FILE), text)
    summary.update(cache=CACHE_FILE, algorithm=parse_cache(text)[1])
    if record is not None:
        record = dict(record, cache={"file": CACHE_FILE, "sha256": file_sha256(os.path.join(folder, CACHE_FILE))})
        summary["record"] = os.path.basename(provenance_path(engine))
        write_json(os.path.join(folder, summary["record"]), record)
    return summary


def _host_tools():
    from edgecsp._lazy import available

    tools = {}
    for name in ("onnx", "onnxruntime"):
        if available(name):
            tools[name] = __import__(name).__version__
    return tools
