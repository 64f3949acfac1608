"""Every command the README shows runs here: docs that rot are bugs.

The ``sh``/``bash``/``console``/``python`` blocks of README.md run in document order in one temporary folder (the
walkthroughs build on each other: `make demo`'s IR and the INT8 block's images feed the Python block): ``edgecsp ...`` lines through
``edgecsp.cli.main`` in-process, ``make demo`` as the Makefile's own recipe lines, Python blocks with ``exec``.
The example files the README names (``m.xml``, ``video.mp4``, ``yolov4-tiny.cfg``...) are made just before the
first line that names them (``PLACEHOLDERS``). Lines that cannot run here are in ``NOT_RUN`` with the reason; a
line that is neither run nor listed fails the test, and so does a ``NOT_RUN`` entry the README no longer has.
``QUICK`` shrinks counts (images, frames, seconds) to keep the run to a few minutes: the same commands, less data.
"""
import os
import re
import shlex
import shutil
import time
from collections import namedtuple

import pytest

from tests.gates import ROOT, SHARED_FIXTURES

pytestmark = [pytest.mark.torch, pytest.mark.onnx, pytest.mark.onnxsim, pytest.mark.onnxruntime,
              pytest.mark.openvino, pytest.mark.nncf, pytest.mark.opencv, pytest.mark.coco, pytest.mark.fixtures]

README = os.path.join(ROOT, "README.md")
MAKEFILE = os.path.join(ROOT, "Makefile")
RUN_LANGUAGES = ("sh", "bash", "console", "python")

# command prefix (as written, comments dropped, continuation lines joined) -> why it does not run here
NOT_RUN = {
    "make test": "the whole suite, which this test is part of",
    "edgecsp package --triton models/ -e engines/m-tx2-fp16.engine": "a TensorRT engine is built on a Jetson only "
                                                                  "(no GPU here)",
    "sudo apt-get": "the Jetson's apt (JetPack packages); tests/device/test_python36_device.py runs the pip lines "
                    "in the CPython 3.6 box",
    "cd demo-tx2-fp16-bundle": "on the TX2 (tests/device/test_python36_device.py)",
    "python3 -m pip install --user --no-deps --upgrade --force-reinstall edgecsp-0.1.0-py3-none-any.whl":
        "on the TX2; tests/device/test_python36_device.py installs the bundle's wheel this way in the 3.6 box",
    "export PATH=": "on the TX2 (shell setup)",
    "python3 -m pip install --user pycuda": "compiles against JetPack's CUDA: a Jetson only",
    "sh demo-tx2-fp16-bundle/build_on_device.sh": "needs TensorRT and a GPU; tests/backends/tensorrt/"
                                                  "test_trt_python36.py runs it against TensorRT 8.2 stand-ins",
    "edgecsp infer --engine demo-tx2-fp16-bundle/demo-tx2-fp16.engine": "a TensorRT engine, built on the TX2",
    "docker ": "the JetPack images need a Jetson and NVIDIA's registry (tests/backends/tensorrt/"
               "test_dockerfiles.py lints them)",
}
# commands that serve until stopped: started as a process (as a user would, in another terminal), the block's next
# lines run against them, SIGTERM stops them at the end of the block
BACKGROUND = ("edgecsp serve ",)
SERVE_READY = "http://127.0.0.1:8000/v2/health/ready"  # `edgecsp serve`'s default HTTP port
# blocks that are not commands, by their first line
NOT_COMMANDS = {" PyTorch model ──export──▶": "the pipeline diagram"}

# the same commands with less data: (flag, value as written) -> value run here
QUICK = {("--count", "300"): "40", ("--count", "300"): "40", ("--count", "100"): "12",
         ("--count", "100"): "12", ("--frames", "250"): "25"}
QUICK_BENCH = ["--seconds", "0.2", "--warmup", "1", "--rounds", "1"]  # added to bench lines
QUICK_PYTHON = {'"calib_count": 50': '"calib_count": 12'}

Block = namedtuple("Block", "line lang text")


def readme_blocks(path=README):
    """The fenced code blocks of ``path``: (first line number, language or "text", content)."""
    blocks, lang, start, body = [], None, 0, []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.startswith("```"):
                if lang is None:
                    lang, start, body = line[3:].strip() or "text", number + 1, []
                else:
                    blocks.append(Block(start, lang, "".join(body)))
                    lang = None
            elif lang is not None:
                body.append(line)
    assert lang is None, "README.md: the code block opened at line {} is never closed".format(start - 1)
    return blocks


