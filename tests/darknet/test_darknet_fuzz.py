"""Property-based fuzzing of the darknet importer: whatever the cfg and .weights hold, the import ends in success or
in one short, escaped EdgeCSPError line; never another exception, never a hang.

Three sources of input: the real fixture cfgs mutated line by line (delete, duplicate, swap, repeat, hostile
values, unknown sections and keys, random text and bytes, truncation, Windows encodings), each followed by a .weights
file of a chosen size (exact, short, long, a sparse 30 GiB one) or holding a NaN; random bytes; and small cfgs
generated from the layer grammar. With torch, the small plans of both kinds are also built and run. ``EDGECSP_FUZZ_EXAMPLES`` sets the number of examples (see
tests/fuzzing.py); every failure a run found is kept below as an ``@example``.
"""
import functools
import os

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.darknet import darknet_helpers as helpers
from tests.fuzzing import EXAMPLES, fuzz_settings, no_hang

from edgecsp.darknet import expected_floats, parse_cfg, parse_cfg_text, plan_network, random_weights, read_weights
from edgecsp.darknet.graph import layer_ops
from edgecsp.errors import EdgeCSPError
from edgecsp.validate import printable

MAX_MESSAGE = 400
EXACT_WEIGHTS_LIMIT = 8 << 20  # floats: read an exact-size .weights only when it is this small (yolov4-tiny: 6M)

NASTY = ["inf", "-inf", "nan", "NaN", "1e400", "-1e400", "1e30", "1e39", "1e-45", "\u0661\u0662", "\uff18", "64.0",
         "64.", "64.5", "1e2", "0x10", "0", "-0", "-1", "+1", "-2147483648", "2147483647", "2147483648", "9" * 5000,
         "1_000", ",", "1,,2", "-1,-1", "1,2,3,", "\x1b[31m", "\x1b]0;title\x07", "\u202e12", "12\x08\x08",
         "\x00", "#", "=", "[", "]", "[net]", "a" * 20000, "\ufeff1", "\ud7ff", "1\r", "\x85"]
KEYS = ["width", "height", "channels", "filters", "size", "stride", "stride_x", "stride_y", "pad", "padding", "groups",
        "group_id", "layers", "from", "anchors", "mask", "num", "classes", "scale_x_y", "new_coords", "activation",
        "batch_normalize", "dilation", "scale", "temperature", "spatial", "reverse", "scale_wh", "letter_box",
        "weights_type", "binary", "tree", "share_index", "antialiasing", "maxpool_depth"]
KINDS = ["convolutional", "conv", "maxpool", "max", "route", "shortcut", "upsample", "yolo", "sam", "scale_channels",
         "reorg", "reorg3d", "avgpool", "avg", "dropout", "softmax", "soft", "net", "network", "lstm", "Convolutional",
         "", "[yolo]", "yolo ", "\x1b[1m"]
ACTIVATIONS = ["leaky", "linear", "logistic", "mish", "swish", "relu", "relu6", "tanh", "elu", "hard_mish", "gelu"]


def _floats(values):
    return ",".join(repr(v) for v in values)


INDEX = st.integers(0, 10 ** 4)  # a line, taken modulo the file's length (shrinks towards the top)
VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.integers(-5, 70).map(str),
    st.integers(-2 ** 40, 2 ** 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.integers(-40, 40), min_size=1, max_size=8).map(lambda v: ",".join(str(i) for i in v)),
    st.lists(st.one_of(st.floats(-1e3, 1e3), st.floats()), min_size=1, max_size=12).map(_floats),  # anchors
    st.sampled_from(ACTIVATIONS),
    st.text(max_size=30),
    st.text(st.characters(categories=["Cc", "Cf", "Nd", "Zs", "Zl", "Zp"]), max_size=10),
)
OPS = st.one_of(
    st.tuples(st.just("delete"), INDEX),
    st.tuples(st.just("duplicate"), INDEX),
    st.tuples(st.just("swap"), INDEX, INDEX),
    st.tuples(st.just("value"), INDEX, VALUES),  # the value of an existing key=value line
    st.tuples(st.just("set"), INDEX, st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), VALUES),
    st.tuples(st.just("section"), INDEX, st.one_of(st.sampled_from(KINDS), st.text(max_size=10))),
    st.tuples(st.just("line"), INDEX, st.text(max_size=40)),
    st.tuples(st.just("repeat"), INDEX, st.integers(2, 12000)),  # one line many times: deep or wide cfgs
    st.tuples(st.just("truncate"), st.integers(0, 20000)),
    st.tuples(st.just("bytes"), st.integers(0, 20000), st.binary(min_size=1, max_size=16)),
)
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8", "bom", "crlf", "utf-16", "cr"])
WEIGHTS = st.tuples(st.sampled_from(["exact", "exact", "nan", "short", "long", "ragged", "header", "empty", "huge"]),
                    st.sampled_from([(0, 2, 5), (0, 1, 0), (1, 0, 0), (-1, -1, -1), (2 ** 31 - 1, 9, 0)]))


