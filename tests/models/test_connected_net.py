"""connected_net (seed 002 learned connectivity): structure, equality with the blog's algorithm, pruning."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import archlab
from archlab.analysis.profile import count_parameters
from archlab.errors import IncompatibleError
from archlab.layers import GatedConnection


def _net(**kw):
    kw.setdefault("input_size", 16)
    return archlab.create_model("connected_net", num_classes=10, **kw)


def test_default_structure_every_block_sees_all_previous_outputs():
    m = _net()
    conns = m.backbone.gated_connections()
    assert list(conns) == [f"connection_{j}" for j in range(8)]
    # connection j merges the input and the outputs of blocks 0..j
    assert [c.num_inputs for c in conns.values()] == list(range(2, 10))
    assert conns["connection_0"].input_names == ["input", "block0:conv:32"]
    # concat widths: 3+32, +32, +67 (pooled concat), +134, +64, +64, +396, +792
    assert [c.out_channels for c in conns.values()] == [35, 67, 134, 268, 332, 396, 792, 1584]
    assert m.backbone.out_shape == (1584, 2, 2)
    convs = 3 * 32 * 9 + 35 * 32 * 9 + 268 * 64 * 9 + 332 * 64 * 9  # no conv bias (the blog's code)
    gates = sum(range(2, 10))
    assert count_parameters(m) == convs + gates + (1584 * 4 * 512 + 512) + (512 * 10 + 10)


def test_forward_equals_blog_algorithm():
    torch.manual_seed(0)
    m = _net(input_size=8, blocks=["conv:4", "maxpool:2", "conv:3:valid"], gate_init=0.3)
    with torch.no_grad():
        for c in m.backbone.connections:
            c.weight.normal_()
    m.eval()
    x = torch.randn(2, 3, 8, 8)
    net = m.backbone
    conv0, conv2 = net.blocks[0][0], net.blocks[2][0]

    def connection(c, inputs):  # the blog's Connection: resize to min, concat, * sigmoid(W)
        h = min(t.shape[2] for t in inputs)
        w = min(t.shape[3] for t in inputs)
        rs = [F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False) for t in inputs]
        return torch.cat([t * torch.sigmoid(c.weight[i]) for i, t in enumerate(rs)], 1)

    outs = [x]
    outs.append(F.relu(conv0(x)))
    h = connection(net.connections[0], outs)
    outs.append(F.max_pool2d(h, 2))
    h = connection(net.connections[1], outs)
    outs.append(F.relu(conv2(h)))
    h = connection(net.connections[2], outs)
    ref = F.relu(net.fc[1](h.flatten(1)))
    torch.testing.assert_close(net(x), ref)


def test_gates_readable_and_learned():
    m = _net(gate_init=0.5)
    g = m.gates()
    assert g["connection_3"][0].item() == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item())
    m(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(c.weight.grad is not None for c in m.backbone.gated_connections().values())


def test_shared_false_and_other_merges_build_and_run():
    for kw in ({"shared": False}, {"merge": "sum"}, {"merge": "max"}, {"merge": "squeeze", "squeeze_channels": 16}):
        m = _net(input_size=12, **kw)
        out = m(torch.randn(2, 3, 12, 12))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
    m = _net(input_size=12, shared=False)
    assert m.backbone.connections[0].weight.shape == (35,)


def _set_gates(model, fn):
    with torch.no_grad():
        for j, c in enumerate(model.backbone.connections):
            if isinstance(c, GatedConnection):
                c.weight.copy_(torch.tensor([fn(j, i) for i in range(c.weight.numel())], dtype=torch.float))


def test_prune_removes_weak_connections_and_dead_blocks_and_trains():
    m = _net()
    # keep only the feed-forward edge (last input) of every connection, plus the input into the Dense layer
    _set_gates(m, lambda j, i: 5.0 if i == j + 1 or (j == 7 and i == 0) else -5.0)
    pattern = m.pruned_connections(0.5)
    assert pattern[0] == [1] and pattern[7] == [0, 8]
    small = m.prune(0.5, seed=0)
    assert small.backbone.pattern == pattern
    assert count_parameters(small) < count_parameters(m)
    assert all(small.backbone.alive)
    assert small.build_kwargs["connections"] == pattern
    # the same seed gives the same pruned model
    again = m.prune(0.5, seed=0)
    for a, b in zip(small.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    # a sequential net now: the convs see only the previous block
    assert small.backbone.blocks[1][0].in_channels == 32
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    opt = torch.optim.Adam(small.parameters(), 1e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(small(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_prune_drops_blocks_that_feed_nothing():
    m = _net()
    # the Dense layer reads only the input and block 3; blocks 4..7 become dead
    _set_gates(m, lambda j, i: 5.0 if (j < 7 and i == j + 1) or (j == 7 and i in (0, 4)) else -5.0)
    small = m.prune(0.5)
    assert small.backbone.alive == [True] * 4 + [False] * 4
    assert all(isinstance(b, nn.Identity) for b in small.backbone.blocks[4:])
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_prune_keeps_strongest_source_when_all_are_weak():
    m = _net()
    _set_gates(m, lambda j, i: -3.0 + 0.1 * i)
    pattern = m.pruned_connections(0.9)
    assert pattern == [[j + 1] for j in range(8)]


def test_connections_option_round_trips():
    pattern = [[0, 1], [2], [3], [4], [5], [6], [7], [0, 8]]
    m = _net(connections=pattern)
    assert m.backbone.pattern == pattern
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, 10)


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"connections": [[0, 1], []] + [[1]] * 6}, ["connections[1] is empty", "0 (input)"]),
        ({"connections": [[0, 3]] + [[1]] * 7}, ["connections[0]", "0..1"]),
        ({"connections": [[1]]}, ["1 entries for 8 blocks"]),
        ({"blocks": ["conv:32", "pool:2"]}, ["'pool:2'", "conv:N", "maxpool:K", "dropout:P"]),
        ({"blocks": []}, ["at least one block"]),
        ({"merge": "avg"}, ["merge='avg'", "'concat'"]),
    ],
)
def test_bad_options(kw, words):
    with pytest.raises(ValueError) as exc:
        _net(**kw)
    for w in words:
        assert w in str(exc.value)


def test_too_small_input():
    with pytest.raises(IncompatibleError, match="input_size"):
        _net(input_size=4)


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        _net(input_size=12).prune(1.5)
