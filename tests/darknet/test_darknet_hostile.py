"""Hostile and broken darknet input: every case ends in one short, escaped InputError line that says the fix.

Each case here was found by a hostile-input session (issue 16) or by tests/darknet/test_darknet_fuzz.py; before the
fix it raised another exception (OverflowError, MemoryError, a torch allocation error), was silently accepted, or
echoed the input whole and raw.
"""
import os
import tracemalloc

import numpy as np
import pytest

from tests.darknet import darknet_helpers as helpers

from edgecsp.darknet import (expected_floats, parse_cfg, parse_cfg_text, plan_network, random_weights, read_weights,
                             write_weights)
from edgecsp.darknet.cfg import MAX_LAYERS
from edgecsp.darknet.graph import MAX_LAYER_VALUES, MAX_PARAMS, MAX_SIDE
from edgecsp.errors import InputError
from edgecsp.validate import printable

HEAD = "[net]\nwidth=64\nheight=64\nchannels=3\n"
CONV = "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
YOLO_CONV = "[convolutional]\nfilters=18\nactivation=linear\n"  # 3 anchors x (classes=1 + 5)
YOLO = "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nnum=3\nclasses=1\n"


def clean(message):
    """``message`` is one short line without raw control characters (what the fuzz tests assert, too)."""
    assert "\n" not in message and "\r" not in message
    assert len(message) <= 400, len(message)
    assert printable(message) == message, "raw control characters in {!r}".format(message)
    return message


def error_of(text, input_size=None, name="bad.cfg"):
    with pytest.raises(InputError) as info:
        plan_network(parse_cfg_text(text, name), input_size)
    return clean(str(info.value))


def yolo_cfg(**options):
    """HEAD + a head conv + a [yolo] whose options are replaced by ``options``."""
    yolo = YOLO
    for key, value in options.items():
        lines = [line for line in yolo.splitlines() if not line.startswith(key + "=")]
        yolo = "\n".join(lines[:1] + ["{}={}".format(key, value)] + lines[1:]) + "\n"
    return HEAD + YOLO_CONV + yolo


# 1. integers are integers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option,expected", [
    ("filters=1e400", "filters=1e400 is not an integer"),  # was OverflowError
    ("size=inf", "size=inf is not an integer"),  # was OverflowError
    ("filters=-inf", "filters=-inf is not an integer"),
    ("filters=nan", "filters=nan is not an integer"),
    ("pad=\u0661\u0662", "pad=\u0661\u0662 is not an integer"),  # Arabic-Indic 12: int() accepts it, darknet does not
    ("filters=\uff18", "is not an integer"),  # fullwidth 8
    ("filters=1e2", "filters=1e2 is not an integer"),  # darknet's atoi reads 1, float() 100: refuse, do not guess
    ("filters=0x10", "is not an integer"),
    ("filters=64.5", "is not an integer"),
    ("filters=1_000", "is not an integer"),  # int() accepts underscores
    ("filters=2147483648", "out of range: darknet reads integers as 32-bit C ints"),
    ("filters=" + "9" * 5000, "out of range"),  # int() itself refuses > 4300 digits with a ValueError
])
def test_integer_options_must_be_ascii_whole_numbers(option, expected):
    message = error_of(HEAD + "[convolutional]\n" + option + "\nactivation=leaky\n")
    assert expected in message
    assert "write a whole number with the digits 0-9" in message or "32-bit C ints" in message


def test_integral_decimals_are_integers():
    # darknet's atoi reads "64.0" as 64 and some published cfgs write 1.0 where an int is meant: accepted
    plan = plan_network(parse_cfg_text(HEAD + "[convolutional]\nfilters=64.0\nsize=3.\npad=+1\n", "ok.cfg"))
    assert plan.layers[0].shape == (64, 64, 64) and plan.layers[0].attrs["size"] == 3
    assert plan.layers[0].attrs["padding"] == 1


@pytest.mark.parametrize("option,expected", [
    ("scale=inf", "scale=inf is not a number"),
    ("scale=nan", "scale=nan is not a number"),
    ("scale=1e400", "scale=1e400 is not a finite 32-bit float"),
    ("scale=1e39", "scale=1e39 is not a finite 32-bit float"),  # finite as a double, inf as darknet's float
    ("scale=\u0661", "is not a number"),
])
def test_number_options_must_be_finite(option, expected):
    assert expected in error_of(HEAD + CONV + "[upsample]\n" + option + "\n")


# 2. sizes are bounded before torch allocates ------------------------------------------------------------------------