@functools.lru_cache(maxsize=None)
def fixture_text(name):
    with open(helpers.fixture_cfg(name), encoding="utf-8") as f:
        return f.read()


def mutate(text, ops, encoding):
    """The bytes of ``text`` after ``ops`` (see OPS) and ``encoding``."""
    lines = text.split("\n")
    raw = []
    for op in ops:
        kind, n = op[0], op[1] % max(len(lines), 1)
        if kind == "delete" and lines:
            del lines[n]
        elif kind == "duplicate" and lines:
            lines.insert(n, lines[n])
        elif kind == "swap" and lines:
            m = op[2] % len(lines)
            lines[n], lines[m] = lines[m], lines[n]
        elif kind == "value":
            options = [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
            if options:
                i = options[op[1] % len(options)]
                lines[i] = lines[i].split("=", 1)[0] + "=" + op[2]
        elif kind == "set":
            lines.insert(n, "{}={}".format(op[2], op[3]))
        elif kind == "section":
            lines.insert(n, "[{}]".format(op[2]))
        elif kind == "line":
            lines.insert(n, op[2])
        elif kind == "repeat" and lines and len(lines) + op[2] <= 30000:  # 12000 x 12000 lines would only cost time
            lines[n:n + 1] = [lines[n]] * op[2]
        elif kind == "truncate":
            lines = "\n".join(lines)[:op[1]].split("\n")
        elif kind == "bytes":
            raw.append(op[1:])
    text = "\n".join(lines)
    if encoding == "utf-16":
        data = text.encode("utf-16")
    else:
        data = text.replace("\n", {"crlf": "\r\n", "cr": "\r"}.get(encoding, "\n")).encode("utf-8")
        data = (b"\xef\xbb\xbf" if encoding == "bom" else b"") + data
    for offset, chunk in raw:
        offset %= len(data) + 1
        data = data[:offset] + chunk + data[offset:]
    return data


def check_error(exc):
    """What every refusal must be: an EdgeCSPError with one short line that cannot drive a terminal."""
    assert isinstance(exc, EdgeCSPError), exc
    message = str(exc)
    assert message and "\n" not in message, message
    assert len(message) <= MAX_MESSAGE, (len(message), message[:500])
    assert printable(message) == message, "raw control characters in {!r}".format(message)


def write_weights_file(path, floats, mode, version):
    """A .weights file at ``path`` whose body is ``floats`` float32 values, or wrong as ``mode`` says (sparse: the
    30 GiB one costs no disk)."""
    header_bytes = 20 if version[0] * 10 + version[1] >= 2 else 16
    size = {"exact": header_bytes + 4 * floats, "nan": header_bytes + 4 * floats,
            "short": header_bytes + 4 * (floats - 1) if floats else 10, "long": header_bytes + 4 * (floats + 7),
            "ragged": header_bytes + 4 * floats + 3, "header": header_bytes, "empty": 0, "huge": 30 << 30}[mode]
    with open(path, "wb") as f:
        f.write((np.array(version, "<i4").tobytes() + bytes(8))[:min(size, header_bytes)])
        f.truncate(size)
        if mode == "nan" and floats:
            f.seek(header_bytes + 4 * (floats // 2))
            f.write(np.array([np.nan], "<f4").tobytes())


def plan_and_read(folder, data, weights):
    """Parse and plan the cfg ``data``, then read a .weights file made as ``weights`` says; returns the outcome."""
    cfg = os.path.join(str(folder), "fuzz.cfg")
    with open(cfg, "wb") as f:
        f.write(data)
    try:
        plan = plan_network(parse_cfg(cfg))
    except Exception as exc:  # noqa: B902 - anything but an EdgeCSPError fails check_error
        check_error(exc)
        return "cfg refused"
    floats = expected_floats(plan)
    mode, version = weights
    if mode in ("exact", "nan") and floats > EXACT_WEIGHTS_LIMIT:
        mode = "long"  # reading 200 MB per example would only cost time
    path = os.path.join(str(folder), "fuzz.weights")
    write_weights_file(path, floats, mode, version)
    try:
        read_weights(path, plan)
    except Exception as exc:  # noqa: B902
        check_error(exc)
        return "cfg planned, weights ({}) refused".format(mode)
    return "cfg planned, weights ({}) read".format(mode)


@fuzz_settings()
@given(name=st.sampled_from(helpers.FIXTURE_CFGS), ops=st.lists(OPS, min_size=1, max_size=8), encoding=ENCODINGS,
       weights=WEIGHTS)
@example(name="yolov4-tiny", ops=[("value", 3, "1e400")], encoding="utf-8", weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("set", 1, "width", "100000")], encoding="utf-8", weights=("exact", (0, 2, 5)))
@example(name="yolov4-csp", ops=[("value", 0, "inf")], encoding="bom", weights=("huge", (0, 2, 5)))
@example(name="yolov3-tiny-prn", ops=[("set", 1, "pad", "\u0661\u0662")], encoding="crlf", weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("line", 40, "x" * 600000)], encoding="utf-8", weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("section", 40, "\x1b]0;title\x07")], encoding="utf-8", weights=("empty", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("truncate", 0)], encoding="utf-16", weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("bytes", 5, b"\xff\xfe\x00")], encoding="utf-8", weights=("exact", (0, 2, 5)))
@example(name="yolov3-tiny-prn", ops=[("value", 0, "1")], encoding="utf-8", weights=("nan", (0, 2, 5)))
# found by this test on the code before issue 16 (seeds 1-4, before the examples above were added)
@example(name="yolov4-tiny", ops=[("value", 17, "inf")], encoding="utf-8", weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("truncate", 53), ("section", 1, "\x1b")], encoding="utf-8",
         weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("section", 9, "\x08")], encoding="utf-8", weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("bytes", 562, b"\x00")], encoding="utf-8", weights=("exact", (0, 2, 5)))
