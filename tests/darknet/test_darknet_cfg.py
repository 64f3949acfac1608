"""darknet cfg parsing and network planning: darknet's defaults, shapes of the fixtures, one-line errors."""
import pytest

from tests.darknet import darknet_helpers as helpers

from edgecsp.darknet import parse_cfg, parse_cfg_text, plan_network
from edgecsp.errors import InputError

HEAD = "[net]\nwidth=64\nheight=64\nchannels=3\n"


def plan_text(body, name="net.cfg", input_size=None):
    return plan_network(parse_cfg_text(HEAD + body, name), input_size)


def error_of(body, name="bad.cfg"):
    with pytest.raises(InputError) as info:
        plan_text(body, name)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", helpers.FIXTURE_CFGS)
def test_fixtures_plan(name):
    plan = plan_network(parse_cfg(helpers.fixture_cfg(name)))
    assert plan.input_shape[0] == 3
    if name == "csdarknet53-omega":
        assert plan.task == "classify" and plan.layers[-1].kind == "softmax"
        assert plan.layers[-1].shape == (1000, 1, 1)
        return
    assert plan.task == "detect"
    for head in plan.heads:
        assert head.shape[0] == len(head.attrs["mask"]) * (head.attrs["classes"] + 5)
        assert head.shape[1] * (plan.input_size[0] // head.shape[1]) == plan.input_size[0]


def test_known_fixture_details():
    tiny = plan_network(parse_cfg(helpers.fixture_cfg("yolov4-tiny")))
    assert [h.shape[1:] for h in tiny.heads] == [(13, 13), (26, 26)]
    assert tiny.heads[0].attrs["anchors"] == [(81.0, 82.0), (135.0, 169.0), (344.0, 319.0)]
    assert tiny.heads[0].attrs["scale_x_y"] == 1.05 and not tiny.heads[0].attrs["new_coords"]
    grouped = [p for p in tiny.layers if p.kind == "route" and p.attrs["groups"] == 2]
    assert grouped and all(p.attrs["group_id"] == 1 for p in grouped)
    csp = plan_network(parse_cfg(helpers.fixture_cfg("yolov4-csp")))
    assert csp.letterbox and all(h.attrs["new_coords"] and h.attrs["scale_x_y"] == 2.0 for h in csp.heads)
    spp = [p for p in csp.layers if p.kind == "maxpool"]
    assert [(p.attrs["size"], p.attrs["pad_begin"], p.attrs["pad_end"]) for p in spp] == [
        (5, 2, 2), (9, 4, 4), (13, 6, 6)]
    prn = plan_network(parse_cfg(helpers.fixture_cfg("yolov3-tiny-prn")))
    partial = [p for p in prn.layers if p.kind == "shortcut" and prn.layers[p.inputs[1]].shape[0] != p.shape[0]]
    assert partial  # the partial residuals that give PRN its name


def test_input_size_override():
    plan = plan_network(parse_cfg(helpers.fixture_cfg("yolov4-tiny")), (128, 160))
    assert plan.input_size == (128, 160)
    assert [h.shape[1:] for h in plan.heads] == [(4, 5), (8, 10)]


def test_darknet_defaults():
    plan = plan_text("[convolutional]\nfilters=4\n[maxpool]\nsize=2\n[upsample]\n[reorg]\n")
    conv, pool, up, reorg = plan.layers
    assert conv.attrs["activation"] == "logistic"  # darknet's default, not linear
    assert conv.attrs["size"] == 1 and conv.attrs["padding"] == 0 and not conv.attrs["batch_normalize"]
    assert pool.attrs["stride"] == (1, 1) and (pool.attrs["pad_begin"], pool.attrs["pad_end"]) == (0, 1)
    assert pool.shape == (4, 64, 64)
    assert up.shape == (4, 128, 128)
    assert reorg.shape == up.shape  # stride defaults to 1


def test_comments_whitespace_and_first_value_wins():
    plan = plan_text("# comment\n; another\n[convolutional]\n filters = 8 # inline\nfilters=16\nsize=3\npad=1\n"
                     "activation = leaky\n\n[route]\nlayers = -1,\n")
    assert plan.layers[0].shape == (8, 64, 64)
    assert plan.layers[0].attrs["activation"] == "leaky"
    assert plan.layers[1].inputs == (0,)


def test_route_group_and_shortcut_shapes():
    plan = plan_text("[convolutional]\nfilters=8\nactivation=linear\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
                     "[convolutional]\nfilters=2\nactivation=linear\n[shortcut]\nfrom=0\nactivation=leaky\n"
                     "[route]\nlayers=0,-1\n")
    assert plan.layers[1].shape == (4, 64, 64)
    assert plan.layers[3].inputs == (2, 0) and plan.layers[3].shape == (2, 64, 64)
    assert plan.layers[4].inputs == (0, 3) and plan.layers[4].shape == (10, 64, 64)


def test_unknown_section_names_section_index_and_line():
    message = error_of("[convolutional]\nfilters=4\nactivation=leaky\n\n[lstm]\noutput=4\n")
    assert message.startswith("bad.cfg line 9, [lstm] layer 1: unsupported section [lstm]")
    assert "[convolutional]" in message  # says what is supported


def test_unknown_activation_points_at_its_line():
    message = error_of("[convolutional]\nfilters=4\nactivation=leaky\n[convolutional]\nfilters=4\n"
                       "activation=gelu2\n")
    assert message.startswith("bad.cfg line 10, [convolutional] layer 1: unknown activation 'gelu2'")
    assert "mish" in message


def test_route_to_missing_layer():
    message = error_of("[convolutional]\nfilters=4\nactivation=leaky\n[route]\nlayers=-1,-5\n")
    assert message.startswith("bad.cfg line 9, [route] layer 1: layers=-1,-5 refers to layer -4, which does not "
                              "exist")
    message = error_of("[convolutional]\nfilters=4\nactivation=leaky\n[route]\nlayers=7\n")
    assert "refers to layer 7, which does not exist (this layer may only read layers 0..0)" in message


def test_yolo_mask_out_of_anchors():
    message = error_of("[convolutional]\nfilters=21\nactivation=linear\n[yolo]\nmask=1,2,3\n"
                       "anchors=10,14, 23,27, 37,58\nnum=3\nclasses=2\n")
    assert message.startswith("bad.cfg line 9, [yolo] layer 1: mask=1,2,3 refers to anchor 3, but there are only 3 "
                              "anchors")


def test_yolo_filter_mismatch_names_the_fix():
    message = error_of("[convolutional]\nfilters=20\nactivation=linear\n[yolo]\nmask=0,1,2\n"
                       "anchors=10,14, 23,27, 37,58\nnum=3\nclasses=2\n")
    assert "outputs 20 channels but mask has 3 anchors x (classes=2 + 5) = 21: set filters=21" in message


@pytest.mark.parametrize("body,expected", [
    ("[convolutional]\nfilters=four\n", "line 6, [convolutional] layer 0: filters=four is not an integer"),
    ("[convolutional]\nfilters=4\nbinary=1\n", "binary=1 is not supported"),
    ("[route]\n", "layers= is missing"),
    ("[convolutional]\nfilters=6\ngroups=4\n", "groups=4 must divide both the 3 input channels and filters=6"),
    ("[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n", "which does not exist"),
    ("[convolutional]\nfilters=4\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=0,1\n",
     "routed layers must have the same width and height"),
    ("[convolutional]\nfilters=4\nsize=3\nstride=9\npadding=0\n[convolutional]\nfilters=4\nsize=9\n",
     "the input is too small for this layer"),
    ("[shortcut]\nfrom=-1\n", "which does not exist"),
])
def test_bad_options_are_one_line_errors(body, expected):
    assert expected in error_of(body)


def test_structural_errors():
    with pytest.raises(InputError, match="does not start with a \\[net\\]"):
        parse_cfg_text("[convolutional]\nfilters=4\n", "x.cfg")
    with pytest.raises(InputError, match="line 2: 'filters' is not key=value"):
        parse_cfg_text("[net]\nfilters\n", "x.cfg")
    with pytest.raises(InputError, match="not found"):
        parse_cfg("/nonexistent/model.cfg")
    with pytest.raises(InputError, match="no layers"):
        parse_cfg_text(HEAD, "x.cfg")
