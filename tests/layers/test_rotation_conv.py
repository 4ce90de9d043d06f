"""RotationInvariantConv2d: the seed's permutation, rotation equivariance, seed-loop equality, transplant."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.layers import RotationInvariantConv2d
from archlab.layers.rotation_conv import SEED_PERMUTATION, _RotationMax, ring_shift_permutation, rotation_permutations


def seed_shift_rotate(w_tf: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """The blog's ``shift_rotate``: ``tf.gather_nd(w, permutation)`` on a (3, 3, in, out) kernel."""
    for _ in range(shift):
        w_tf = torch.stack([w_tf[r, c] for r, c in SEED_PERMUTATION]).reshape(w_tf.shape)
    return w_tf


def seed_conv(x, weight, bias, rotations, padding):
    """The blog's Convolution2D_4 / _8 in PyTorch: loop of rotated kernels, max, then bias."""
    w_tf = weight.permute(2, 3, 1, 0)  # (kh, kw, in, out) as Keras/TF stores it
    shift = 1 if rotations == 8 else 2
    rots = [w_tf]
    for _ in range(rotations - 1):
        rots.append(seed_shift_rotate(rots[-1], shift))
    outs = torch.stack([F.conv2d(x, w.permute(3, 2, 0, 1), None, 1, padding) for w in rots])
    return outs.amax(0) + bias.view(1, -1, 1, 1)


def test_one_step_moves_outer_ring_clockwise_centre_fixed():
    grid = torch.arange(9)
    rolled = grid[ring_shift_permutation()].view(3, 3)
    # 0 1 2 / 3 4 5 / 6 7 8 -> each ring element one place clockwise, centre stays
    assert rolled.tolist() == [[3, 0, 1], [6, 4, 2], [7, 8, 5]]


@pytest.mark.parametrize("rotations", [4, 8])
def test_rotated_kernels_follow_seed_permutation(rotations):
    layer = RotationInvariantConv2d(2, 3, rotations=rotations)
    w_tf = layer.weight.detach().permute(2, 3, 1, 0)
    expected = [w_tf]
    for _ in range(rotations - 1):
        expected.append(seed_shift_rotate(expected[-1], 1 if rotations == 8 else 2))
    got = layer.rotated_weights("filter").detach().view(3, rotations, 2, 3, 3)  # (O, R, I, k, k)
    for r, w in enumerate(expected):
        torch.testing.assert_close(got[:, r], w.permute(3, 2, 0, 1), rtol=0, atol=0)


def test_four_rotations_are_clockwise_rot90_for_any_odd_kernel():
    for k in (3, 5):
        perms = rotation_permutations(4, k)
        w = torch.randn(k, k)
        for r in range(4):
            assert torch.equal(w.flatten()[perms[r]].view(k, k), torch.rot90(w, -r))


@pytest.mark.parametrize("rotations", [4, 8])
@pytest.mark.parametrize("padding", [0, 1])
def test_rotating_input_rotates_max_output(rotations, padding):
    layer = RotationInvariantConv2d(3, 5, rotations=rotations, padding=padding)
    x = torch.randn(2, 3, 9, 9)
    y = layer(x)
    for k in (1, 2, 3):
        torch.testing.assert_close(layer(torch.rot90(x, k, (2, 3))), torch.rot90(y, k, (2, 3)), rtol=1e-5, atol=1e-5)


