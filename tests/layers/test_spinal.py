"""SpinalFC block and the split helpers (archlab/layers/spinal.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.layers import SpinalFC
from archlab.layers.spinal import half_width, split_halves, split_positions


def reference_spinal(parts, block):
    """Hand-written spinal forward from ``block``'s weights (the official scripts' pattern).

    Layer i takes cat[part_(i mod P), h_(i-1)] (part first); each layer is Linear -> [BN] -> act
    (no dropout: callers use dropout=0 or eval mode); output Linear over cat[h_1..h_n].
    """
    P = parts.shape[1]
    hs, h = [], None
    for i, layer in enumerate(block.layers):
        inp = parts[:, i % P] if h is None else torch.cat([parts[:, i % P], h], dim=1)
        z = F.linear(inp, layer.fc.weight, layer.fc.bias)
        if hasattr(layer, "bn"):
            bn = layer.bn
            z = F.batch_norm(z, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias,
                             training=bn.training, eps=bn.eps)
        h = layer.act(z)
        hs.append(h)
    return F.linear(torch.cat(hs, dim=1), block.fc.weight, block.fc.bias)


def _perturb_bn_stats(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))


# --------------------------------------------------------------------------- split helpers
def test_split_halves_even_is_the_papers_split_and_a_view():
    x = torch.randn(3, 10)
    parts = split_halves(x)
    assert parts.shape == (3, 2, 5)
    assert torch.equal(parts[:, 0], x[:, :5]) and torch.equal(parts[:, 1], x[:, 5:])
    assert parts.data_ptr() == x.data_ptr()  # no copy


@pytest.mark.parametrize("F_", [3, 7, 321])
def test_split_halves_odd_overlaps_by_one_and_drops_nothing(F_):
    x = torch.randn(2, F_)
    H = half_width(F_)
    assert H == math.ceil(F_ / 2)
    parts = split_halves(x)
    assert parts.shape == (2, 2, H)
    assert torch.equal(parts[:, 0], x[:, :H])
    assert torch.equal(parts[:, 1], x[:, F_ - H:])  # the last H features
    # every feature is in some half; exactly the middle one is in both
    covered = torch.zeros(F_, dtype=torch.long)
    covered[:H] += 1
    covered[F_ - H:] += 1
    assert (covered >= 1).all() and covered.sum() == F_ + 1 and covered[H - 1] == 2


def test_split_halves_single_feature():
    x = torch.randn(4, 1)
    parts = split_halves(x)
    assert parts.shape == (4, 2, 1)
    assert torch.equal(parts[:, 0], x) and torch.equal(parts[:, 1], x)


def test_split_positions_row_major_like_official_resnet():
    x = torch.randn(2, 5, 2, 2)
    parts = split_positions(x)
    assert parts.shape == (2, 4, 5)
    for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert torch.equal(parts[:, k], x[:, :, i, j])
    with pytest.raises(ValueError, match=r"\(2, 5, 3, 2\)"):
        split_positions(torch.randn(2, 5, 3, 2))


# --------------------------------------------------------------------------- block wiring
@pytest.mark.parametrize("num_parts,num_layers", [(2, 2), (2, 4), (2, 6), (4, 4), (4, 7)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_block_equals_hand_written_reference(num_parts, num_layers, batch_norm):
    block = SpinalFC(6, 3, num_parts=num_parts, num_layers=num_layers, layer_width=5,
                     batch_norm=batch_norm, activation="tanh")
    _perturb_bn_stats(block)
    parts = torch.randn(8, num_parts, 6)
    for train in (True, False):  # BN batch statistics, then running statistics
        block.train(train)
        torch.testing.assert_close(block(parts), reference_spinal(parts, block))


def test_each_layer_sees_its_part_then_the_previous_output():
    """Captured layer inputs: layer i gets cat[part (i mod P), output of layer i-1]."""
    D, P = 4, 2
    block = SpinalFC(D, 2, num_parts=P, num_layers=5, layer_width=3).eval()
    ins, outs = [], []

    def record(module, args, out):
        ins.append(args[0])
        outs.append(out)

    for layer in block.layers:
        layer.register_forward_hook(record)
    parts = torch.randn(5, P, D)
    block(parts)
    assert ins[0].shape == (5, D)
    assert torch.equal(ins[0], parts[:, 0])
    for i in range(1, 5):
        assert torch.equal(ins[i][:, :D], parts[:, i % P])  # first, second, first, second, ...
        assert torch.equal(ins[i][:, D:], outs[i - 1])
    # the order of the halves matters
    assert not torch.allclose(block(parts), block(parts.flip(1)))


def test_layer_shapes_and_exact_parameter_count():
    D, w, n, C = 7, 5, 6, 3
    block = SpinalFC(D, C, num_layers=n, layer_width=w)
    ins = [layer.fc.in_features for layer in block.layers]
    assert ins == [D] + [D + w] * (n - 1)
    assert block.fc.in_features == n * w
    expected = (D * w + w) + (n - 1) * ((D + w) * w + w) + (n * w * C + C)
    assert sum(p.numel() for p in block.parameters()) == expected


def test_every_layer_owns_its_parameters():
    """No accidental sharing (the official 6-layer script reuses fc3/fc4 for layers 5/6)."""
    block = SpinalFC(8, 4, num_layers=6, layer_width=8, batch_norm=True)
    params = list(block.parameters())
    assert len({p.data_ptr() for p in params}) == len(params)
    assert len(params) == 6 * 4 + 2  # fc w/b + bn w/b per layer, output fc w/b
    fcs = [layer.fc for layer in block.layers]
    assert len({id(m) for m in fcs}) == 6
    # every layer's weights receive their own gradient
    block(torch.randn(4, 2, 8)).sum().backward()
    for fc in fcs:
        assert fc.weight.grad is not None and fc.weight.grad.abs().sum() > 0
    # changing layer 5 leaves layers 3 and 4 untouched
    before = [fc.weight.detach().clone() for fc in fcs]
    with torch.no_grad():
        fcs[4].weight.add_(1.0)
    assert torch.equal(fcs[2].weight, before[2]) and torch.equal(fcs[3].weight, before[3])


def test_dropout_and_bn_placement():
    block = SpinalFC(4, 2, layer_width=3, dropout=0.5, batch_norm=True)
    for layer in block.layers:
        assert [type(m).__name__ for m in layer] == ["Dropout", "Linear", "BatchNorm1d", "ReLU"]
    assert isinstance(block.drop, torch.nn.Dropout) and block.drop.p == 0.5
    plain = SpinalFC(4, 2, layer_width=3)
    assert [type(m).__name__ for m in plain.layers[0]] == ["Linear", "ReLU"]
    assert isinstance(plain.drop, torch.nn.Identity)


def test_dropout_active_only_in_training():
    block = SpinalFC(16, 3, layer_width=16, dropout=0.5)
    x = torch.randn(4, 2, 16)
    assert not torch.equal(block(x), block(x))
    block.eval()
    assert torch.equal(block(x), block(x))
    torch.testing.assert_close(block(x), reference_spinal(x, block))


def test_wrong_parts_shape_is_reported():
    block = SpinalFC(4, 2, layer_width=3)
    with pytest.raises(ValueError, match=r"\(B, 2, 4\).*\(3, 2, 5\)"):
        block(torch.randn(3, 2, 5))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(num_layers=0), r"num_layers must be an int >= 2.*got 0"),
        (dict(num_layers=1), r"num_layers must be an int >= 2.*got 1"),
        (dict(num_layers=-3), r"num_layers.*got -3"),
        (dict(num_layers=2.0), r"num_layers.*got 2\.0"),
        (dict(num_parts=4, num_layers=3), r"num_layers must be an int >= 4.*got 3"),
        (dict(layer_width=0), r"layer_width must be an int >= 1, got 0"),
        (dict(layer_width=-2), r"layer_width.*got -2"),
        (dict(layer_width=True), r"layer_width.*got True"),
        (dict(dropout=-0.1), r"dropout must be a float in \[0, 1\), got -0\.1"),
        (dict(dropout=1.0), r"dropout.*\[0, 1\).*got 1\.0"),
        (dict(dropout=float("nan")), r"dropout.*got nan"),
        (dict(dropout="0.5"), r"dropout.*got '0\.5'"),
        (dict(activation="relux"), r"unknown activation 'relux'; allowed: .*relu.*did you mean 'relu'"),
        (dict(activation=3), r"unknown activation 3; allowed"),
        (dict(batch_norm="yes"), r"batch_norm must be true or false, got 'yes'"),
        (dict(part_features=0), r"part_features must be an int >= 1, got 0"),
        (dict(out_features=0), r"out_features must be an int >= 1, got 0"),
    ],
)
def test_bad_options(kw, match):
    args = dict(part_features=4, out_features=2)
    args.update(kw)
    with pytest.raises(ConfigError, match=match):
        SpinalFC(args.pop("part_features"), args.pop("out_features"), **args)


def test_activation_class_accepted():
    block = SpinalFC(3, 2, layer_width=4, activation=torch.nn.GELU)
    assert isinstance(block.layers[0].act, torch.nn.GELU)
