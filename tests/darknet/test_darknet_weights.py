"""darknet .weights: layout, header versions, round trip, and exact size checks (numpy only)."""
import os

import numpy as np
import pytest

from tests.darknet import darknet_helpers as helpers

from edgecsp.darknet import (WeightsHeader, expected_floats, parse_cfg, parse_cfg_text, plan_network,
                             random_weights, read_weights, write_weights)
from edgecsp.errors import InputError

SMALL = ("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\n"
         "activation=leaky\n[maxpool]\nsize=2\nstride=2\n[convolutional]\nfilters=2\ngroups=2\nsize=1\n"
         "activation=linear\n")


def small_plan():
    return plan_network(parse_cfg_text(SMALL, "small.cfg"))


def test_layout_matches_darknet(tmp_path):
    plan = small_plan()
    # conv 0: 4 biases + 3 x 4 BN vectors + 4*3*3*3 kernel; conv 2: 2 biases + 2*(4/2)*1*1 kernel
    assert expected_floats(plan) == 4 + 12 + 108 + 2 + 4
    values = np.arange(expected_floats(plan), dtype=np.float32)
    path = str(tmp_path / "seq.weights")
    with open(path, "wb") as f:
        f.write(np.array([0, 2, 5], "<i4").tobytes() + np.array([123456789012], "<u8").tobytes())
        f.write(values.tobytes())
    header, params = read_weights(path, plan)
    assert header == WeightsHeader(0, 2, 5, 123456789012)
    assert list(params[0]) == ["biases", "scales", "rolling_mean", "rolling_variance", "weights"]
    assert params[0]["biases"].tolist() == [0, 1, 2, 3]
    assert params[0]["rolling_variance"].tolist() == [12, 13, 14, 15]
    assert params[0]["weights"].shape == (4, 3, 3, 3) and params[0]["weights"][0, 0, 0, 1] == 17
    assert list(params[2]) == ["biases", "weights"] and params[2]["weights"].shape == (2, 2, 1, 1)
    assert 1 not in params  # maxpool owns nothing


def test_old_header_has_a_32_bit_seen(tmp_path):
    plan = small_plan()
    params = random_weights(plan, 1)
    path = str(tmp_path / "old.weights")
    write_weights(path, plan, params, WeightsHeader(0, 1, 0, 77))
    assert os.path.getsize(path) == 16 + 4 * expected_floats(plan)
    header, back = read_weights(path, plan)
    assert header.seen == 77 and header.seen_bytes == 4
    np.testing.assert_array_equal(back[0]["weights"], params[0]["weights"])


def test_round_trip_and_permissions(tmp_path):
    plan = small_plan()
    params = random_weights(plan, 3)
    path = str(tmp_path / "rt.weights")
    write_weights(path, plan, params)
    assert os.path.getsize(path) == 20 + 4 * expected_floats(plan)
    assert os.stat(path).st_mode & 0o044  # readable by others as any file written under the usual umask
    _, back = read_weights(path, plan)
    for index, arrays in params.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(back[index][key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["rt.weights"]  # no temporary left behind


def test_published_yolov4_tiny_size():
    # the public yolov4-tiny.weights is 24,251,276 bytes: 20-byte header + 6,062,814 floats
    plan = plan_network(parse_cfg(helpers.fixture_cfg("yolov4-tiny")))
    assert 20 + 4 * expected_floats(plan) == 24251276


def test_truncated_weights_say_expected_and_found(tmp_path):
    plan = small_plan()
    path = str(tmp_path / "short.weights")
    write_weights(path, plan, random_weights(plan))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-4 * 3])
    with pytest.raises(InputError) as info:
        read_weights(path, plan)
    message = str(info.value)
    assert "\n" not in message
    assert "short.weights holds 127 floats" in message and "needs exactly 130 floats" in message
    assert "the file ends inside layer 2, [convolutional] at line 14" in message and "truncated" in message


def test_longer_or_ragged_weights_are_refused(tmp_path):
    plan = small_plan()
    path = str(tmp_path / "long.weights")
    write_weights(path, plan, random_weights(plan))
    with open(path, "ab") as f:
        f.write(b"\0" * 6)
    with pytest.raises(InputError, match="holds 131 floats and 2 stray bytes .* needs exactly 130 floats.*another cfg"):
        read_weights(path, plan)
    with open(path, "wb") as f:
        f.write(b"\0" * 10)
    with pytest.raises(InputError, match="too short for a darknet weights header"):
        read_weights(path, plan)
    with pytest.raises(InputError, match="not found"):
        read_weights(str(tmp_path / "missing.weights"), plan)


def test_writer_checks_shapes(tmp_path):
    plan = small_plan()
    params = random_weights(plan)
    params[0]["weights"] = params[0]["weights"][:, :2]
    with pytest.raises(InputError, match="weights of layer 0 has shape"):
        write_weights(str(tmp_path / "x.weights"), plan, params)
    assert not os.listdir(str(tmp_path))