@example(name="yolov4-tiny", ops=[("delete", 1)], encoding="utf-8", weights=("huge", (0, 2, 5)))  # MemoryError
def test_mutated_fixture_cfgs_end_in_success_or_one_line_error(tmp_path, name, ops, encoding, weights):
    data = mutate(fixture_text(name), ops, encoding)
    with no_hang():
        event(plan_and_read(tmp_path, data, weights))


@fuzz_settings()
@given(data=st.one_of(st.binary(max_size=3000), st.text(max_size=3000).map(lambda t: t.encode("utf-8")),
                      st.binary(max_size=200).map(lambda b: b"[net]\nwidth=64\n" + b)))
@example(data=b"\xff\xfe[\x00n\x00")  # UTF-16 text cut mid-character
@example(data=b"\xef\xbb\xbf")
def test_random_bytes_end_in_success_or_one_line_error(tmp_path, data):
    with no_hang():
        event(plan_and_read(tmp_path, data, ("exact", (0, 2, 5))))


# small cfgs from the layer grammar: deep enough into the planner to reach every check, small enough to build ---------

# per layer kind: its options and plausible values; any value may instead be a hostile one (VALUES)
GOOD = {
    "filters": st.sampled_from(["1", "2", "4", "6", "8", "16"]), "size": st.sampled_from(["1", "2", "3", "5"]),
    "stride": st.sampled_from(["1", "1", "2", "3"]), "pad": st.sampled_from(["0", "1"]),
    "padding": st.sampled_from(["0", "1", "2"]), "groups": st.sampled_from(["1", "2"]),
    "activation": st.sampled_from(ACTIVATIONS), "batch_normalize": st.sampled_from(["0", "1"]),
    "layers": st.sampled_from(["-1", "-2", "-1,-2", "-1,-3", "0", "0,1", "1,2"]),
    "from": st.sampled_from(["-1", "-2", "-3", "0", "1"]), "group_id": st.sampled_from(["0", "1"]),
    "scale": st.sampled_from(["1.0", "0.5"]), "scale_wh": st.sampled_from(["0", "1"]),
    "temperature": st.sampled_from(["1", "2.5"]), "reverse": st.just("0"),
}
OPTIONS = {
    "convolutional": ["filters", "size", "stride", "pad", "padding", "groups", "activation", "batch_normalize",
                      "stride_x", "stride_y", "dilation"],
    "maxpool": ["size", "stride", "padding", "stride_x", "stride_y"],
    "route": ["layers", "groups", "group_id"], "shortcut": ["from", "activation", "weights_type"],
    "upsample": ["stride", "scale"], "sam": ["from", "activation"], "scale_channels": ["from", "activation",
                                                                                      "scale_wh"],
    "reorg": ["stride", "reverse"], "reorg3d": ["stride", "reverse"], "avgpool": [], "dropout": ["probability"],
    "softmax": ["groups", "temperature", "spatial"],
}


