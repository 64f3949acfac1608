"""The CSPNet family: paper parameter counts, forward shapes, fusion modes and the detector backbone interface."""
import pytest

from tests.gates import optional

torch = optional("torch")

from edgecsp.errors import InputError  # noqa: E402
from edgecsp.models import cspnet  # noqa: E402  (registers the family without importing yolo.py)
from edgecsp.models.layers import Mish  # noqa: E402
from edgecsp.models.registry import _REGISTRY  # noqa: E402

pytestmark = pytest.mark.torch

CSPNET_ENTRIES = sorted((e for e in _REGISTRY.values() if e.family == "cspnet"), key=lambda e: e.name)
SMALL = 64  # every stride (up to 32) divides it, and a forward pass stays well under a second on 2 cores


def _ids(entries):
    return [e.name for e in entries]


def test_every_variant_is_registered_and_tested():
    # the parametrized tests below run over the registry: a variant without an entry would go untested
    assert sorted(cspnet.CSPNET_VARIANTS) == _ids(CSPNET_ENTRIES) == ["cspdarknet53", "cspresnet50", "cspresnext50"]


@pytest.mark.parametrize("entry", CSPNET_ENTRIES, ids=_ids(CSPNET_ENTRIES))
def test_param_count_matches_paper(entry):
    model = entry.factory()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert entry.paper_params_m > 0
    assert params_m == pytest.approx(entry.paper_params_m, rel=0.02)


def test_registry_metadata():
    sizes = {e.name: (e.task, e.input_size) for e in CSPNET_ENTRIES}
    assert sizes == {"cspdarknet53": ("classify", (256, 256)), "cspresnet50": ("classify", (224, 224)),
                     "cspresnext50": ("classify", (224, 224))}


@pytest.mark.parametrize("fusion", cspnet.FUSIONS)
@pytest.mark.parametrize("entry", CSPNET_ENTRIES, ids=_ids(CSPNET_ENTRIES))
def test_forward_and_features(entry, fusion):
    model = entry.factory(num_classes=10, fusion=fusion).eval()
    x = torch.randn(1, 3, SMALL, SMALL)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
    assert logits.shape == (1, 10)
    assert len(features) == len(model.feature_channels) == len(model.feature_strides)
    assert [f.shape[1] for f in features] == model.feature_channels
    assert [SMALL // f.shape[-1] for f in features] == model.feature_strides
    assert [SMALL // f.shape[-2] for f in features] == model.feature_strides
    assert model.feature_strides[-3:] == [8, 16, 32]
    assert model.fc.in_features == model.feature_channels[-1]


def test_fusion_modes_place_transitions_as_in_the_paper():
    def stage(fusion):
        return cspnet.cspresnext50(fusion=fusion).backbone.stages[1]

    both, first, last = stage("both"), stage("first"), stage("last")
    assert isinstance(both.partial_transition, cspnet.ConvBNAct)
    assert isinstance(both.fusion_transition, cspnet.ConvBNAct)
    assert isinstance(first.partial_transition, torch.nn.Identity)  # fusion first: concat, then transition
    assert isinstance(first.fusion_transition, cspnet.ConvBNAct)
    assert isinstance(last.partial_transition, cspnet.ConvBNAct)  # fusion last: transition, then concat
    assert isinstance(last.fusion_transition, torch.nn.Identity)


def test_fusion_last_stage_outputs_the_expanded_width():
    # cspresnet50 widens by 2 before the split: without a final transition both halves come out
    model = cspnet.cspresnet50(fusion="last")
    assert model.feature_channels == [256, 512, 1024, 2048]
    assert cspnet.cspresnet50().feature_channels == [128, 256, 512, 1024]


def test_part_one_crosses_the_stage_untouched():
    config = cspnet.CSPStageConfig(32, depth=2, block_ratio=0.5, fusion="last")
    stage = cspnet.CSPStage(16, config, act="leaky").eval()
    x = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        out = stage(x)
        expanded = stage.expand(stage.downsample(x))
    assert out.shape == (1, 32, 8, 8)
    torch.testing.assert_close(out[:, :16], expanded[:, :16])
    assert not torch.allclose(out[:, 16:], expanded[:, 16:])


def test_unknown_fusion_is_an_input_error():
    with pytest.raises(InputError, match="fusion"):
        cspnet.cspdarknet53(fusion="middle")


def test_activations_follow_the_paper():
    def activations(model):
        return {type(m) for m in model.modules() if isinstance(m, (torch.nn.LeakyReLU, torch.nn.ReLU, Mish))}

    assert activations(cspnet.cspdarknet53()) == {torch.nn.LeakyReLU}
    assert activations(cspnet.cspresnet50()) == {torch.nn.ReLU}
    assert activations(cspnet.cspdarknet53(act="mish")) == {Mish}


def test_backbone_for_detectors():
    backbone = cspnet.cspdarknet53_backbone()
    assert backbone.out_channels == [256, 512, 1024]
    assert backbone.out_strides == [8, 16, 32]
    assert backbone.feature_strides == [2, 4, 8, 16, 32]
    assert not any(isinstance(m, torch.nn.Linear) for m in backbone.modules())
    assert any(isinstance(m, Mish) for m in backbone.modules())


def test_scaled_backbone_outputs_match_its_attributes():
    backbone = cspnet.cspdarknet53_backbone(width=0.25, depth=0.33).eval()
    assert [len(stage.blocks) for stage in backbone.stages] == [1, 1, 3, 3, 1]
    assert backbone.out_channels == [64, 128, 256]
    with torch.no_grad():
        outputs = backbone(torch.randn(2, 3, SMALL, SMALL))
    assert [o.shape for o in outputs] == [(2, c, SMALL // s, SMALL // s)
                                          for c, s in zip(backbone.out_channels, backbone.out_strides)]


def test_bad_multipliers_are_input_errors():
    with pytest.raises(InputError, match="width"):
        cspnet.cspdarknet53_backbone(width=0)
    with pytest.raises(InputError, match="out_indices"):
        cspnet.cspdarknet53_backbone(width=0.25, out_indices=(5,))


def test_detectors_match_their_reference_parameter_counts():
    from edgecsp.models import create_model, get_entry

    for name in ("yolov4_csp", "yolov4_tiny_csp"):
        entry = get_entry(name)
        params = sum(p.numel() for p in create_model(name).parameters()) / 1e6
        assert abs(params - entry.paper_params_m) / entry.paper_params_m < 0.02, (name, params)
