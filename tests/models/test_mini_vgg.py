"""mini_vgg options (seed 002): rotation-invariant and weight-normalized variants keep 1,250,858 parameters."""

import pytest
import torch
import torch.nn as nn

import archlab
from archlab.analysis.profile import count_parameters
from archlab.layers import NormalizedConv2d, NormalizedLinear, RotationInvariantConv2d

ROT_VARIANTS = [(r, k) for r in (4, 8) for k in (1, 2, 3, 4)]  # the blog's R_rot_k
NORM_VARIANTS = [(False, False), (True, False), (False, True), (True, True)]  # baseline, conv, dense, both


def _convs(model):
    return [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]


@pytest.fixture(scope="module")
def baseline_names():
    m = archlab.create_model("mini_vgg", num_classes=10)
    return [(n, tuple(p.shape)) for n, p in m.named_parameters()]


@pytest.mark.parametrize("rotations, k", ROT_VARIANTS)
def test_rotation_variants_exact_count_and_names(rotations, k, baseline_names):
    m = archlab.create_model("mini_vgg", num_classes=10, rot_convs=k, rotations=rotations)
    assert count_parameters(m) == 1_250_858
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == baseline_names
    kinds = [isinstance(c, RotationInvariantConv2d) for c in _convs(m)]
    assert kinds == [False] * (4 - k) + [True] * k  # the last k convs
    assert all(c.rotations == rotations for c in _convs(m) if isinstance(c, RotationInvariantConv2d))


@pytest.mark.parametrize("norm_conv, norm_dense", NORM_VARIANTS)
def test_weight_norm_variants_exact_count_and_types(norm_conv, norm_dense, baseline_names):
    m = archlab.create_model("mini_vgg", num_classes=10, norm_conv=norm_conv, norm_dense=norm_dense)
    assert count_parameters(m) == 1_250_858
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == baseline_names
    assert all(isinstance(c, NormalizedConv2d) == norm_conv for c in _convs(m))
    linears = [m.backbone.fc[1], m.head.fc]  # both Dense layers of the blog
    assert all(isinstance(l, NormalizedLinear) == norm_dense for l in linears)


def test_explicit_conv_indices_and_combination():
    m = archlab.create_model("mini_vgg", num_classes=10, rot_convs=[1, 3], rotations=8, norm_conv=True)
    convs = _convs(m)
    assert [isinstance(c, RotationInvariantConv2d) for c in convs] == [True, False, True, False]
    assert convs[0].normalize and isinstance(convs[1], NormalizedConv2d)
    assert count_parameters(m) == 1_250_858


def test_blog_code_without_conv_bias():
    assert count_parameters(archlab.create_model("mini_vgg", num_classes=10, conv_bias=False)) == 1_250_666


def test_variants_start_from_identical_weights():
    torch.manual_seed(5)
    base = archlab.create_model("mini_vgg", num_classes=10)
    torch.manual_seed(5)
    rot = archlab.create_model("mini_vgg", num_classes=10, rot_convs=4, rotations=8, norm_dense=True)
    for (ka, va), (kb, vb) in zip(base.state_dict().items(), rot.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_baseline_weights_load_into_rotation_variant_and_it_trains():
    base = archlab.create_model("mini_vgg", num_classes=10, input_size=16)
    rot = archlab.create_model("mini_vgg", num_classes=10, rot_convs=2, rotations=4, input_size=16)
    rot.load_state_dict(base.state_dict(), strict=True)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.Adam(rot.parameters(), 1e-3)
    losses = []
    for _ in range(4):
        loss = nn.functional.cross_entropy(rot(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_first_rotation_conv_commutes_with_rot90():
    # (the whole stack does not: the second pool crops a 13x13 map asymmetrically)
    m = archlab.create_model("mini_vgg", num_classes=10, rot_convs=4, rotations=4)
    conv = m.backbone.stage1[0]
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(conv(torch.rot90(x, 1, (2, 3))), torch.rot90(conv(x), 1, (2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"rot_convs": 5}, ["rot_convs=5", "0..4"]),
        ({"rot_convs": [0, 2]}, ["1..4"]),
        ({"rot_convs": 2, "rotations": 6}, ["rotations=6", "4", "8"]),
        ({"rotations": 6}, ["rotations=6", "4", "8"]),
    ],
)
def test_bad_options(kwargs, words):
    with pytest.raises(ValueError) as exc:
        archlab.create_model("mini_vgg", num_classes=10, **kwargs)
    for w in words:
        assert w in str(exc.value)
