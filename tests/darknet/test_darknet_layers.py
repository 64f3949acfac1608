"""Each darknet layer in PyTorch against a numpy port of darknet's C loop (AlexeyAB ``*_layer.c`` / ``blas.c``).

These cover what OpenCV's importer cannot check: [reorg3d], multi-input grouped routes, shortcuts from several
layers or onto more channels, softmax groups/temperature, [upsample] scale, the extra activations and the
darknet <-> PyTorch parameter round trip.
"""
import numpy as np
import pytest

from tests.gates import optional

torch = optional("torch")

from edgecsp.darknet import build_model, parse_cfg_text, plan_network, random_weights  # noqa: E402

pytestmark = pytest.mark.torch


def model_for(body, channels=4, height=9, width=9):
    text = "[net]\nwidth={}\nheight={}\nchannels={}\n{}".format(width, height, channels, body)
    plan = plan_network(parse_cfg_text(text, "t.cfg"))
    return plan, build_model(plan, random_weights(plan, 0))


def run_layer(model, index, *arrays):
    with torch.no_grad():
        return model.layers[index](*[torch.from_numpy(a) for a in arrays]).numpy()


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def darknet_maxpool(x, size, sy, sx, padding):
    """forward_maxpool_layer: w_offset = -pad / 2, out = (w + pad - size) / stride + 1, outside = -FLT_MAX."""
    n, c, h, w = x.shape
    oh, ow = (h + padding - size) // sy + 1, (w + padding - size) // sx + 1
    off = -(padding // 2)
    out = np.empty((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            best = np.full((n, c), -np.inf, np.float32)
            for dy in range(size):
                for dx in range(size):
                    y, xx = off + i * sy + dy, off + j * sx + dx
                    if 0 <= y < h and 0 <= xx < w:
                        best = np.maximum(best, x[:, :, y, xx])
            out[:, :, i, j] = best
    return out


@pytest.mark.parametrize("size,stride,padding,hw", [
    (2, 2, None, (13, 13)), (2, 1, None, (5, 6)), (3, 1, None, (7, 7)), (3, 2, None, (8, 9)), (4, 2, 3, (9, 9)),
    (5, 1, None, (6, 6)), (13, 1, None, (4, 4)), (2, 3, None, (10, 11)), (2, 1, 4, (5, 5)), (3, 3, 0, (9, 10)),
])
def test_maxpool_matches_darknet(size, stride, padding, hw):
    body = "[maxpool]\nsize={}\nstride={}\n".format(size, stride) + (
        "padding={}\n".format(padding) if padding is not None else "")
    plan, model = model_for(body, height=hw[0], width=hw[1])
    x = rand(1, 4, hw[0], hw[1])
    got = run_layer(model, 0, x)
    want = darknet_maxpool(x, size, stride, stride, size - 1 if padding is None else padding)
    assert got.shape == want.shape == (1,) + plan.layers[0].shape
    np.testing.assert_array_equal(got, want)


def test_maxpool_separate_strides():
    plan, model = model_for("[maxpool]\nsize=2\nstride_x=2\nstride_y=1\n", height=7, width=8)
    x = rand(1, 4, 7, 8)
    np.testing.assert_array_equal(run_layer(model, 0, x), darknet_maxpool(x, 2, 1, 2, 1))


def darknet_reorg(x_flat, w, h, c, batch, stride, forward):
    """blas.c reorg_cpu, verbatim."""
    out = np.zeros_like(x_flat)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = x_flat[in_index]
                    else:
                        out[in_index] = x_flat[out_index]
    return out


def test_reorg3d_is_darknet_reorg_layer():
    plan, model = model_for("[reorg3d]\nstride=2\n", channels=3, height=4, width=6)
    x = rand(1, 3, 4, 6)
    got = run_layer(model, 0, x)
    # forward_reorg_layer: reorg_cpu(input, out_w, out_h, out_c, batch, stride, 0, output)
    want = darknet_reorg(x.ravel(), 3, 2, 12, 1, 2, 0).reshape(1, 12, 2, 3)
    assert got.shape == (1,) + plan.layers[0].shape
    np.testing.assert_array_equal(got, want)


def test_reorg_is_darknet_reorg_old_layer():
    plan, model = model_for("[reorg]\nstride=2\n", channels=8, height=4, width=6)
    x = rand(1, 8, 4, 6)
    got = run_layer(model, 0, x)
    # forward_reorg_old_layer: reorg_cpu(input, w, h, c, batch, stride, 0, output) with the *input* sizes
    want = darknet_reorg(x.ravel(), 6, 4, 8, 1, 2, 0).reshape(1, 32, 2, 3)
    np.testing.assert_array_equal(got, want)


def test_grouped_route_over_several_layers():
    body = ("[convolutional]\nfilters=6\nactivation=linear\n[convolutional]\nfilters=4\nactivation=linear\n"
            "[route]\nlayers=0,1\ngroups=2\ngroup_id=1\n")
    plan, model = model_for(body)
    a, b = rand(1, 6, 9, 9, seed=1), rand(1, 4, 9, 9, seed=2)
    got = run_layer(model, 2, a, b)
    np.testing.assert_array_equal(got, np.concatenate([a[:, 3:], b[:, 2:]], 1))  # route_layer: group_id-th part
    assert got.shape == (1,) + plan.layers[2].shape


def test_shortcut_partial_channels_and_several_sources():
    body = ("[convolutional]\nfilters=6\nactivation=linear\n[convolutional]\nfilters=4\nactivation=linear\n"
            "[convolutional]\nfilters=5\nactivation=linear\n[shortcut]\nfrom=0,1\nactivation=leaky\n")
    plan, model = model_for(body)
    prev, s0, s1 = rand(1, 5, 9, 9, seed=1), rand(1, 6, 9, 9, seed=2), rand(1, 4, 9, 9, seed=3)
    got = run_layer(model, 3, prev, s0, s1)
    # shortcut_multilayer_cpu: out[i] = in[i] + sum of add[i] over sources with i < their size; then activate
    want = prev.copy()
    want += s0[:, :5]
    want[:, :4] += s1
    want = np.where(want > 0, want, np.float32(0.1) * want)
    assert got.shape == (1,) + plan.layers[3].shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_softmax_groups_and_temperature():
    plan, model = model_for("[softmax]\ngroups=3\ntemperature=2\n", channels=6, height=1, width=2)
    x = rand(2, 6, 1, 2)
    got = run_layer(model, 0, x)
    flat = x.reshape(2, 3, 4) / 2.0
    e = np.exp(flat - flat.max(-1, keepdims=True))
    np.testing.assert_allclose(got, (e / e.sum(-1, keepdims=True)).reshape(x.shape), rtol=1e-6)


def test_upsample_scale_and_avgpool():
    plan, model = model_for("[upsample]\nstride=3\nscale=0.5\n[avgpool]\n", channels=2, height=2, width=3)
    x = rand(1, 2, 2, 3)
    up = run_layer(model, 0, x)
    np.testing.assert_array_equal(up, 0.5 * x.repeat(3, 2).repeat(3, 3))
    np.testing.assert_allclose(run_layer(model, 1, up), up.mean((2, 3), keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("name,formula", [
    ("leaky", lambda x: np.where(x > 0, x, 0.1 * x)),
    ("relu6", lambda x: np.clip(x, 0, 6)),
    ("mish", lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    ("swish", lambda x: x / (1 + np.exp(-x))),
    ("logistic", lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", np.tanh),
    ("elu", lambda x: np.where(x >= 0, x, np.exp(x) - 1)),
    ("hard_mish", lambda x: np.where(x > 0, x, np.where(x > -2, x * x / 2 + x, 0))),
])
def test_activations(name, formula):
    plan, model = model_for("[convolutional]\nfilters=4\nactivation={}\n".format(name))
    layer = model.layers[0]
    with torch.no_grad():
        layer.conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        layer.conv.bias.zero_()
    x = rand(1, 4, 9, 9) * 4
    np.testing.assert_allclose(run_layer(model, 0, x), formula(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_batch_norm_is_darknets_inference_formula():
    plan, model = model_for("[convolutional]\nbatch_normalize=1\nfilters=3\nactivation=linear\n", channels=3)
    p = model.darknet_params()[0]
    x = rand(1, 3, 9, 9)
    z = np.einsum("oc,nchw->nohw", p["weights"][:, :, 0, 0].astype(np.float64), x)
    v = p["rolling_variance"].reshape(1, 3, 1, 1)
    want = p["scales"].reshape(1, 3, 1, 1) * (z - p["rolling_mean"].reshape(1, 3, 1, 1)) / np.sqrt(v + 1e-5)
    want += p["biases"].reshape(1, 3, 1, 1)  # fuse_conv_batchnorm's sqrt(var + .00001)
    np.testing.assert_allclose(run_layer(model, 0, x), want, rtol=1e-5, atol=1e-6)


def test_parameters_round_trip_through_the_module():
    plan = plan_network(parse_cfg_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nbatch_normalize=1\n"
                                       "filters=4\nsize=3\npad=1\n[convolutional]\nfilters=2\n", "t.cfg"))
    params = random_weights(plan, 5)
    back = build_model(plan, params).darknet_params()
    assert list(back) == list(params)
    for index in params:
        for key in params[index]:
            np.testing.assert_array_equal(back[index][key], params[index][key])
