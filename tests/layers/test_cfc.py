"""CfC: dense and wired cells equal to ncps 1.0.1 in every mode; timespans per sample; errors."""

import pytest
import torch

from archlab.errors import ConfigError
from archlab.layers import wirings as W
from archlab.layers.cfc import CfC, CfCCell

ncps_torch = pytest.importorskip("ncps.torch")
ncps_wirings = pytest.importorskip("ncps.wirings")

UNITS = {
    "ncp_original": (lambda: ncps_wirings.NCP(12, 6, 1, 6, 4, 6, 6), 32, {}),
    "ncp_small": (lambda: ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3, seed=3), 7, {}),
    "auto_ncp": (lambda: ncps_wirings.AutoNCP(16, 3), 10, {}),
    "fully_connected": (lambda: ncps_wirings.FullyConnected(8, 2), 5, {}),
    "dense": (lambda: 7, 4, {}),
    "dense_deep": (lambda: 7, 4, {"backbone_layers": 2, "backbone_units": 16, "activation": "silu", "proj_size": 3}),
    "dense_no_backbone": (lambda: 7, 4, {"backbone_layers": 0}),
}


def _run(module, x, **kw):
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y, h = module(x, **kw)
    hh = h if isinstance(h, torch.Tensor) else h[0] + 2 * h[1]
    (y.square().sum() + hh.square().sum() + y.sum()).backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return [y.detach(), hh.detach(), x.grad] + [grads[k] for k in sorted(grads)], sorted(grads)


def _assert_equal(ref, ours, x, atol, **kw):
    a, names_a = _run(ref, x, **kw)
    b, names_b = _run(ours, x, **kw)
    assert names_a == names_b
    for u, v in zip(a, b):
        torch.testing.assert_close(v, u, atol=atol * max(1.0, float(u.abs().max())), rtol=0)


@pytest.mark.parametrize("name", list(UNITS))
@pytest.mark.parametrize("mode", ["default", "pure", "no_gate"])
def test_equal_to_ncps(name, mode):
    make, inputs, kw = UNITS[name]
    torch.manual_seed(1)
    ref = ncps_torch.CfC(inputs, make(), mode=mode, **kw).double()
    ours = CfC.from_ncps(ref)
    _assert_equal(ref, ours, torch.randn(3, 5, inputs, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("batch,steps", [(1, 1), (6, 4)])
def test_wired_float32_and_mixed_memory(batch, steps):
    torch.manual_seed(batch)
    ref = ncps_torch.CfC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3), mixed_memory=True)
    ours = CfC.from_ncps(ref)
    _assert_equal(ref, ours, torch.randn(batch, steps, 6), atol=1e-5)
    ref = ncps_torch.CfC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3), return_sequences=False, batch_first=False)
    _assert_equal(ref, CfC.from_ncps(ref), torch.randn(steps, batch, 6), atol=1e-5)


def test_same_seed_same_init_and_masks_are_buffers():
    for mode in ("default", "pure"):
        torch.manual_seed(3)
        ref = ncps_torch.CfC(10, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3), mode=mode, mixed_memory=True)
        torch.manual_seed(3)
        ours = CfC(10, W.ncp(5, 4, 2, 3, 2, 5, 3), mode=mode, mixed_memory=True)
        sd = ours.state_dict()
        assert set(sd) == set(ref.state_dict())
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(sd[k], v, atol=0, rtol=0)
    assert "rnn_cell.layer_0.sparsity_mask" in dict(ours.named_buffers())
    assert all("sparsity_mask" not in n for n, _ in ours.named_parameters())


def test_wired_layers_and_masks():
    wiring = W.ncp(12, 6, 1, 6, 4, 6, 6, input_dim=32)
    cfc = CfC(32, wiring)
    cells = [cfc.rnn_cell.layer_0, cfc.rnn_cell.layer_1, cfc.rnn_cell.layer_2]
    assert [c.hidden_size for c in cells] == [12, 6, 1]
    assert [c.input_size for c in cells] == [32, 12, 6]
    # inter layer: sensory synapses + a dense own-state block (as ncps)
    m = cells[0].sparsity_mask
    assert m.shape == (12, 44) and m[:, :32].sum() == 192 and m[:, 32:].sum() == 144
    y, h = cfc(torch.randn(2, 3, 32))
    assert y.shape == (2, 3, 1) and h.shape == (2, 19)


def test_per_sample_timespans():
    torch.manual_seed(0)
    ref = ncps_torch.CfC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3)).double()
    ours = CfC.from_ncps(ref)
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    ts = torch.rand(3, 4, dtype=torch.float64) + 0.5
    y, h = ours(x, timespans=ts.unsqueeze(-1))
    for i in range(3):
        y_ref, h_ref = ref(x[i : i + 1], timespans=ts[i : i + 1])
        torch.testing.assert_close(y[i], y_ref[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(h[i], h_ref[0], atol=1e-12, rtol=0)
    cell = CfCCell(6, 4, mode="pure")
    a, _ = cell(x[:, 0].float(), torch.zeros(3, 4), torch.full((3, 1), 0.3))
    b, _ = cell(x[:, 0].float(), torch.zeros(3, 4), 0.3)
    torch.testing.assert_close(a, b)


def test_bad_options():
    with pytest.raises(ConfigError, match="mode must be one of"):
        CfC(4, 8, mode="fast")
    with pytest.raises(ConfigError, match="backbone_units cannot be used with a wiring"):
        CfC(4, W.ncp(5, 4, 2, 3, 2, 5, 3), backbone_units=8)
    with pytest.raises(ConfigError, match=r"input_dim=7 .* 4 input features"):
        CfC(4, W.ncp(5, 4, 2, 3, 2, 5, 3, input_dim=7))
    with pytest.raises(ConfigError, match="backbone_activation"):
        CfC(4, 8, activation="swishy")
