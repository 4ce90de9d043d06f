"""LTC: equal to ncps 1.0.1 (outputs, states, gradients) for any wiring and both constraint modes."""

import pytest
import torch

from archlab.errors import ConfigError
from archlab.layers import wirings as W
from archlab.layers.ltc import LTC, LTCCell, _SensoryFn, _UnfoldDenseFn, _UnfoldFn

ncps_torch = pytest.importorskip("ncps.torch")
ncps_wirings = pytest.importorskip("ncps.wirings")

WIRINGS = {
    "ncp_original": (lambda: ncps_wirings.NCP(12, 6, 1, 6, 4, 6, 6), 32),
    "ncp_small": (lambda: ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3, seed=3), 7),
    "auto_ncp": (lambda: ncps_wirings.AutoNCP(16, 3, seed=1), 10),
    "fully_connected": (lambda: ncps_wirings.FullyConnected(8, 2), 5),
    "random": (lambda: ncps_wirings.Random(9, 3, 0.6), 6),
    "units": (lambda: 7, 4),
}


def _perturbed(module, seed=0):
    """Move every trainable parameter off its init so no gradient is trivially zero or one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _run(module, x, **kw):
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y, h = module(x, **kw)
    hh = h if isinstance(h, torch.Tensor) else h[0] + 2 * h[1]
    (y.square().sum() + hh.square().sum() + y.sum()).backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return y.detach(), (h.detach() if isinstance(h, torch.Tensor) else tuple(t.detach() for t in h)), x.grad, grads


def _assert_equal(a, b, atol, rtol=0.0):
    ya, ha, gxa, ga = a
    yb, hb, gxb, gb = b
    assert set(ga) == set(gb)
    pairs = [(ya, yb), (gxa, gxb)] + [(ga[k], gb[k]) for k in ga]
    pairs += list(zip(ha, hb)) if isinstance(ha, tuple) else [(ha, hb)]
    for u, v in pairs:
        scale = max(1.0, float(u.abs().max()))
        torch.testing.assert_close(v, u, atol=atol * scale, rtol=rtol)


@pytest.mark.parametrize("name", list(WIRINGS))
@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("kernel", ["auto", "dense", "gather", "unfused"])
def test_equal_to_ncps_float64(name, implicit, kernel):
    make, inputs = WIRINGS[name]
    torch.manual_seed(hash((name, implicit)) % 1000)
    ref = _perturbed(ncps_torch.LTC(inputs, make(), implicit_param_constraints=implicit).double())
    ours = LTC.from_ncps(ref, fused=kernel != "unfused")
    if kernel in ("dense", "gather"):
        ours.rnn_cell.kernel = kernel
    x = torch.randn(3, 5, inputs, dtype=torch.float64)
    _assert_equal(_run(ref, x), _run(ours, x), atol=1e-10)


@pytest.mark.parametrize("batch,steps,seed", [(1, 1, 0), (4, 7, 1), (9, 3, 2)])
@pytest.mark.parametrize("implicit", [True, False])
def test_equal_to_ncps_float32_within_1e5(batch, steps, seed, implicit):
    torch.manual_seed(seed)
    ref = _perturbed(ncps_torch.LTC(32, ncps_wirings.NCP(12, 6, 1, 6, 4, 6, 6, seed=seed), implicit_param_constraints=implicit), seed)
    ours = LTC.from_ncps(ref)
    x = torch.randn(batch, steps, 32)
    _assert_equal(_run(ref, x), _run(ours, x), atol=1e-5)


@pytest.mark.parametrize("keep", [True, False])
def test_gather_kernel_keeps_or_recomputes_activations(monkeypatch, keep):
    import archlab.layers.ltc as ltc_module

    monkeypatch.setattr(ltc_module, "_KEEP_FLOATS", 1 << 30 if keep else 0)
    monkeypatch.setattr(ltc_module, "_BLOCK", 200)  # several unfolds per recompute window
    torch.manual_seed(0)
    ref = _perturbed(ncps_torch.LTC(7, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3, seed=3)).double())
    ours = LTC.from_ncps(ref)
    ours.rnn_cell.kernel = "gather"
    x = torch.randn(3, 4, 7, dtype=torch.float64)
    _assert_equal(_run(ref, x), _run(ours, x), atol=1e-10)


def test_custom_ncp_512_gather_kernel_equal():
    torch.manual_seed(0)
    ref = _perturbed(ncps_torch.LTC(512, ncps_wirings.NCP(48, 24, 4, 24, 16, 24, 24)).double())
    ours = LTC.from_ncps(ref)
    assert ours.rnn_cell.synapse_count == int(ref.rnn_cell.sparsity_mask.sum()) > 800
    assert ours.rnn_cell.sensory_synapse_count == 12288  # 512 inputs x fan-out 24
    x = torch.randn(2, 3, 512, dtype=torch.float64)
    _assert_equal(_run(ref, x), _run(ours, x), atol=1e-10)


def test_same_seed_same_init_and_state_dict_names():
    torch.manual_seed(7)
    ref = ncps_torch.LTC(10, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3), mixed_memory=True)
    torch.manual_seed(7)
    ours = LTC(10, W.ncp(5, 4, 2, 3, 2, 5, 3), mixed_memory=True)
    sd_ref, sd_ours = ref.state_dict(), ours.state_dict()
    assert set(sd_ref) == set(sd_ours)
    for k in sd_ref:
        torch.testing.assert_close(sd_ours[k], sd_ref[k], atol=0, rtol=0)
    # masks are buffers, not (frozen) parameters
    names = dict(ours.named_parameters())
    assert "rnn_cell.sparsity_mask" not in names and "rnn_cell.sensory_sparsity_mask" not in names
    assert "rnn_cell.sparsity_mask" in dict(ours.named_buffers())


def test_mixed_memory_return_sequences_batch_first_unbatched():
    torch.manual_seed(0)
    ref = _perturbed(ncps_torch.LTC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3), mixed_memory=True))
    ours = LTC.from_ncps(ref)
    x = torch.randn(3, 5, 6)
    _assert_equal(_run(ref, x), _run(ours, x), atol=1e-5)
    for kw in ({"return_sequences": False}, {"batch_first": False}):
        ref2 = ncps_torch.LTC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3), **kw)
        ours2 = LTC.from_ncps(ref2)
        _assert_equal(_run(ref2, x), _run(ours2, x), atol=1e-5)
    y_ref, h_ref = ref2(x[0])  # unbatched (T, F)
    y, h = ours2(x[0])
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=0)


def test_initial_state_is_used():
    ref = ncps_torch.LTC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3))
    ours = LTC.from_ncps(ref)
    x, h0 = torch.randn(2, 4, 6), torch.randn(2, 11)
    for a, b in zip(ref(x, h0), ours(x, h0)):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", ["BT", "BT1"])
def test_per_sample_timespans(shape):
    """(B, T) elapsed times work (ncps squeezes them to (B,) and breaks for B > 1)."""
    torch.manual_seed(0)
    ref = _perturbed(ncps_torch.LTC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3)).double())
    ours = LTC.from_ncps(ref)
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    ts = torch.rand(3, 4, dtype=torch.float64) + 0.5
    y, h = ours(x, timespans=ts if shape == "BT" else ts.unsqueeze(-1))
    for i in range(3):  # ncps is right for one sample at a time
        y_ref, h_ref = ref(x[i : i + 1], timespans=ts[i : i + 1])
        torch.testing.assert_close(y[i], y_ref[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(h[i], h_ref[0], atol=1e-10, rtol=0)
    # a uniform float equals a tensor of that value
    y1, _ = ours(x, timespans=0.7)
    y2, _ = ours(x, timespans=torch.full((3, 4), 0.7, dtype=torch.float64))
    torch.testing.assert_close(y1, y2)
    with pytest.raises(ConfigError, match="timespans must have shape"):
        ours(x, timespans=torch.ones(2, 4, dtype=torch.float64))


def test_cell_step_equal_with_per_sample_elapsed_time():
    torch.manual_seed(0)
    wiring = ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3)
    ref = _perturbed(ncps_torch.LTCCell(wiring, in_features=6).double())
    ours = LTCCell(W.Wiring.from_ncps(wiring)).double()
    ours.load_state_dict(ref.state_dict())
    x, h = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 11, dtype=torch.float64)
    out, new = ours(x, h)
    out_ref, new_ref = ref(x, h)
    torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(new, new_ref, atol=1e-10, rtol=0)
    dt = torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64)
    out, _ = ours(x, h, dt)
    for i in range(3):
        o_ref, _ = ref(x[i : i + 1], h[i : i + 1], float(dt[i]))
        torch.testing.assert_close(out[i], o_ref[0], atol=1e-10, rtol=0)


def test_apply_weight_constraints_matches_ncps():
    torch.manual_seed(0)
    ref = ncps_torch.LTC(6, ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3), implicit_param_constraints=False)
    with torch.no_grad():
        ref.rnn_cell.w.sub_(0.5)
        ref.rnn_cell.cm.sub_(0.5)
    ours = LTC.from_ncps(ref)
    ref.rnn_cell.apply_weight_constraints()
    ours.rnn_cell.apply_weight_constraints()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v)
    assert (ours.rnn_cell.w >= 0).all()


def test_loading_another_mask_updates_the_synapse_layout():
    a = LTC(6, W.ncp(5, 4, 2, 3, 2, 5, 3, seed=1))
    b = LTC(6, W.ncp(5, 4, 2, 3, 2, 5, 3, seed=2))
    x = torch.randn(2, 3, 6)
    b(x)  # caches b's layout
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x)[0], a(x)[0])


def test_fused_kernels_gradcheck():
    """The hand-written backward passes agree with finite differences (float64)."""
    gen = torch.Generator().manual_seed(0)

    def rnd(*shape, lo=-1.0, hi=1.0):
        return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).requires_grad_()

    t_len, n, b, r, k, e, u, s = 2, 5, 3, 3, 2, 6, 2, 4
    src = torch.tensor([0, 1, 2, 4, 3, 0])
    cin = torch.stack((rnd(t_len, n, b), rnd(t_len, n, b, lo=2.0, hi=3.0)), 2).detach().requires_grad_()
    args = (rnd(n, b), cin, rnd(t_len, n, 1, lo=0.5, hi=1.0), src, rnd(e, 1), rnd(e, 1), rnd(r, 2, k, lo=0.1, hi=0.5), u)
    assert torch.autograd.gradcheck(_UnfoldFn.apply, args)
    cin2 = cin.detach().transpose(1, 2).reshape(t_len, 2 * n, b).requires_grad_()
    gsig = torch.zeros(e, n, dtype=torch.float64).index_put((torch.arange(e), src), rnd(e)).detach().requires_grad_()
    wcat = (rnd(2 * n, e, lo=0.0, hi=0.3)).detach().requires_grad_()
    args = (rnd(n, b), cin2, rnd(t_len, n, b, lo=0.5, hi=1.0), gsig, rnd(e, 1), wcat, u)
    assert torch.autograd.gradcheck(_UnfoldDenseFn.apply, args)
    x = rnd(s, 7)
    sens = (x, torch.tensor([0, 3, 1, 1, 2, 0]), rnd(6, 1), rnd(6, 1), rnd(3, 2, 2))
    assert torch.autograd.gradcheck(_SensoryFn.apply, (*sens, [2, 1, 2]))


def test_bad_input_sizes():
    wiring = W.ncp(12, 6, 1, 6, 4, 6, 6, input_dim=32)
    with pytest.raises(ConfigError, match=r"input_dim=32.*64"):
        LTC(64, wiring)
    ltc = LTC(32, wiring)
    with pytest.raises(ConfigError, match="expects 32 input features.*got 31"):
        ltc(torch.randn(2, 3, 31))
    with pytest.raises(ConfigError, match="ode_unfolds"):
        LTC(32, wiring, ode_unfolds=0)
    with pytest.raises(ConfigError, match="units must be a positive int or a Wiring"):
        LTC(4, 0)