def sometimes_hostile(good, draw, one_in=6):
    """``good`` most of the time, a hostile value (VALUES) one time in ``one_in``."""
    return draw(VALUES) if draw(st.integers(1, one_in)) == one_in else draw(good)


@st.composite
def option_lines(draw, kind):
    keys = draw(st.lists(st.sampled_from(OPTIONS[kind] + ["width"]), max_size=4, unique=True))
    required = {"route": "layers", "shortcut": "from", "sam": "from", "scale_channels": "from"}.get(kind)
    if required and required not in keys and draw(st.integers(0, 9)) != 9:
        keys.append(required)
    return ["{}={}".format(k, sometimes_hostile(GOOD.get(k, VALUES), draw)) for k in keys]


@st.composite
def head_lines(draw):
    """A head convolution and a [yolo] that usually fit each other."""
    num = draw(st.integers(1, 4))
    mask = draw(st.lists(st.integers(0, num - 1), min_size=1, max_size=num, unique=True))
    classes = draw(st.integers(1, 3))
    anchors = ",".join(str(draw(st.integers(1, 80))) for _ in range(2 * num))
    options = {"mask": ",".join(str(m) for m in mask), "anchors": anchors, "num": str(num),
               "classes": str(classes), "scale_x_y": draw(st.sampled_from(["1.0", "1.05", "2.0"])),
               "new_coords": draw(st.sampled_from(["0", "1"]))}
    for key in draw(st.lists(st.sampled_from(sorted(options)), max_size=2)):
        options[key] = draw(VALUES)  # sometimes hostile
    return (["[convolutional]", "filters={}".format(len(mask) * (classes + 5)), "activation=linear", "[yolo]"]
            + ["{}={}".format(k, v) for k, v in options.items()])


@st.composite
def small_cfgs(draw):
    sides = st.sampled_from(["8", "16", "32", "32", "64", "33", "1"])
    lines = ["[net]", "width=" + sometimes_hostile(sides, draw, 20), "height=" + sometimes_hostile(sides, draw, 20),
             "channels=" + sometimes_hostile(st.sampled_from(["3", "1", "4"]), draw, 20)]
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(sorted(OPTIONS) + ["convolutional", "convolutional", "route", "shortcut"]))
        if draw(st.integers(0, 5)) == 5:
            lines += draw(head_lines())
        else:
            lines += ["[{}]".format(kind)] + draw(option_lines(kind))
    if draw(st.booleans()):
        lines += draw(head_lines())
    return "\n".join(lines) + "\n"


HEAD_CFG = "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters={}\nactivation=linear\n[yolo]\n{}\n"


