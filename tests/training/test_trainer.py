"""The demo training loop: batches go through the runtime's letterbox/preprocess; a few steps run."""
import numpy as np
import pytest

from tests.gates import optional

torch = optional("torch")

from edgecsp.export.metadata import meta_from_model  # noqa: E402
from edgecsp.models import create_model  # noqa: E402
from edgecsp.training.trainer import TrainConfig, _sample_batch, train  # noqa: E402

pytestmark = [pytest.mark.torch]


def test_sample_batch_is_network_input_with_targets_inside_it():
    meta = meta_from_model(create_model("shapes_tiny_csp"), "shapes_tiny_csp")
    x, targets = _sample_batch(np.random.default_rng(0), 4, meta)
    h, w = meta.input_size
    assert tuple(x.shape) == (4, 3, h, w) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    t = targets.numpy()
    assert len(t) >= 4 and set(t[:, 0].astype(int)) == {0, 1, 2, 3}
    assert np.all(t[:, 2] - t[:, 4] / 2 >= -0.5) and np.all(t[:, 2] + t[:, 4] / 2 <= w + 0.5)
    assert np.all(t[:, 3] - t[:, 5] / 2 >= -0.5) and np.all(t[:, 3] + t[:, 5] / 2 <= h + 0.5)


def test_a_few_steps_train_and_return_the_ema_model():
    model, seconds = train(TrainConfig(steps=2, batch=2, warmup=1, log_every=100), log=lambda msg: None)
    outs = model(torch.zeros(1, 3, 256, 256))
    assert [tuple(o.shape) for o in outs] == [(1, 30, 16, 16), (1, 30, 8, 8)]
    assert seconds > 0


def _loss_on_fixed_batch(model, meta):
    from edgecsp.training.yolo_loss import YoloLoss

    x, targets = _sample_batch(np.random.default_rng(123), 8, meta)
    loss_fn = YoloLoss(model.strides, model.anchors, len(model.names), model.input_size)
    model.train()  # batch statistics: after a few dozen steps BN's running statistics are not settled yet
    with torch.no_grad():
        loss, parts = loss_fn(list(model(x)), targets)
    return float(loss), float(parts[0])


def test_training_changes_the_weights_and_lowers_the_loss():
    """Forty steps from the same initial weights: most weight tensors moved and the loss on a held-out batch fell
    (measured: 1.92 -> 1.71, the box term 0.129 -> 0.088)."""
    config = TrainConfig(steps=40, batch=4, warmup=2, lr=5e-3, log_every=100)
    torch.manual_seed(config.seed)  # what train() does before it creates the model
    initial = create_model(config.model)
    meta = meta_from_model(initial, config.model)
    before = {k: v.clone() for k, v in initial.state_dict().items() if v.dtype.is_floating_point}
    logged = []
    trained, _ = train(config, log=logged.append)
    after = trained.state_dict()
    weights = [k for k in before if k.endswith(".weight")]
    moved = [k for k in weights if not torch.equal(before[k], after[k])]
    assert len(moved) > 0.9 * len(weights), "only {} of {} weight tensors changed".format(len(moved), len(weights))
    (loss_before, box_before), (loss_after, box_after) = (_loss_on_fixed_batch(initial, meta),
                                                          _loss_on_fixed_batch(trained, meta))
    assert loss_after < 0.95 * loss_before and box_after < 0.8 * box_before, (loss_before, loss_after)
    assert logged and logged[0].startswith("step     1/40")
