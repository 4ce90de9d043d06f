"""GatedConnection: resize to the smallest input, sigmoid gates, merges, readable gates, pruning."""

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.layers import GatedConnection


def _inputs():
    return [torch.randn(2, 3, 8, 8), torch.randn(2, 4, 6, 6), torch.randn(2, 2, 8, 7)]


def test_concat_resizes_to_smallest_and_gates():
    xs = _inputs()
    conn = GatedConnection([3, 4, 2], init=0.5)
    y = conn(xs)
    assert y.shape == (2, 9, 6, 6) and conn.out_channels == 9
    g = torch.sigmoid(torch.tensor(0.5))
    ref = torch.cat([F.interpolate(x, size=(6, 6), mode="bilinear", align_corners=False) * g for x in xs], 1)
    torch.testing.assert_close(y, ref)
    # an input already at the target size passes through unresized
    torch.testing.assert_close(y[:, 3:7], xs[1] * g)


@pytest.mark.parametrize("mode", ["nearest", "bicubic", "area"])
def test_interpolation_modes(mode):
    x, small = torch.randn(1, 2, 8, 8), torch.randn(1, 1, 4, 4)
    conn = GatedConnection([2, 1], interpolation=mode, init=100.0)  # gate ~ 1
    y = conn([x, small])[:, :2]
    ref = F.adaptive_avg_pool2d(x, 4) if mode == "area" else F.interpolate(x, size=(4, 4), mode=mode)
    torch.testing.assert_close(y, ref)


def test_shared_false_has_one_gate_per_feature_map():
    conn = GatedConnection([3, 4], shared=False, init=[0.0, 2.0])
    assert conn.weight.shape == (7,)
    gates = conn.gates()
    assert [g.shape for g in gates] == [(3,), (4,)]
    torch.testing.assert_close(gates[1], torch.full((4,), torch.sigmoid(torch.tensor(2.0)).item()))
    with torch.no_grad():
        conn.weight[4] = -50.0  # switch feature map 1 of input 1 off
    y = conn([torch.ones(1, 3, 2, 2), torch.ones(1, 4, 2, 2)])
    assert torch.all(y[:, 4] < 1e-12) and torch.all(y[:, 5] > 0.5)


def test_sum_and_max_pad_narrower_inputs():
    a, b = torch.randn(1, 2, 3, 3), torch.randn(1, 3, 3, 3)
    g = torch.sigmoid(torch.tensor(1.0))
    s = GatedConnection([2, 3], merge="sum", init=1.0)([a, b])
    ref = b * g
    ref[:, :2] += a * g
    torch.testing.assert_close(s, ref)
    m = GatedConnection([2, 3], merge="max", init=1.0)([a, b])
    ref = b * g
    ref[:, :2] = torch.maximum(a * g, b[:, :2] * g)
    torch.testing.assert_close(m, ref)
    assert torch.isfinite(m).all()


def test_squeeze_merge():
    conn = GatedConnection([3, 4], merge="squeeze", squeeze_channels=5)
    assert conn.out_channels == 5
    assert sum(p.numel() for p in conn.parameters()) == 2 + 7 * 5 + 5
    assert conn([torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4)]).shape == (2, 5, 4, 4)


def test_gates_learn():
    conn = GatedConnection([2, 2])
    conn([torch.randn(2, 2, 3, 3), torch.randn(2, 2, 3, 3)]).sum().backward()
    assert conn.weight.grad is not None and conn.weight.grad.abs().sum() > 0


def test_gates_and_strengths_readable():
    conn = GatedConnection([1, 2, 3], init=[-1.0, 0.0, 3.0], input_names=["input", "a", "b"])
    torch.testing.assert_close(torch.stack(conn.gates()), torch.sigmoid(torch.tensor([-1.0, 0.0, 3.0])))
    assert conn.input_strengths().argmax() == 2
    assert conn.input_names == ["input", "a", "b"]


@pytest.mark.parametrize("merge", ["concat", "squeeze"])
def test_keep_subset_equals_forward_on_subset(merge):
    xs = _inputs()
    conn = GatedConnection([3, 4, 2], shared=False, merge=merge, squeeze_channels=4 if merge == "squeeze" else None)
    with torch.no_grad():
        conn.weight.normal_()
    sub = conn.keep([0, 2])
    assert sub.in_channels == [3, 2]
    full_without_1 = conn.keep([0, 1, 2])
    torch.testing.assert_close(full_without_1(xs), conn(xs))
    y = sub([xs[0], xs[2]])
    assert y.shape[-2:] == (8, 7)  # only the kept inputs decide the size
    # the pruned input contributes exactly nothing: same as feeding zeros in its place
    ref = conn([xs[0], torch.zeros(2, 4, 8, 7), xs[2]])
    torch.testing.assert_close(y, ref if merge == "squeeze" else torch.cat([ref[:, :3], ref[:, 7:]], 1))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"in_channels": []}, ["in_channels=[]", "non-empty"]),
        ({"in_channels": [3], "merge": "avg"}, ["merge='avg'", "'concat'", "'sum'", "'max'", "'squeeze'"]),
        ({"in_channels": [3], "interpolation": "lanczos"}, ["'lanczos'", "'bilinear'", "'nearest'", "'bicubic'", "'area'"]),
        ({"in_channels": [3], "merge": "squeeze"}, ["squeeze_channels", "None"]),
        ({"in_channels": [3, 4], "init": [0.1, 0.2, 0.3]}, ["3 values", "2 inputs"]),
        ({"in_channels": [3, 0]}, [">= 1"]),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as exc:
        GatedConnection(**kwargs)
    assert isinstance(exc.value, ConfigError)
    for w in words:
        assert w in str(exc.value)


def test_wrong_number_of_inputs():
    with pytest.raises(ValueError, match="2 inputs got 1"):
        GatedConnection([2, 2])([torch.randn(1, 2, 3, 3)])
