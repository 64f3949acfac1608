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
