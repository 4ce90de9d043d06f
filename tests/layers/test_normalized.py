"""NormalizedConv2d / NormalizedLinear: the blog's formula, scale invariance, Conv2d/Linear compatibility."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.layers import NormalizedConv2d, NormalizedLinear
from archlab.layers.normalized import normalize_weight


def keras_conv_norm(w: torch.Tensor) -> torch.Tensor:
    """The blog's ``W / (sqrt(sum(W^2, axis=[0, 1, 2])) + 1e-8)`` on a TF (kh, kw, in, out) kernel."""
    w_tf = w.permute(2, 3, 1, 0)
    w_tf = w_tf / (torch.sqrt((w_tf**2).sum(dim=(0, 1, 2), keepdim=True)) + 1e-8)
    return w_tf.permute(3, 2, 0, 1)


def keras_dense_norm(w: torch.Tensor) -> torch.Tensor:
    """The blog's dense ``W / (sqrt(sum(W^2, axis=0)) + 1e-8)`` on a Keras (in, out) matrix."""
    w_k = w.t()
    return (w_k / (torch.sqrt((w_k**2).sum(0, keepdim=True)) + 1e-8)).t()


def test_conv_matches_blog_formula_and_keeps_bias():
    layer = NormalizedConv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    ref = F.conv2d(x, keras_conv_norm(layer.weight), layer.bias, padding=1)
    torch.testing.assert_close(layer(x), ref)
    w = normalize_weight(layer.weight).flatten(1).norm(dim=1)
    torch.testing.assert_close(w, torch.ones(5), rtol=1e-6, atol=1e-6)


def test_linear_matches_blog_formula():
    layer = NormalizedLinear(7, 4)
    x = torch.randn(3, 7)
    torch.testing.assert_close(layer(x), x @ keras_dense_norm(layer.weight).t() + layer.bias)


def test_output_invariant_to_weight_scale_per_unit():
    conv, lin = NormalizedConv2d(2, 3, 3), NormalizedLinear(5, 3)
    x, z = torch.randn(1, 2, 5, 5), torch.randn(2, 5)
    y1, y2 = conv(x), lin(z)
    with torch.no_grad():
        conv.weight.mul_(torch.tensor([3.0, 0.1, 20.0]).view(3, 1, 1, 1))
        lin.weight.mul_(torch.tensor([0.5, 4.0, 9.0]).view(3, 1))
    torch.testing.assert_close(conv(x), y1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lin(z), y2, rtol=1e-5, atol=1e-5)


def test_weight_gradient_is_tangent_to_the_sphere():
    lin = NormalizedLinear(6, 4, bias=False)
    lin(torch.randn(8, 6)).pow(2).sum().backward()
    radial = (lin.weight.grad * lin.weight).sum(1)  # <dL/dw_o, w_o> = 0 for a scale-invariant unit
    torch.testing.assert_close(radial, torch.zeros(4), atol=1e-5, rtol=0)


def test_zero_weight_gives_no_nan():
    lin = NormalizedLinear(3, 2)
    with torch.no_grad():
        lin.weight.zero_()
    assert torch.isfinite(lin(torch.randn(2, 3))).all()


def test_same_parameters_names_and_init_as_torch_layers():
    torch.manual_seed(1)
    c, l = nn.Conv2d(3, 4, 3), nn.Linear(5, 2)
    torch.manual_seed(1)
    nc, nl = NormalizedConv2d(3, 4, 3), NormalizedLinear(5, 2)
    for a, b in ((c, nc), (l, nl)):
        assert list(a.state_dict()) == list(b.state_dict())
        for k in a.state_dict():
            assert torch.equal(a.state_dict()[k], b.state_dict()[k])


def test_from_torch_layers_copy_weights():
    c, l = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.Linear(5, 2)
    nc, nl = NormalizedConv2d.from_conv(c), NormalizedLinear.from_linear(l)
    assert nc.bias is None and nc.stride == (2, 2)
    assert torch.equal(nc.weight, c.weight) and nc.weight is not c.weight
    assert torch.equal(nl.weight, l.weight) and torch.equal(nl.bias, l.bias)