@pytest.mark.parametrize("net,expected", [
    ("[net]\nwidth=100000\nheight=416\nchannels=3\n", "[net] width=100000 height=416 is larger than 8192 on a side"),
    ("[net]\nwidth=416\nheight=8193\nchannels=3\n", "is larger than 8192 on a side"),
    ("[net]\nwidth=64\nheight=64\nchannels=1000000\n", "the input would be 1000000x64x64 (CxHxW)"),
])
def test_input_is_bounded(net, expected):
    message = error_of(net + CONV)
    assert expected in message
    assert "8192" in message or "{:,}".format(MAX_LAYER_VALUES) in message


def test_input_size_override_is_bounded():
    message = error_of(HEAD + CONV, input_size=(100000, 100000))
    assert "the input size 100000x100000 is larger than {} on a side".format(MAX_SIDE) in message
    assert "use a size such as 416x416" in message
    assert "the input height must be a positive integer" in error_of(HEAD + CONV, input_size=(0, 64))


@pytest.mark.parametrize("body,expected", [
    # one layer whose output alone would take 16 GiB
    ("[convolutional]\nfilters=1000000\n",
     "the output would be 1000000x64x64 (CxHxW) = 4,096,000,000 values (15.3 GiB"),
    ("[convolutional]\nfilters=4\n[upsample]\nstride=100000\n", "the output would be 4x6400000x6400000"),
    ("[convolutional]\nfilters=4\nsize=1\npadding=100000\n", "the padded input would be"),
    ("[maxpool]\nsize=5000\nstride=5000\npadding=200000\n", "the padded input would be"),
    # weights that would take 2.1 GiB and more
    ("[convolutional]\nfilters=2048\nsize=301\npad=1\n", "parameters, more than edgecsp's limit of {:,}".format(
        MAX_PARAMS)),
    ("[maxpool]\nsize=64\nstride=64\n" + "[convolutional]\nfilters=8192\n" * 10,
     "layer 9: this layer brings the network to 536,969,216 parameters"),
    ("[convolutional]\nfilters=4\npadding=-3\n", "padding=-3 must be >= 0"),
    # small tensors, hours of compute: a 3000x3000 max pool (the torch fuzz test hung on it inside one C call)
    ("[maxpool]\nsize=3000\nstride=7\npadding=4000\n", "multiply-adds, more than edgecsp's limit of 4.4e+12"),
    ("[convolutional]\nfilters=256\nsize=255\npad=1\n" + "[convolutional]\nfilters=256\nsize=127\npad=1\n" * 3,
     "an export check would run for hours"),
])
def test_layers_are_bounded(body, expected):
    message = error_of(HEAD + body)
    assert expected in message


def test_bounds_leave_real_sizes_alone():
    # yolov4-csp at 1536x1536 (its P6 sibling's size) plans: the bounds are far from what real models use
    plan = plan_network(parse_cfg(helpers.fixture_cfg("yolov4-csp")), (1536, 1536))
    assert plan.input_size == (1536, 1536) and expected_floats(plan) == 52986205