def shell_commands(text):
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped, as token lists."""
    commands, pending = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        tokens = shlex.split(pending + line, comments=True)
        pending = ""
        if tokens:
            commands.append(tokens)
    return commands


def not_run_reason(tokens):
    text = " ".join(tokens)
    for prefix, reason in NOT_RUN.items():
        if text.startswith(prefix) or text == prefix.strip():
            return reason
    return None


def quick(tokens):
    out = list(tokens)
    for i in range(len(out) - 1):
        out[i + 1] = QUICK.get((out[i], out[i + 1]), out[i + 1])
    if out[:2] == ["edgecsp", "bench"] and "--engine" in out:
        out += QUICK_BENCH
    return out


# ---------------------------------------------------------------------------------------------- example files


def _copy_artefact(src, dst):
    shutil.copy(src, dst)
    if src.endswith(".xml"):
        shutil.copy(src[:-4] + ".bin", dst[:-4] + ".bin")


def _video(name, seed):
    def make():
        from edgecsp.data.shapes import generate_video

        generate_video(name, 8, seed=seed)
    return make


def _fp16():
    from edgecsp.build import BuildConfig, build

    build(BuildConfig("engines/shapes_tiny_csp.onnx", "cpu", "fp16", output="m-fp16.xml"))


def _dynamic():
    from edgecsp.export.onnx_export import ExportConfig, export

    export(ExportConfig(card="models/shapes_tiny_csp.json", output="m-dyn.onnx", dynamic_batch=True))


def _darknet_weights():
    from edgecsp.darknet import parse_cfg, plan_network, random_weights, write_weights

    plan = plan_network(parse_cfg("yolov4-tiny.cfg"))
    write_weights("yolov4-tiny.weights", plan, random_weights(plan, seed=0))


def _bare_heads():
    """The demo's two yolo_raw heads (3 anchors each) with no edgecsp metadata: what another tool would write."""
    import onnx

    model = onnx.load("engines/shapes_tiny_csp.onnx")
    del model.metadata_props[:]
    onnx.save(model, "heads.onnx")


PLACEHOLDERS = {  # a name the README uses as an example -> how it is made (from earlier blocks' outputs)
    "m.xml": lambda: _copy_artefact("engines/shapes_tiny_csp-cpu-fp32.xml", "m.xml"),
    "m.onnx": lambda: shutil.copy("engines/shapes_tiny_csp.onnx", "m.onnx"),
    "m-int8.xml": lambda: _copy_artefact("engines/shapes_tiny_csp-cpu-int8.xml", "m-int8.xml"),
    "m-fp16.xml": _fp16,
    "m-dyn.onnx": _dynamic,
    "video.mp4": _video("video.mp4", 21),
    "cam1.mp4": _video("cam1.mp4", 22),
    "cam2.mp4": _video("cam2.mp4", 23),
    "clip.mp4": _video("clip.mp4", 24),
    "long.mp4": _video("long.mp4", 25),
    "yolov4-tiny.cfg": lambda: shutil.copy(os.path.join(SHARED_FIXTURES, "darknet", "yolov4-tiny.cfg"), "."),
    "coco.names": lambda: shutil.copy(os.path.join(SHARED_FIXTURES, "darknet", "coco.names"), "."),
    "yolov4-tiny.weights": _darknet_weights,
    "yolov4-tiny.xml": lambda: _copy_artefact("engines/darknet-yolov4-tiny-416x416-op13-cpu-fp32.xml",
                                              "yolov4-tiny.xml"),
    "yolov8n.onnx": lambda: shutil.copy(os.path.join("models", "shapes_yolov8n.onnx"), "yolov8n.onnx"),
    "rtmdet.onnx": lambda: os.symlink(os.path.join(SHARED_FIXTURES, "modern", "rtmdet-tiny_320",
                                                   "rtmdet-tiny_320_raw.onnx"), "rtmdet.onnx"),
    "heads.onnx": _bare_heads,
}
_NAME = r"(?:^|[\s:,\"'(]){}(?=$|[\s,\"')])"


def provide(text):
    """Make every example file ``text`` names that is not there yet (in dependency order: the dict's)."""
    for name, make in PLACEHOLDERS.items():
        if not os.path.exists(name) and re.search(_NAME.format(re.escape(name)), text):
            if name == "yolov4-tiny.weights" and not os.path.exists("yolov4-tiny.cfg"):
                PLACEHOLDERS["yolov4-tiny.cfg"]()
            make()


def make_recipe(target):
    """The Makefile's recipe lines of ``target``, its variables expanded."""
    variables, recipe, inside = {}, [], False
    with open(MAKEFILE) as handle:
        for line in handle.read().splitlines():
            match = re.match(r"^([A-Z_]+)\s*\??:?=\s*(.*)$", line)
            if match:
                variables[match.group(1)] = match.group(2)
            if inside and line.startswith("\t"):
                recipe.append(line.strip())
            else:
                inside = line.startswith(target + ":")

    def expand(text):
        for _ in range(5):
            text = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)
        return text

    return [expand(line) for line in recipe]


# ------------------------------------------------------------------------------------------------ the runs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with the repository's models/ (copied: `package --triton models/` writes there) and nothing else."""
    folder = tmp_path_factory.mktemp("readme")
    os.mkdir(str(folder / "models"))
    for name in os.listdir(os.path.join(ROOT, "models")):
        shutil.copy(os.path.join(ROOT, "models", name), str(folder / "models"))
    return folder