def test_rotation_equivariance_five_by_five_kernel():
    layer = RotationInvariantConv2d(2, 4, rotations=4, kernel_size=5, padding=2)
    x = torch.randn(1, 2, 11, 11)
    torch.testing.assert_close(layer(torch.rot90(x, 1, (2, 3))), torch.rot90(layer(x), 1, (2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rotations", [4, 8])
def test_concat_output_rotates_and_shifts_rotation_channels(rotations):
    O = 3
    layer = RotationInvariantConv2d(2, O, rotations=rotations, pool="concat", padding=1)
    x = torch.randn(2, 2, 7, 7)
    y = torch.rot90(layer(x), 1, (2, 3)).view(2, O, rotations, 7, 7)
    y_rot = layer(torch.rot90(x, 1, (2, 3))).view(2, O, rotations, 7, 7)
    # a 90 degree turn of the input is R/4 rotation steps of the filters
    torch.testing.assert_close(y_rot, torch.roll(y, -(rotations // 4), dims=2), rtol=1e-5, atol=1e-5)
    assert layer.out_features == O * rotations


@pytest.mark.parametrize("rotations", [4, 8])
@pytest.mark.parametrize("padding", [0, 1])
def test_equals_seed_loop_values_and_gradients(rotations, padding):
    layer = RotationInvariantConv2d(4, 6, rotations=rotations, padding=padding)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    g = torch.randn_like(layer(x))
    out = layer(x)
    out.backward(g)
    grads = (x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    x.grad = None
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    ref = seed_conv(x, w, b, rotations, padding)
    ref.backward(g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], w.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[2], b.grad, rtol=1e-4, atol=1e-5)


def test_max_with_ties_matches_torch_max():
    v = torch.randn(2, 8, 3, 4, 4)
    v[0, :, 0] = 0.0  # all rotations tie (an all-zero patch)
    v[1, 2:5, 1] = 5.0  # three rotations tie at the max
    a, b = v.clone().requires_grad_(), v.clone().requires_grad_()
    g = torch.randn(2, 3, 4, 4)
    ya, yb = _RotationMax.apply(a), b.max(1).values
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(ya, yb)
    assert torch.equal(a.grad, b.grad)
    assert a.grad[0, :, 0].abs().sum(0).nonzero().numel() > 0
    assert (a.grad[0, 1:, 0] == 0).all()  # the first tied rotation takes the gradient


def test_no_grad_path_equals_grad_path():
    layer = RotationInvariantConv2d(3, 4, rotations=8, padding=1)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        a = layer(x)
    torch.testing.assert_close(a, layer(x).detach())


def test_no_extra_parameters_and_conv2d_names():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    for rotations in (4, 8):
        layer = RotationInvariantConv2d(8, 16, rotations=rotations, padding=1)
        assert [(n, p.shape) for n, p in layer.named_parameters()] == [(n, p.shape) for n, p in conv.named_parameters()]
        assert set(layer.state_dict()) == {"weight", "bias"}  # the permutation buffer is not persistent
    sq = RotationInvariantConv2d(8, 16, rotations=8, pool="concat", squeeze=True, padding=1)
    assert sum(p.numel() for p in sq.parameters()) == sum(p.numel() for p in conv.parameters()) + 16 * 16 * 8
    assert sq(torch.randn(1, 8, 5, 5)).shape == (1, 16, 5, 5)


def test_same_initialisation_as_conv2d():
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 6, 3)
    torch.manual_seed(7)
    layer = RotationInvariantConv2d(4, 6, rotations=8)
    assert torch.equal(conv.weight, layer.weight) and torch.equal(conv.bias, layer.bias)


def test_from_conv_transplants_weights():
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=1)
    layer = RotationInvariantConv2d.from_conv(conv, rotations=8)
    assert torch.equal(layer.weight, conv.weight) and torch.equal(layer.bias, conv.bias)
    assert layer.weight is not conv.weight and layer.padding == conv.padding
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(layer(x), seed_conv(x, conv.weight, conv.bias, 8, 1), rtol=1e-5, atol=1e-5)
    # the ordinary layer's output is one of the rotations, so the max is never below it
    assert (layer(x) >= conv(x) - 1e-5).all()
    nobias = RotationInvariantConv2d.from_conv(nn.Conv2d(3, 4, 3, bias=False))
    assert nobias.bias is None
    # and a Conv2d state dict loads strictly
    other = RotationInvariantConv2d(3, 4, rotations=4, padding=1)
    other.load_state_dict(conv.state_dict(), strict=True)


def test_normalize_option():
    layer = RotationInvariantConv2d(3, 4, rotations=4, padding=1, normalize=True)
    x = torch.randn(1, 3, 5, 5)
    y = layer(x)
    with torch.no_grad():
        layer.weight.mul_(7.0)
    torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)


def test_stride_two_runs():
    layer = RotationInvariantConv2d(3, 4, rotations=8, stride=2, padding=1)
    assert layer(torch.randn(2, 3, 9, 9)).shape == (2, 4, 5, 5)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"rotations": 6}, ["rotations=6", "4", "8"]),
        ({"rotations": 8, "kernel_size": 5}, ["kernel_size=5", "rotations=8", "3"]),
        ({"rotations": 4, "kernel_size": 4}, ["kernel_size=4", "odd"]),
        ({"pool": "avg"}, ["'avg'", "'max'", "'concat'"]),
        ({"pool": "max", "squeeze": True}, ["squeeze", "'concat'"]),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as exc:
        RotationInvariantConv2d(3, 4, **kwargs)
    assert isinstance(exc.value, ConfigError)
    for w in words:
        assert w in str(exc.value)


def test_from_conv_rejects_non_square_and_grouped():
    with pytest.raises(ValueError, match="square"):
        RotationInvariantConv2d.from_conv(nn.Conv2d(3, 4, (3, 1)))
    with pytest.raises(ValueError, match="groups"):
        RotationInvariantConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2))
