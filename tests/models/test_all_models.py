"""Registry-driven tests: every registered model builds, runs forward/backward, round-trips."""

import copy
import io

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters

# Small inputs per family keep this fast; a family not listed uses its native input size.
SMALL_INPUT = {"crnet": 64, "unet": 32, "mini_vgg": 32, "vgg5": 28, "mnist_cnn": 28, "connected_net": 16,
               **{n: 32 for n in ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
                                  "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
                                  "wide_resnet101_2", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
                                  "recurrent_resnet", "densenet121", "densenet161", "densenet169", "densenet201",
                                  "densenet_bc", "efficientnet_scaled", *(f"efficientnet_b{i}" for i in range(8)),
                                  "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l")}}


# The torchvision-sized giants (> 25M parameters) take several seconds each to build, copy, scramble
# and round-trip; their structure (keys, shapes, counts) is checked on the meta device in their
# family's test file and their code paths by smaller siblings here, so the full surface test of
# each is marked slow.
HEAVY = {"resnet152", "wide_resnet50_2", "wide_resnet101_2", "resnext101_32x8d", "resnext101_64x4d",
         "densenet161", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_m",
         "efficientnet_v2_l"}

# Segmentation models predict one binary mask (image classes empty/mask), not num_classes logits.
SEGMENTATION = {"unet"}


def _build(name, **kw):
    size = SMALL_INPUT.get(name)
    num_classes = 2 if name in SEGMENTATION else 5
    return archlab.create_model(name, num_classes=num_classes, in_chans=3, input_size=size, **kw)


def _round_tripped_twin(model):
    """A copy of ``model`` with scrambled weights, then loaded from ``model``'s saved state dict (eval mode)."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.normal_()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    twin.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    return twin.eval()


def _check_segmentation_model(model):
    """Forward/backward, mask and has_mask shapes, and a state-dict round trip of a segmentation model."""
    x = torch.randn(2, 3, *model.input_size)
    out = model(x)
    assert out.masks.shape == (2, 1, *model.input_size) and out.has_mask.shape == (2, 1)
    (out.masks.mean() + out.has_mask.mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    twin = _round_tripped_twin(model)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_masks(x), twin.predict_masks(x))
        assert model.forward_features(x).shape[1] == model.num_features


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in archlab.list_models()]
)
def test_registered_model(name):
    """Build once; forward, backward, the model surface, head swaps and a state-dict round trip."""
    model = _build(name)
    if getattr(model, "task", "classification") == "segmentation":
        assert name in SEGMENTATION
        return _check_segmentation_model(model)
    assert name not in SEGMENTATION
    x = torch.randn(2, 3, *model.input_size)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    # the surface every model has
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert tuple(feats.shape[1:]) == model.feature_shape
        assert model.num_features == model.feature_shape[0]
        assert model.forward_head(feats).shape == (2, 5)

    # state-dict round trip into a copy whose weights were scrambled
    twin = _round_tripped_twin(model)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(feats), twin(x))

    # any head fits any backbone (heads see the backbone's computed feature shape)
    for head in ("linear", "mlp", "spinal"):
        model.reset_classifier(7, head=head)
        assert model.head.num_classes == 7
        with torch.no_grad():
            assert model.forward_head(feats).shape == (2, 7)


def test_exact_parameter_counts():
    assert count_parameters(archlab.create_model("crnet", in_chans=1, num_classes=2)) == 546_882
    assert count_parameters(archlab.create_model("crnet", in_chans=3, num_classes=2)) == 550_018
    assert count_parameters(archlab.create_model("mini_vgg", num_classes=10)) == 1_250_858
    cnn = archlab.create_model("mnist_cnn", in_chans=1, num_classes=10)
    assert count_parameters(cnn.backbone) == 5_280
    assert count_parameters(cnn.head) == 16_560
    vgg = archlab.create_model("vgg5", in_chans=1, num_classes=10)
    assert count_parameters(vgg.head) == 137_738
    assert count_parameters(vgg.backbone) == 3_508_416


def test_crnet_feature_shape_is_computed():
    assert archlab.create_model("crnet", in_chans=1, num_classes=2).feature_shape == (128, 13, 13)
    # another input size gives another (computed) shape and head width
    m = archlab.create_model("crnet", in_chans=1, num_classes=2, input_size=64)
    assert m.feature_shape == (128, 3, 3)
    assert m.head.fc.in_features == 128 * 9


def test_heavy_set_names_registered_models():
    assert HEAVY <= set(archlab.list_models())


def test_list_models_pattern():
    assert archlab.list_models("vgg5*") == ["vgg5"] and "vgg16_bn" in archlab.list_models("vgg*")
    assert "crnet" in archlab.list_models()
    assert archlab.list_models("CR*") == ["crnet"]


def test_shared_backbone_init_is_identical_across_heads():
    torch.manual_seed(3)
    a = archlab.create_model("mnist_cnn", num_classes=10, in_chans=1, head="linear")
    torch.manual_seed(3)
    b = archlab.create_model("mnist_cnn", num_classes=10, in_chans=1, head="mlp")
    for (ka, va), (kb, vb) in zip(a.backbone.state_dict().items(), b.backbone.state_dict().items()):
        assert ka == kb
        assert torch.equal(va, vb)