@pytest.mark.torch
@pytest.mark.onnx
def test_export_refuses_a_huge_input_before_torch_allocates(tmp_path, capsys):
    from edgecsp.cli import main

    cfg = helpers.sized_cfg(helpers.fixture_cfg("yolov3-tiny-prn"), 100000, tmp_path)
    weights = str(tmp_path / "prn.weights")
    plan = plan_network(parse_cfg(helpers.fixture_cfg("yolov3-tiny-prn")))
    write_weights(weights, plan, random_weights(plan))
    out = str(tmp_path / "out.onnx")
    assert main(["export", "--darknet", cfg, weights, "-o", out]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "width=100000 height=100000 is larger than 8192 on a side" in err
    assert main(["export", "--darknet", helpers.fixture_cfg("yolov3-tiny-prn"), weights, "--input-size",
                 "100000x100000", "-o", out]) == 3
    assert "the input size 100000x100000 is larger than 8192" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_layer_count_is_bounded():
    # a 4 MB cfg of "[dropout]" lines is 400,000 layers: refused while parsing, before a Section per line piles up
    with pytest.raises(InputError) as info:
        parse_cfg_text(HEAD + "[dropout]\n" * (MAX_LAYERS + 1), "deep.cfg")
    assert "deep.cfg line {}: more than {} layers".format(MAX_LAYERS + 5, MAX_LAYERS) in clean(str(info.value))


# 3. a huge .weights file is refused from its length, before any read -----------------------------------------------

def small_plan():
    return plan_network(parse_cfg_text(HEAD + CONV + YOLO_CONV + YOLO, "small.cfg"))


def test_sparse_30_gb_weights_are_refused_without_reading_them(tmp_path):
    plan = small_plan()
    path = str(tmp_path / "huge.weights")
    with open(path, "wb") as f:
        f.write(np.array([0, 2, 5], "<i4").tobytes() + np.array([0], "<u8").tobytes())
        f.truncate(30 << 30)  # sparse: no disk used, 30 GiB of zeros to read
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            read_weights(path, plan)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = clean(str(info.value))
    assert peak < 1 << 20  # nothing of the file's body was read
    body = (30 << 30) - 20
    assert "huge.weights holds {} floats after its 20-byte header (version 0.2.5; {} bytes in all)".format(
        body // 4, 30 << 30) in message
    assert "small.cfg needs exactly {} floats ({} bytes in all)".format(
        expected_floats(plan), 20 + 4 * expected_floats(plan)) in message
    assert "the weights belong to another cfg, pass the .cfg they were trained with" in message


def test_weights_with_nan_or_inf_are_refused(tmp_path):
    plan = small_plan()
    params = random_weights(plan, 1)
    params[1]["rolling_mean" if "rolling_mean" in params[1] else "weights"].flat[3] = np.nan
    params[1]["biases"][0] = np.inf
    path = str(tmp_path / "diverged.weights")
    write_weights(path, plan, params)
    with pytest.raises(InputError) as info:
        read_weights(path, plan)
    assert clean(str(info.value)) == ("diverged.weights holds 2 NaN or infinite values, the first in layer 1 "
                                      "([convolutional] at line 10): training diverged or the file is damaged, use "
                                      "another .weights")


def test_weights_message_stays_short_for_long_names_and_odd_headers(tmp_path):
    plan = plan_network(parse_cfg_text(HEAD + CONV + YOLO_CONV + YOLO, "c" * 300 + ".cfg"))
    path = str(tmp_path / ("w" * 200 + ".weights"))
    with open(path, "wb") as f:
        f.write(np.array([-2 ** 31, -2 ** 31, -2 ** 31], "<i4").tobytes())
        f.truncate(30 << 30)
    with pytest.raises(InputError) as info:
        read_weights(path, plan)
    assert "version -2147483648.-2147483648.-2147483648" in clean(str(info.value))


def test_weights_path_that_is_a_folder_or_has_a_nul(tmp_path):
    plan = small_plan()
    with pytest.raises(InputError, match="not found \\(not a regular file\\)"):
        read_weights(str(tmp_path), plan)
    with pytest.raises(InputError, match="not found: pass the .weights"):
        read_weights(str(tmp_path / "a\0b.weights"), plan)


# 4. BOM, CRLF and UTF-16 text are accepted; a binary file is named as such ------------------------------------------

def fixture_text():
    with open(helpers.fixture_cfg("yolov4-tiny"), encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("encode", [
    lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),  # UTF-8 with a byte order mark (was: "option before [section]")
    lambda t: t.replace("\n", "\r\n").encode("utf-8"),  # Windows line ends
    lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode("utf-8"),
    lambda t: t.replace("\n", "\r\n").encode("utf-16"),  # Notepad's "Unicode"
], ids=["bom", "crlf", "bom-crlf", "utf16"])
def test_windows_encodings_parse_like_the_original(tmp_path, encode):
    text = fixture_text()
    path = str(tmp_path / "windows.cfg")
    with open(path, "wb") as f:
        f.write(encode(text))
    plan = plan_network(parse_cfg(path))
    reference = plan_network(parse_cfg(helpers.fixture_cfg("yolov4-tiny")))
    assert [(p.kind, p.shape, p.inputs, p.section.line) for p in plan.layers] == [
        (p.kind, p.shape, p.inputs, p.section.line) for p in reference.layers]
    assert plan.heads[0].attrs == reference.heads[0].attrs


def test_weights_given_as_cfg(tmp_path):
    plan = small_plan()
    weights = str(tmp_path / "model.weights")
    write_weights(weights, plan, random_weights(plan))
    with pytest.raises(InputError) as info:
        parse_cfg(weights)
    message = clean(str(info.value))
    assert "is binary, not text: pass the .cfg first and the .weights second" in message
    big = str(tmp_path / "big.cfg")
    with open(big, "wb") as f:
        f.truncate(250 << 20)
    with pytest.raises(InputError, match="is 262144000 bytes, but a cfg is a text file of a few KB"):
        parse_cfg(big)


# 5 and 6. values reach messages shortened and escaped ---------------------------------------------------------------

@pytest.mark.parametrize("body,expected", [
    # 600 KB values and lines
    ("[convolutional]\nfilters=" + "x" * 600000 + "\n", "filters=" + "x" * 37 + "...(+599963 chars)"),
    ("[convolutional]\n" + "y" * 600000 + "\n", "'" + "y" * 47 + "...(+599953 chars)' is not key=value"),
    ("[" + "z" * 600000 + "]\n", "unsupported section [zzzzzzzzzzzzzzzzz...(+599983 chars)]"),
    ("[route]\nlayers=" + "-1," * 200000 + "5\n", "refers to layer -1, which does not exist"),
    ("[convolutional]\nfilters=4\nactivation=" + "q" * 600000 + "\n", "unknown activation 'qqqq"),
    # terminal escapes, bell, bidi overrides
    ("[convolutional]\nfilters=4\nactivation=\x1b[31mred\n", "unknown activation '\\x1b[31mred'"),
    ("[\x1b]0;title\x07]\n", "unsupported section [\\x1b]0;title\\x07]"),
    ("[convolutional]\nfilters=4\u202e46\n", "filters=4\\u202e46 is not an integer"),
    ("[convolutional]\nfilters=4\x08\x08\x0812\n", "filters=4\\x08\\x08\\x0812 is not an integer"),
    ("[yolo]\nanchors=1,1\nmask=\x1b[2J0\n",
     "mask=\\x1b[2J0 is not a comma-separated list of integers: item 1 (\\x1b[2J0) is not an integer"),
    ("\x1b[31mfilters\n", "line 5: '\\x1b[31mfilters' is not key=value in [net]"),
])
def test_values_are_shortened_and_escaped(body, expected):
    message = error_of(HEAD + body)
    assert expected in message


def test_file_names_are_escaped(tmp_path):
    name = "evil\x1b]0;owned\x07" + "n" * 200 + ".cfg"
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(HEAD + "[convolutional]\nfilters=inf\n")
    with pytest.raises(InputError) as info:
        parse_cfg_text("[net]\nfilters\n", path)
    assert clean(str(info.value)).startswith("evil\\x1b]0;owned\\x07nnnnnnn...(+197 chars) line 2:")
    with pytest.raises(InputError) as info:
        plan_network(parse_cfg(path))
    assert "filters=inf is not an integer" in clean(str(info.value))
    with pytest.raises(InputError) as info:
        parse_cfg(path + "\x1b[0m.missing")
    assert "not found" in clean(str(info.value))


# 7. [yolo] heads: anchors, scale_x_y, mask, classes, num -----------------------------------------------------------

@pytest.mark.parametrize("options,expected", [
    (dict(anchors="inf,14, 23,27, 37,58"), "anchors=inf,14,23,27,37,58 is not a comma-separated list of numbers: "
                                           "item 1 (inf) is not a number"),
    (dict(anchors="10,nan, 23,27, 37,58"), "item 2 (nan) is not a number"),
    (dict(anchors="10,14, 23,1e400, 37,58"), "item 4 (1e400) is not a finite 32-bit float"),
    (dict(anchors="10,14, -23,27, 37,58"), "anchor 1 is -23,27: anchors are box widths and heights in input pixels "
                                           "and must be positive"),
    (dict(anchors="10,14, 23,27, 0,58"), "anchor 2 is 0,58"),
    (dict(anchors="10,14, 23,27, 37,1e30"), "anchor 2 is 37,1e+30, more than 100 times the 64x64 input (limit 6400)"),
    (dict(anchors="1e30,14, 23,27, 37,58", mask="1,2", classes="4"), "anchor 0 is 1e+30,14, more than 100 times"),
    (dict(anchors="10,14, 23,27"), "num=3 needs 6 anchor values but anchors= has 4"),
    (dict(scale_x_y="inf"), "scale_x_y=inf is not a number"),
    (dict(scale_x_y="nan"), "scale_x_y=nan is not a number"),
    (dict(scale_x_y="0"), "scale_x_y=0 must be in (0, 4]"),
    (dict(scale_x_y="-1.05"), "scale_x_y=-1.05 must be in (0, 4]"),
    (dict(scale_x_y="1e9"), "scale_x_y=1e+09 must be in (0, 4]: published cfgs use 1.0 to 2.0"),
    (dict(mask="0,1,3"), "mask=0,1,3 refers to anchor 3, but there are only 3 anchors"),
    (dict(mask="-1,0,1"), "refers to anchor -1"),
    (dict(classes="0"), "classes=0 must be positive"),
    (dict(classes="1000000"), "classes=1000000 is more than edgecsp's limit of 100000"),
    (dict(num="0"), "num=0 must be positive"),
    (dict(num="-3"), "num=-3 must be positive"),
    (dict(new_coords="2"), "new_coords=2 must be 0 or 1"),
])
def test_yolo_options(options, expected):
    assert expected in error_of(yolo_cfg(**options))


def test_yolo_defaults_and_good_options_still_plan():
    plan = plan_network(parse_cfg_text(yolo_cfg(scale_x_y="1.05", anchors="10,14, 23,27, 37,6400"), "ok.cfg"))
    assert plan.heads[0].attrs["scale_x_y"] == 1.05 and plan.heads[0].attrs["anchors"][2] == (37.0, 6400.0)


@pytest.mark.parametrize("body,expected", [
    ("[convolutional]\nfilters=4\n[softmax]\ntemperature=0\n", "temperature=0 must be positive"),
    ("[convolutional]\nfilters=4\n[softmax]\ntemperature=-1\n", "temperature=-1 must be positive"),
    ("[convolutional]\nfilters=4\n[softmax]\nspatial=nan\n", "spatial=nan is not a number"),
    ("[convolutional]\nfilters=4\nstride=0\n", "stride=0 must be positive"),
    ("[convolutional]\nfilters=4\nstride_x=-2\nstride=-1\n", "stride=-1 must be positive"),
    ("[maxpool]\nsize=0\n", "size=0 must be positive"),
    ("[upsample]\nstride=0\n", "stride=0 (downsampling [upsample]) is not supported"),
    ("[reorg3d]\nstride=0\n", "stride=0 must be positive"),
    ("[route]\nlayers=,\n", "layers=, is not a comma-separated list of integers: item 1 is empty"),
    ("[route]\nlayers=-1,,-2\n", "item 2 is empty, remove the extra comma"),
    ("[convolutional]\nfilters=4\nbinary=\x1b[5m1\n", "binary=\\x1b[5m1 is not supported"),
])
def test_other_options(body, expected):
    assert expected in error_of(HEAD + body)


def test_head_checks_happen_in_the_plan():
    # before, these surfaced only when torch built the model
    assert "the head grid 34x34 does not divide the 100x100 input evenly" in error_of(
        "[net]\nwidth=100\nheight=100\nchannels=3\n" + CONV + "[maxpool]\nsize=3\nstride=3\n" + YOLO_CONV + YOLO)
    two = HEAD + YOLO_CONV + YOLO + "[route]\nlayers=-2\n" + YOLO_CONV + YOLO.replace("classes=1", "classes=1\n")
    assert "two [yolo] layers have the same stride (1, 1)" in error_of(two)
    other = HEAD + YOLO_CONV + YOLO + "[route]\nlayers=-2\n[maxpool]\nsize=2\nstride=2\n" + \
        YOLO_CONV.replace("18", "21") + YOLO.replace("classes=1", "classes=2")
    assert "[yolo] layers disagree on classes= (1, 2)" in error_of(other)
    coords = HEAD + YOLO_CONV + YOLO + "[route]\nlayers=-2\n[maxpool]\nsize=2\nstride=2\n" + YOLO_CONV + \
        YOLO.replace("classes=1", "classes=1\nnew_coords=1")
    assert "new_coords differs between [yolo] layers" in error_of(coords)


# names files (edgecsp export --darknet ... --names) -----------------------------------------------------------------

@pytest.mark.torch
def test_names_file_is_bounded_and_escaped(tmp_path):
    from edgecsp.darknet.model import read_names

    names = tmp_path / "bad.names"
    names.write_bytes(b"\xef\xbb\xbfperson\r\ncar\r\n\r\n")
    assert read_names(str(names)) == ["person", "car"]  # BOM and CRLF
    names.write_bytes(b"person\n\x1b]0;owned\x07\n")
    with pytest.raises(InputError) as info:
        read_names(str(names))
    message = clean(str(info.value))
    assert "names file bad.names line 2: class name '\\x1b]0;owned\\x07' contains control characters" in message
    with open(str(names), "wb") as f:
        f.truncate(30 << 30)
    with pytest.raises(InputError, match="names file bad.names is 32212254720 bytes, but a .names file lists"):
        read_names(str(names))