# hand-picked hostile cfgs (issue 16), then what these tests found on the code before issue 16 (seeds 1-4)
GENERATED_EXAMPLES = [
    HEAD_CFG.format(18, "mask=0,1,2\nanchors=inf,1,2,3,4,5\nnum=3\nclasses=1"),
    HEAD_CFG.format(6, "mask=0\nanchors=1e30,1\nnum=1\nclasses=1\nscale_x_y=nan"),
    "[net]\nwidth=64\nheight=64\nchannels=3\n[maxpool]\nsize=3000\nstride=7\npadding=4000\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[upsample]\nstride=100000\n",
    # found by the tests
    "[net]\nwidth=inf\nheight=8\nchannels=3\n[avgpool]\n",
    "[net]\nwidth=8\nheight=8\nchannels=inf\n[avgpool]\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=inf\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=\x1b\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[maxpool]\nstride_x=inf\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=inf\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=\x1b[31m\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[softmax]\nspatial=\x1b\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[softmax]\nspatial=" + "a" * 20000 + "\n",
    "[net]\nwidth=8\nheight=8\nchannels=3\n[shortcut]\nweights_type=" + "a" * 20000 + "\n",
    HEAD_CFG.format(6, "mask=0\nanchors=\x1b[31m\nnum=1\nclasses=1"),
    HEAD_CFG.format(6, "mask=0\nanchors=1,1\nnum=1\nclasses=\x1b[31m"),
]


def generated_examples(test):
    """``test`` with an ``@example`` for each of GENERATED_EXAMPLES."""
    for text in reversed(GENERATED_EXAMPLES):
        test = example(text=text)(test)
    return test


@fuzz_settings()
@given(text=small_cfgs())
@generated_examples
def test_generated_cfgs_plan_or_refuse(text):
    with no_hang():
        try:
            plan_network(parse_cfg_text(text, "gen.cfg"))
            event("planned")
        except Exception as exc:  # noqa: B902
            check_error(exc)
            event("refused")


MODEL_PARAMS = 2 << 20  # build and run only the small plans: the bounds themselves are tested on their own
MODEL_VALUES = 4 << 20
MODEL_OPS = 100 << 20


def forward_ops(plan):
    """``layer_ops`` summed over ``plan``: what one forward pass costs."""
    shapes = [p.shape for p in plan.layers]
    return sum(layer_ops(p.kind, p.attrs, shapes[p.inputs[0]] if p.inputs[0] >= 0 else plan.input_shape, p.shape)
               for p in plan.layers)


@pytest.mark.torch
@fuzz_settings()
@given(text=small_cfgs())
@generated_examples
def test_generated_cfgs_build_and_run_in_torch(text):
    with no_hang():
        run_if_small(text)


def run_if_small(text, input_size=None, max_params=MODEL_PARAMS):
    """Plan ``text``; when the plan is small, build the model with random weights and run it on a random input."""
    import torch

    from edgecsp.darknet import build_model

    try:
        plan = plan_network(parse_cfg_text(text, "gen.cfg"), input_size)
    except EdgeCSPError as exc:
        check_error(exc)
        event("refused by the plan")
        return
    if expected_floats(plan) > max_params or forward_ops(plan) > MODEL_OPS or any(
            p.shape[0] * p.shape[1] * p.shape[2] > MODEL_VALUES for p in plan.layers):
        event("planned, too large to run here")
        return
    try:
        model = build_model(plan, random_weights(plan))
    except EdgeCSPError as exc:  # e.g. a names/classes mismatch: a refusal, fine
        check_error(exc)
        event("refused by the model")
        return
    c, h, w = plan.input_shape
    with torch.no_grad():
        outputs = model(torch.rand(1, c, h, w))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    assert len(outputs) == max(len(plan.heads), 1)
    for out, head in zip(outputs, plan.heads):
        assert tuple(out.shape[1:]) == plan.layers[head.inputs[0]].shape
    event("built and ran")


@pytest.mark.torch
@fuzz_settings(max(10, EXAMPLES // 10))  # a model of a real cfg costs ~0.2 s to build and run: fewer examples
@given(name=st.sampled_from(["yolov4-tiny", "yolov3-tiny-prn"]), ops=st.lists(OPS, min_size=1, max_size=4))
@example(name="yolov4-tiny", ops=[("value", 60, "2")])
def test_mutated_fixture_cfgs_build_and_run_in_torch(name, ops):
    """The small fixtures, mutated, at 64x64: what plans must also build and run."""
    text = mutate(fixture_text(name), ops, "utf-8").decode("utf-8", errors="replace")
    with no_hang():
        run_if_small(text, (64, 64), 8 << 20)