def run_edgecsp(tokens, capsys):
    from edgecsp.cli import main

    provide(" ".join(tokens))
    start = time.perf_counter()
    code = main(quick(tokens)[1:])
    captured = capsys.readouterr()
    assert code == 0, "`{}` exited {}: {}".format(" ".join(tokens), code, captured.err.strip()[-2000:])
    return time.perf_counter() - start


def run_make(target, capsys):
    if target != "demo":
        return
    for line in make_recipe("demo"):
        tokens = shlex.split(line)
        if tokens[0].startswith("@echo"):
            continue
        if tokens[:2] == ["mkdir", "-p"]:
            for folder in tokens[2:]:
                os.makedirs(folder, exist_ok=True)
            continue
        assert tokens[0].endswith("/edgecsp"), "make demo runs {!r}: teach tests/test_readme.py to".format(line)
        run_edgecsp(["edgecsp"] + tokens[1:], capsys)


BLOCKS = readme_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=["README.md:{}".format(b.line) for b in BLOCKS])
def test_readme_block_runs(block, workspace, monkeypatch, capsys):
    if block.lang not in RUN_LANGUAGES:
        assert any(block.text.startswith(first) for first in NOT_COMMANDS), (
            "README.md:{}: a ```{} block is neither run nor listed in NOT_COMMANDS".format(block.line, block.lang))
        return
    monkeypatch.chdir(str(workspace))
    if block.lang == "python":
        text = block.text
        for old, new in QUICK_PYTHON.items():
            text = text.replace(old, new)
        provide(text)
        exec(compile(text, "README.md:{}".format(block.line), "exec"), {"__name__": "readme"})
        return
    background = []
    try:
        for tokens in shell_commands(block.text):
            if not_run_reason(tokens):
                continue
            if any(" ".join(tokens).startswith(prefix) for prefix in BACKGROUND):
                background.append(start_server(tokens))
            elif tokens[0] == "make" and len(tokens) == 2:
                run_make(tokens[1], capsys)
            elif tokens[0] == "edgecsp":
                run_edgecsp(tokens, capsys)
            else:
                pytest.fail("README.md:{}: `{}` is neither run here nor listed in NOT_RUN (with the reason)".format(
                    block.line, " ".join(tokens)))
    finally:
        for proc in background:
            stop_server(proc)


def start_server(tokens):
    """``edgecsp serve ...`` as a process; returns once it answers health checks (fails with its output if not)."""
    import subprocess
    import sys
    import urllib.request

    from tests.gates import needs

    needs("tritonserver", "tritonclient")
    output = open("serve-output.txt", "w")  # a file, not a pipe nobody reads: the server never blocks on it
    proc = subprocess.Popen([sys.executable, "-m", "edgecsp"] + tokens[1:], stdout=output, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
    output.close()
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            with open("serve-output.txt") as handle:
                pytest.fail("`{}` exited {}: {}".format(" ".join(tokens), proc.returncode, handle.read()[-2000:]))
        try:
            with urllib.request.urlopen(SERVE_READY, timeout=2) as reply:
                if reply.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    pytest.fail("`{}` did not answer {} within 180 s".format(" ".join(tokens), SERVE_READY))


def stop_server(proc):
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "edgecsp serve exited {} on SIGTERM".format(proc.returncode)


def test_every_listed_line_is_still_in_the_readme():
    commands = [" ".join(t) for b in BLOCKS if b.lang in RUN_LANGUAGES and b.lang != "python"
                for t in shell_commands(b.text)]
    stale = [prefix for prefix in NOT_RUN if not any(c.startswith(prefix) or c == prefix.strip() for c in commands)]
    assert not stale, "NOT_RUN lists lines the README no longer has: {}".format(stale)
    texts = [b.text for b in BLOCKS if b.lang not in RUN_LANGUAGES]
    assert all(any(t.startswith(first) for t in texts) for first in NOT_COMMANDS)


def test_the_build_options_table_is_what_the_backends_take():
    """README's BuildConfig table lists, per key, the backends that take it: exactly each backend's BUILD_OPTIONS."""
    from edgecsp.backends import get_backend, list_backends

    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    table = text[text.index("| key | `edgecsp build` flag | backends | what it sets |"):]
    table = table[:table.index("\n\n")].splitlines()[2:]
    documented = {}
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for backend in cells[2].split(", "):
            documented.setdefault(backend, set()).add(cells[0].strip("`"))
    accepted = dict((b.name, set(get_backend(b.name).BUILD_OPTIONS)) for b in list_backends())
    assert documented == accepted


def test_the_readme_quotes_the_demo_models_card():
    """The demo's mAP in the README is the card's (scripts/train_demo.py measures it on the README's held-out set)."""
    import json

    with open(os.path.join(ROOT, "models", "shapes_tiny_csp.json")) as handle:
        metrics = json.load(handle)["metrics"]
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    map50, map50_95 = 100 * metrics["map50"], 100 * metrics["map50_95"]
    assert "**{:.2f} mAP@0.5, {:.2f} mAP@0.5:0.95**".format(map50, map50_95) in text
    assert "| OpenVINO FP32 IR | {:.2f} | {:.2f} |".format(map50, map50_95) in text
    assert "--count {} --seed 1000".format(300) in metrics["validation"]
