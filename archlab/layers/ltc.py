"""Liquid Time-Constant (LTC) cells: exact ``ncps`` numerics, computed on real synapses only.

References:
    Hasani, Lechner et al., "Liquid Time-constant Networks", AAAI 2021; Lechner et al., "Neural
    circuit policies enabling auditable autonomy", Nature Machine Intelligence 2020; the ``ncps``
    package 1.0.1 (``ncps.torch.LTCCell``/``LTC``), whose parameters, initialisation, state-dict
    names and outputs these modules reproduce (``LTC.from_ncps``).

One LTC step with input ``x`` (B, S), state ``v`` (B, N), elapsed time ``dt`` and ``U`` unfolds of
the semi-implicit Euler solver (``pos`` = softplus with implicit constraints, identity otherwise)::

    x  = x * input_w + input_b
    As = pos(sensory_w) * sigmoid(sensory_sigma * (x[src] - sensory_mu))     # per sensory synapse
    Ns = sum_src As * sensory_erev ;  Ds = sum_src As
    repeat U times:
        A = pos(w) * sigmoid(sigma * (v[src] - mu))                         # per synapse
        v = (pos(cm) U/dt * v + pos(gleak) vleak + sum_src A erev + Ns)
            / (pos(cm) U/dt + pos(gleak) + sum_src A + Ds + eps)
    out = v[:motor] * output_w + output_b

How this differs from ``ncps`` in computation (not in results, equal within float rounding):

* only real synapses are computed: synapses are grouped by target neuron and padded to the largest
  fan-in (``ncps`` multiplies dense (B, S, N) and (B, N, N) tensors of which ~8 % are synapses);
* the sensory term does not depend on the state, so it is computed once for all time steps;
* the ``T x U`` unfold loop runs inside one ``torch.autograd.Function`` with a hand-written
  backward (5-6 ops per unfold and direction instead of ~40 recorded ones). Small circuits use two
  small dense products per unfold (:class:`_UnfoldDenseFn`), larger ones gathers and batched
  products over the padded synapse groups (:class:`_UnfoldFn`); the sensory kernel
  (:class:`_SensoryFn`) works in cache-sized blocks and recomputes its activations in the backward
  pass. ``fused=False`` runs the same math with ordinary autograd ops (slower; supports double
  backward).
* per-sample elapsed times of shape (B, 1) / (B, T) work (broken in ``ncps`` for B > 1).

Speed (``bench/ltc.py``, fwd + bwd, batch 64, 16 steps, 2 threads, 2-core Xeon VM): about 5x ncps
for LTC(32, original NCP) and about 5x for LTC(512, seed 000's custom NCP); see the README table.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.layers.recurrent import (
    finish_sequence,
    initial_state,
    resolve_timespans,
    to_batch_first,
    wiring_from_ncps,
)
from archlab.layers.wirings import Wiring, fully_connected

__all__ = ["LTCCell", "LTC", "LSTMCell"]

_MAPPINGS = ("affine", "linear", None)


# ---------------------------------------------------------------------- synapse layout


def _grouped_by_target(mask: torch.Tensor, col_pos: torch.Tensor, row_pos: torch.Tensor | None):
    """Synapses of ``mask`` (src, dst) grouped by target, padded to the largest fan-in.

    Args:
        mask: ``(S, N)`` synapse mask ``[src, dst]`` (non-zero = synapse).
        col_pos: ``(N,)`` position of each target neuron in the state layout.
        row_pos: ``(S,)`` position of each source in the gathered tensor (``None`` = identity).

    Returns:
        ``rows`` (R,) state positions of the targets with synapses, ``src`` (R*K,) source positions
        to gather, ``src_id``/``dst_id`` (R, K) original ids to gather parameters, ``valid`` (R, K).
        A mask without synapses gives one padded (invalid) synapse so the shapes stay non-empty.
    """
    dst, src = torch.nonzero(mask.t() != 0, as_tuple=True)  # sorted by dst, then src
    n_out = mask.shape[1]
    count = torch.bincount(dst, minlength=n_out)
    has = count > 0
    # targets in state-layout order, so the rows are ascending positions
    targets = torch.nonzero(has).flatten()
    targets = targets[torch.argsort(col_pos[targets])]
    if targets.numel() == 0:
        targets = torch.argsort(col_pos)[:1]
    k = max(int(count.max()) if count.numel() else 0, 1)
    r = targets.numel()
    slot_of_target = torch.full((n_out,), -1, dtype=torch.long)
    slot_of_target[targets] = torch.arange(r)
    start = torch.cumsum(count, 0) - count
    within = torch.arange(dst.numel()) - start[dst]
    src_id = torch.zeros(r, k, dtype=torch.long)
    valid = torch.zeros(r, k, dtype=torch.bool)
    src_id[slot_of_target[dst], within] = src
    valid[slot_of_target[dst], within] = True
    dst_id = targets[:, None].expand(r, k).contiguous()
    gather_pos = src_id if row_pos is None else row_pos[src_id]
    return col_pos[targets], gather_pos.reshape(-1), src_id, dst_id, valid


class _Layout:
    """Index tensors of one cell for one device (recomputed when a mask changes)."""

    def __init__(self, mask: torch.Tensor, sensory_mask: torch.Tensor, device: torch.device):
        mask, sensory_mask = mask.detach().cpu(), sensory_mask.detach().cpu()
        n = mask.shape[0]
        # State layout: neurons with incoming synapses first (a contiguous block the unfold loop
        # updates), the others after; `perm[i]` = neuron at position i.
        has_in = (mask != 0).any(0)
        self.perm = torch.argsort((~has_in).to(torch.int8), stable=True)
        self.pos = torch.empty(n, dtype=torch.long)
        self.pos[self.perm] = torch.arange(n)
        rows, src, src_id, dst_id, valid = _grouped_by_target(mask, self.pos, self.pos)
        self.n_rows = int(rows.numel())  # rows are 0..n_rows-1 by construction (or 1 padded row)
        self.rec = {"src": src, "src_id": src_id, "dst_id": dst_id, "valid": valid}
        srows, ssrc, ssrc_id, sdst_id, svalid = _grouped_by_target(sensory_mask, self.pos, None)
        self.sens = {"rows": srows, "src": ssrc, "src_id": ssrc_id, "dst_id": sdst_id, "valid": svalid}
        self.sens_fanin = [max(int(c), 1) for c in svalid.sum(1)]  # real synapses per sensory row
        for d in (self.rec, self.sens):
            for key in d:
                d[key] = d[key].to(device)
        self.perm, self.pos = self.perm.to(device), self.pos.to(device)


# ---------------------------------------------------------------------- fused kernels


#: floats per block and intra-op thread in the fused kernels: large enough to keep the per-op
#: overhead low, small enough to stay near the cache and far below the size at which the allocator
#: maps fresh pages each time. Measured on a 2-core Xeon (LTC(512, ncp_custom), batch 64, T 16):
#: 256k floats/thread 181 ms vs 64k 307 ms (1 thread), 154 vs 226 ms (2 threads).
_BLOCK = 1 << 18


def _block_floats() -> int:
    return _BLOCK * max(1, torch.get_num_threads())


def _blocks(fanin: list[int], k: int, width: int) -> tuple[int, list[tuple[slice, slice, int]]]:
    """Column-block width and (row slice, synapse slice, synapses per row) blocks of about
    :func:`_block_floats` floats. A one-row block skips the row's padding (its real fan-in)."""
    r = len(fanin)
    block = _block_floats()
    cols = max(1, min(width, block // k))
    cols = -(-width // -(-width // cols))  # equal column blocks (no small tail block)
    rows = max(1, min(r, block // (k * cols)))
    if rows == 1:
        return cols, [(slice(i, i + 1), slice(i * k, i * k + fanin[i]), fanin[i]) for i in range(r)]
    return cols, [(slice(r0, min(r0 + rows, r)), slice(r0 * k, min(r0 + rows, r) * k), k) for r0 in range(0, r, rows)]


class _SensoryFn(torch.autograd.Function):
    """Sensory currents of all time steps at once, in cache-sized blocks of (target rows, columns).

    The activations are recomputed in the backward pass instead of being stored (cheaper than
    writing and re-reading them through memory).

    Shape:
        x (S, L) mapped inputs (L = T*B), src (R*K,), sig/cz (R*K, 1), coef (R, 2, K), fanin
        (R real fan-ins, a list) -> (R, 2, L): numerator (index 0) and denominator (index 1)
        currents per target row.
    """

    @staticmethod
    def forward(ctx, x, src, sig, cz, coef, fanin):
        r, _, k = coef.shape
        width = x.shape[1]
        out = x.new_empty(r, 2, width)
        cols, blocks = _blocks(fanin, k, width)
        for c0 in range(0, width, cols):
            xb = x[:, c0 : c0 + cols].contiguous()  # (S, c)
            ob = x.new_empty(r, 2, xb.shape[1])  # (R, 2, c)
            for rs, es, kb in blocks:
                z = xb.index_select(0, src[es]).mul_(sig[es]).add_(cz[es])  # (rk, c)
                torch.bmm(coef[rs, :, :kb], z.sigmoid_().view(-1, kb, xb.shape[1]), out=ob[rs])  # (r, 2, c)
            out[:, :, c0 : c0 + cols] = ob
        ctx.save_for_backward(x, src, sig, cz, coef)
        ctx.fanin = fanin
        return out

    @staticmethod
    def backward(ctx, grad):
        x, src, sig, cz, coef = ctx.saved_tensors
        r, _, k = coef.shape
        width = x.shape[1]
        need_x, _, need_sig, need_cz, need_coef, _ = ctx.needs_input_grad
        gx = torch.empty_like(x) if need_x else None
        gsig, gcz, gcoef = torch.zeros_like(sig), torch.zeros_like(cz), torch.zeros_like(coef)
        coef_t = coef.transpose(1, 2).contiguous()  # (R, K, 2)
        cols, blocks = _blocks(ctx.fanin, k, width)
        for c0 in range(0, width, cols):
            xb = x[:, c0 : c0 + cols].contiguous()  # (S, c)
            c = xb.shape[1]
            gb = grad[:, :, c0 : c0 + cols].contiguous()  # (R, 2, c)
            gxb = torch.zeros_like(xb) if need_x else None
            for rs, es, kb in blocks:
                g = xb.index_select(0, src[es])  # (rk, c)
                s = torch.mul(g, sig[es]).add_(cz[es]).sigmoid_()  # (rk, c)
                gr = gb[rs]  # (r, 2, c)
                if need_coef:
                    gcoef[rs, :, :kb] += torch.bmm(gr, s.view(-1, kb, c).transpose(1, 2))  # (r, 2, kb)
                gs = torch.bmm(coef_t[rs, :kb], gr).view_as(s)  # (rk, c)
                gz = torch.ops.aten.sigmoid_backward.grad_input(gs, s, grad_input=gs)  # (rk, c)
                gcz[es] += gz.sum(1, keepdim=True)
                if need_sig:
                    gsig[es] += torch.linalg.vecdot(g, gz).unsqueeze(1)
                if need_x:
                    gxb.index_add_(0, src[es], gz.mul_(sig[es]))
            if need_x:
                gx[:, c0 : c0 + cols] = gxb
        return gx, None, (gsig if need_sig else None), (gcz if need_cz else None), (gcoef if need_coef else None), None


def _sensory_autograd(x, src, sig, cz, coef, fanin=None):
    """Same as :class:`_SensoryFn` with ordinary autograd ops."""
    r, _, k = coef.shape
    s = torch.sigmoid(torch.index_select(x, 0, src) * sig + cz)  # (R*K, L)
    return torch.bmm(coef, s.view(r, k, -1))  # (R, 2, L)


class _UnfoldFn(torch.autograd.Function):
    """The ``T x U`` semi-implicit Euler unfolds of the recurrent part, fused.

    The state layout is transposed (neurons first) and permuted so that the ``R`` neurons with
    incoming synapses are the first rows. Only the states are stored: the backward pass recomputes
    the synapse activations (for windows of unfolds at once) and accumulates the parameter
    gradients as it goes, so no buffer grows with ``T x U x synapses``.

    Shape:
        v0 (N, B); cin (T, N, 2, B) constant numerator/denominator terms per step; cmt (T, N, B|1)
        the capacitance term pos(cm) U / dt; src (R*K,); sig, cz (R*K, 1); coef (R, 2, K)
        -> states after every step (T, N, B).
    """

    @staticmethod
    def forward(ctx, v0, cin, cmt, src, sig, cz, coef, unfolds):
        t_len, n, _, b = cin.shape
        r, _, k = coef.shape
        steps = t_len * unfolds
        vs = v0.new_empty(steps + 1, n, b)  # state before/after each unfold
        vs[0] = v0
        pq = v0.new_empty(t_len, unfolds, n, 2, b)  # numerator / denominator of each unfold
        pq[:, :, r:] = cin[:, None, r:]  # rows without synapses: constant within a step
        pq = pq.view(steps, n, 2, b)
        v_list, pq_top, pq_num, pq_den = vs.unbind(0), pq[:, :r].unbind(0), pq[:, :, 0].unbind(0), pq[:, :, 1].unbind(0)
        # Keep the activations for the backward pass when they fit the allocator's heap (below its
        # 32 MB mmap limit, reused without page faults); recompute them otherwise.
        keep = steps * r * k * b <= _KEEP_FLOATS
        s_all = v0.new_empty(steps if keep else 1, r * k, b)  # synapse activations
        s_list = s_all.unbind(0)
        i = 0
        for t in range(t_len):
            cin_top, cm = cin[t, :r], cmt[t]
            for _ in range(unfolds):
                v = v_list[i]
                s = torch.index_select(v, 0, src, out=s_list[i if keep else 0]).mul_(sig).add_(cz).sigmoid_()  # (R*K, B)
                torch.baddbmm(cin_top, coef, s.view(r, k, b), out=pq_top[i])  # (R, 2, B)
                torch.div(torch.addcmul(pq_num[i], cm, v), pq_den[i], out=v_list[i + 1])  # (N, B)
                i += 1
        ctx.save_for_backward(vs, pq, cmt, src, sig, cz, coef, s_all if keep else None)
        ctx.unfolds = unfolds
        ctx.cmt_shape = cmt.shape
        return vs[unfolds::unfolds]

    @staticmethod
    def backward(ctx, grad_states):
        vs, pq, cmt, src, sig, cz, coef, s_all = ctx.saved_tensors
        unfolds = ctx.unfolds
        steps, n, _, b = pq.shape
        t_len = steps // unfolds
        r, _, k = coef.shape
        need_v0, need_cin, need_cmt, _, need_sig, need_cz, need_coef, _ = ctx.needs_input_grad
        # coef^T with the denominator row negated: g_s = coef_num^T gP - coef_den^T (gP v')
        coef_t = torch.stack((coef[:, 0], -coef[:, 1]), 2)  # (R, K, 2)
        gpq = vs.new_empty(steps, n, 2, b)  # [gP, gP v'] (the denominator's grad is minus the 2nd)
        gcoef = torch.zeros_like(coef)
        acc_cz = vs.new_zeros(r * k, b)  # sum over unfolds of dL/dz
        acc_sig = vs.new_zeros(r * k, b) if need_sig else None  # sum of dL/dz * v[src]
        v_list, pq_den = vs.unbind(0), pq[:, :, 1].unbind(0)
        gp_list, gq_list, gtop = gpq[:, :, 0].unbind(0), gpq[:, :, 1].unbind(0), gpq[:, :r].unbind(0)
        window = max(1, min(steps, _block_floats() // (r * k * b)))
        gv = vs.new_zeros(n, b)
        sig_, cz_ = sig.view(1, -1, 1), cz.view(1, -1, 1)
        for i1 in range(steps, 0, -window):
            i0 = max(0, i1 - window)
            g_w = vs[i0:i1].index_select(1, src)  # (w, R*K, B) gathered states
            s_w = s_all[i0:i1] if s_all is not None else torch.mul(g_w, sig_).add_(cz_).sigmoid_()  # (w, R*K, B)
            for i in range(i1 - 1, i0 - 1, -1):
                if (i + 1) % unfolds == 0 and grad_states is not None:
                    gv = gv + grad_states[i // unfolds]
                gp = torch.div(gv, pq_den[i], out=gp_list[i])  # (N, B)
                torch.mul(gp, v_list[i + 1], out=gq_list[i])
                s_i = s_w[i - i0]  # (R*K, B)
                gs = torch.bmm(coef_t, gtop[i]).view(r * k, b)  # (R*K, B)
                gz = torch.ops.aten.sigmoid_backward.grad_input(gs, s_i, grad_input=gs)  # dL/dz
                if need_coef:
                    gcoef.baddbmm_(gtop[i], s_i.view(r, k, b).transpose(1, 2))  # (R, 2, K)
                acc_cz += gz
                if need_sig:
                    acc_sig.addcmul_(gz, g_w[i - i0])
                gv = torch.mul(gp, cmt[i // unfolds]).index_add_(0, src, gz.mul_(sig))  # (N, B)
        gsig = acc_sig.sum(1, keepdim=True) if need_sig else None  # (R*K, 1)
        gcz = acc_cz.sum(1, keepdim=True) if need_cz else None  # (R*K, 1)
        gcin = gcmt = None
        if need_cin:
            gcin = gpq.view(t_len, unfolds, n, 2, b).sum(1)  # (T, N, 2, B)
            gcin[:, :, 1].neg_()
        if need_cmt:
            gcmt = (gpq[:, :, 0] * vs[:-1]).view(t_len, unfolds, n, b).sum(1)  # (T, N, B)
            if ctx.cmt_shape[2] == 1:
                gcmt = gcmt.sum(2, keepdim=True)
        if need_coef:
            gcoef[:, 1].neg_()
        return (
            gv if need_v0 else None,
            gcin,
            gcmt,
            None,
            gsig if need_sig else None,
            gcz if need_cz else None,
            gcoef if need_coef else None,
            None,
        )


class _UnfoldDenseFn(torch.autograd.Function):
    """:class:`_UnfoldFn` for small circuits: gathers and sums as two small dense matrix products.

    With few synapses the cost is the number of ops, not their size: ``z = G v + cz`` (``G`` holds
    sigma at (synapse, source)) and ``[P; Q] = cin + W s`` (``W`` holds the numerator and
    denominator weights at (target, synapse)) make an unfold five ops.

    Shape:
        v0 (N, B); cin (T, 2N, B); cmt (T, N, B|1); gsig (E, N); cz (E, 1); wcat (2N, E)
        -> states after every step (T, N, B).
    """

    @staticmethod
    def forward(ctx, v0, cin, cmt, gsig, cz, wcat, unfolds):
        t_len, n2, b = cin.shape
        n, e = n2 // 2, cz.shape[0]
        steps = t_len * unfolds
        vs = v0.new_empty(steps + 1, n, b)
        vs[0] = v0
        s_all = v0.new_empty(steps, e, b)
        pq = v0.new_empty(steps, n2, b)
        czb = cz.expand(e, b).contiguous()  # (E, B): addmm copies its input; keep it contiguous
        v_list, s_list, pq_list = vs.unbind(0), s_all.unbind(0), pq.unbind(0)
        num_list, den_list = pq[:, :n].unbind(0), pq[:, n:].unbind(0)
        i = 0
        for t in range(t_len):
            c, cm = cin[t], cmt[t]
            for _ in range(unfolds):
                v = v_list[i]
                torch.addmm(czb, gsig, v, out=s_list[i]).sigmoid_()  # (E, B)
                torch.addmm(c, wcat, s_list[i], out=pq_list[i])  # (2N, B)
                torch.div(torch.addcmul(num_list[i], cm, v), den_list[i], out=v_list[i + 1])  # (N, B)
                i += 1
        ctx.save_for_backward(vs, s_all, pq, cmt, gsig, wcat)
        ctx.unfolds, ctx.cmt_shape = unfolds, cmt.shape
        return vs[unfolds::unfolds]

    @staticmethod
    def backward(ctx, grad_states):
        vs, s_all, pq, cmt, gsig, wcat = ctx.saved_tensors
        unfolds = ctx.unfolds
        steps, n2, b = pq.shape
        n, t_len = n2 // 2, steps // unfolds
        need_v0, need_cin, need_cmt, need_gsig, need_cz, need_wcat, _ = ctx.needs_input_grad
        # the denominator's gradient is -(gP v'); fold the sign into the transposed weights
        wcat_t = torch.cat((wcat[:n], -wcat[n:])).t().contiguous()  # (E, 2N)
        gsig_t = gsig.t().contiguous()  # (N, E)
        gpq = vs.new_empty(steps, n2, b)  # [gP; gP v']
        gz_all = torch.addcmul(s_all, s_all, s_all, value=-1.0)  # sigmoid'(z), overwritten by dL/dz
        gv = vs.new_zeros(n, b)
        v_list, den_list, gz_list = vs.unbind(0), pq[:, n:].unbind(0), gz_all.unbind(0)
        g_list, gp_list, gq_list = gpq.unbind(0), gpq[:, :n].unbind(0), gpq[:, n:].unbind(0)
        cm_list = cmt.unbind(0)
        for i in range(steps - 1, -1, -1):
            if (i + 1) % unfolds == 0 and grad_states is not None:
                gv = gv + grad_states[i // unfolds]
            gp = torch.div(gv, den_list[i], out=gp_list[i])  # (N, B)
            torch.mul(gp, v_list[i + 1], out=gq_list[i])
            gz = gz_list[i].mul_(torch.mm(wcat_t, g_list[i]))  # (E, B)
            gv = torch.addmm(torch.mul(gp, cm_list[i // unfolds]), gsig_t, gz)  # (N, B)
        gcin = gcmt = ggsig = gcz = gwcat = None
        if need_cin:
            gcin = gpq.view(t_len, unfolds, n2, b).sum(1)  # (T, 2N, B)
            gcin[:, n:].neg_()
        if need_cmt:
            gcmt = (gpq[:, :n] * vs[:-1]).view(t_len, unfolds, n, b).sum(1)  # (T, N, B)
            if ctx.cmt_shape[2] == 1:
                gcmt = gcmt.sum(2, keepdim=True)
        if need_wcat:
            gwcat = torch.bmm(gpq, s_all.transpose(1, 2)).sum(0)  # (2N, E)
            gwcat[n:].neg_()
        if need_gsig:
            ggsig = torch.bmm(gz_all, vs[:-1].transpose(1, 2)).sum(0)  # (E, N)
        if need_cz:
            gcz = gz_all.sum((0, 2)).unsqueeze(1)  # (E, 1)
        return (gv if need_v0 else None), gcin, gcmt, ggsig, gcz, gwcat, None


#: the gather kernel keeps its activations for the backward pass up to this many floats (32 MB).
_KEEP_FLOATS = 1 << 23

#: circuits with (padded synapses x neurons) up to this size use the dense-product kernel.
_DENSE_LIMIT = 1 << 14


def _unfold_autograd(v0, cin, cmt, src, sig, cz, coef, unfolds):
    """Same as :class:`_UnfoldFn` with ordinary autograd ops."""
    t_len, n, _, b = cin.shape
    r, _, k = coef.shape
    v, out = v0, []
    for t in range(t_len):
        for _ in range(unfolds):
            s = torch.sigmoid(torch.index_select(v, 0, src) * sig + cz)  # (R*K, B)
            top = cin[t, :r] + torch.bmm(coef, s.view(r, k, b))  # (R, 2, B)
            pq = torch.cat([top, cin[t, r:]], 0)  # (N, 2, B)
            v = (pq[:, 0] + cmt[t] * v) / pq[:, 1]  # (N, B)
        out.append(v)
    return torch.stack(out)  # (T, N, B)


# ---------------------------------------------------------------------- cells


class LSTMCell(nn.Module):
    """The memory cell of ``mixed_memory`` (``ncps.torch.lstm.LSTMCell``, forget-gate bias +1).

    Shape:
        - Input: ``x (B, input_size)``, state ``(h, c)`` each ``(B, hidden_size)``
        - Output: ``(h', c')``
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.input_map = nn.Linear(input_size, 4 * hidden_size, bias=True)
        self.recurrent_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        for w in self.input_map.parameters():
            if w.dim() == 1:
                nn.init.uniform_(w, -0.1, 0.1)
            else:
                nn.init.xavier_uniform_(w)
        nn.init.orthogonal_(self.recurrent_map.weight)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        z = self.input_map(x) + self.recurrent_map(h)  # (B, 4H)
        i, ig, fg, og = z.chunk(4, 1)
        c = c * torch.sigmoid(fg + 1.0) + torch.tanh(i) * torch.sigmoid(ig)  # (B, H)
        return torch.tanh(c) * torch.sigmoid(og), c


def _as_wiring(units: int | Wiring, in_features: int | None) -> Wiring:
    if isinstance(units, Wiring):
        return units.built_for(in_features)
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ConfigError(f"units must be a positive int or a Wiring, got {units!r}")
    if in_features is None:
        raise ConfigError("in_features is needed to build a fully connected LTC of "
                          f"{units} units; pass in_features")
    return fully_connected(units).built_for(in_features)


class LTCCell(nn.Module):
    """One LTC time step over a wiring (``ncps.torch.LTCCell`` with the same parameters).

    Parameters are created in ``ncps``'s order with ``torch.rand`` in the same ranges, so the same
    ``torch.manual_seed`` gives the same initial weights as ``ncps``. The synapse masks are buffers.

    Args:
        wiring: a :class:`~archlab.layers.wirings.Wiring` (or a number of fully connected units).
        in_features: number of sensory inputs (builds a copy of an unbuilt wiring).
        input_mapping: ``"affine"`` (x w + b), ``"linear"`` (x w) or ``None``.
        output_mapping: same for the motor outputs.
        ode_unfolds: solver unfolds per time step (6, as ``ncps``).
        epsilon: added to the denominator.
        implicit_param_constraints: softplus on w, sensory_w, cm, gleak (else identity and
            :meth:`apply_weight_constraints` clips them).
        fused: use the fused unfold kernel with a hand-written backward (``False``: plain autograd).

    Shape:
        - Input: ``x (B, in_features)``, ``state (B, units)``, ``elapsed_time`` float, ``(B,)`` or
          ``(B, 1)``
        - Output: ``(out (B, motor), state (B, units))``
    """

    def __init__(
        self,
        wiring: Wiring | int,
        in_features: int | None = None,
        input_mapping: str | None = "affine",
        output_mapping: str | None = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = False,
        fused: bool = True,
    ):
        super().__init__()
        for name, value in (("input_mapping", input_mapping), ("output_mapping", output_mapping)):
            if value not in _MAPPINGS:
                raise ConfigError(f"{name} must be one of {_MAPPINGS}, got {value!r}")
        if isinstance(ode_unfolds, bool) or not isinstance(ode_unfolds, int) or ode_unfolds < 1:
            raise ConfigError(f"ode_unfolds must be a positive int, got {ode_unfolds!r}")
        self.wiring = _as_wiring(wiring, in_features)
        self.input_mapping, self.output_mapping = input_mapping, output_mapping
        self.ode_unfolds, self.epsilon = ode_unfolds, float(epsilon)
        self.implicit_param_constraints = bool(implicit_param_constraints)
        self.fused = bool(fused)
        n, s = self.wiring.units, self.wiring.input_dim

        def rand(shape: tuple[int, ...], lo: float, hi: float) -> nn.Parameter:
            return nn.Parameter(torch.rand(*shape) * (hi - lo) + lo)

        # Same order and ranges as ncps (torch.rand), so equal seeds give equal weights.
        self.gleak = rand((n,), 0.001, 1.0)
        self.vleak = rand((n,), -0.2, 0.2)
        self.cm = rand((n,), 0.4, 0.6)
        self.sigma = rand((n, n), 3, 8)
        self.mu = rand((n, n), 0.3, 0.8)
        self.w = rand((n, n), 0.001, 1.0)
        self.erev = nn.Parameter(torch.from_numpy(self.wiring.erev_init()))
        self.sensory_sigma = rand((s, n), 3, 8)
        self.sensory_mu = rand((s, n), 0.3, 0.8)
        self.sensory_w = rand((s, n), 0.001, 1.0)
        self.sensory_erev = nn.Parameter(torch.from_numpy(self.wiring.sensory_erev_init()))
        # ncps keeps these as frozen Parameters; buffers load from the same state-dict keys.
        self.register_buffer("sparsity_mask", torch.from_numpy(abs(self.wiring.adjacency).astype("float32")))
        self.register_buffer(
            "sensory_sparsity_mask", torch.from_numpy(abs(self.wiring.sensory_adjacency).astype("float32"))
        )
        self.input_w = nn.Parameter(torch.ones(s)) if input_mapping in ("affine", "linear") else None
        self.input_b = nn.Parameter(torch.zeros(s)) if input_mapping == "affine" else None
        m = self.wiring.output_dim
        self.output_w = nn.Parameter(torch.ones(m)) if output_mapping in ("affine", "linear") else None
        self.output_b = nn.Parameter(torch.zeros(m)) if output_mapping == "affine" else None
        self._layout_cache: tuple[Any, _Layout] | None = None
        #: fused recurrent kernel: "auto" (dense products for small circuits, gathers otherwise),
        #: "dense" or "gather" (both exact; the choice only changes speed).
        self.kernel = "auto"

    # ------------------------------------------------------------------ sizes
    @property
    def state_size(self) -> int:
        return self.wiring.units

    @property
    def sensory_size(self) -> int:
        return self.wiring.input_dim

    @property
    def motor_size(self) -> int:
        return self.wiring.output_dim

    output_size = motor_size

    @property
    def synapse_count(self) -> int:
        return int((self.sparsity_mask != 0).sum())

    @property
    def sensory_synapse_count(self) -> int:
        return int((self.sensory_sparsity_mask != 0).sum())

    def _pos(self, p: torch.Tensor) -> torch.Tensor:
        return F.softplus(p) if self.implicit_param_constraints else p

    @torch.no_grad()
    def apply_weight_constraints(self) -> None:
        """Clip w, sensory_w, cm, gleak at 0 (explicit-constraint mode only, as ``ncps``)."""
        if not self.implicit_param_constraints:
            for p in (self.w, self.sensory_w, self.cm, self.gleak):
                p.clamp_(min=0)

    def _layout(self) -> _Layout:
        m, sm = self.sparsity_mask, self.sensory_sparsity_mask
        key = (m.device, m.data_ptr(), m._version, sm.data_ptr(), sm._version)
        if self._layout_cache is None or self._layout_cache[0] != key:
            self._layout_cache = (key, _Layout(m, sm, m.device))
        return self._layout_cache[1]

    # ------------------------------------------------------------------ computation
    def map_inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_w is not None:
            x = x * self.input_w
        if self.input_b is not None:
            x = x + self.input_b
        return x

    def map_outputs(self, v: torch.Tensor) -> torch.Tensor:
        """Motor outputs from states. Shape: ``(..., N)`` -> ``(..., motor)``."""
        out = v[..., : self.motor_size]
        if self.output_w is not None:
            out = out * self.output_w
        if self.output_b is not None:
            out = out + self.output_b
        return out

    def prepare(self, x: torch.Tensor, timespans: torch.Tensor | float | None = None) -> dict[str, Any]:
        """Everything that does not depend on the state, for all steps at once.

        Args:
            x: ``(B, T, in_features)`` raw inputs.
            timespans: ``None``/float (same elapsed time everywhere), ``(B, T)``/``(B, T, 1)``
                per sample and step, or ``(T,)`` per step.
        """
        b, t_len, s = x.shape
        if s != self.sensory_size:
            raise ConfigError(
                f"LTC cell expects {self.sensory_size} input features (the wiring's input_dim), got {s}"
            )
        lay = self._layout()
        u = self.ode_unfolds
        x = self.map_inputs(x.to(self.gleak.dtype))  # (B, T, S), in the cell's dtype (also under autocast)
        # sensory currents of every step, columns ordered (t, b)
        sens = lay.sens
        sv = sens["valid"].to(x.dtype)
        sid, did = sens["src_id"], sens["dst_id"]
        sw = self._pos(self.sensory_w)[sid, did] * self.sensory_sparsity_mask[sid, did] * sv  # (Rs, Ks)
        coef = torch.stack((sw * self.sensory_erev[sid, did], sw), 1)  # (Rs, 2, Ks)
        sig = self.sensory_sigma[sid, did].reshape(-1, 1)  # (Rs*Ks, 1)
        cz = -(self.sensory_mu[sid, did].reshape(-1, 1) * sig)  # (Rs*Ks, 1)
        x_sl = x.permute(2, 1, 0).reshape(s, t_len * b)  # (S, T*B), columns ordered (t, b)
        fn = _SensoryFn.apply if self.fused else _sensory_autograd
        cur = fn(x_sl, sens["src"], sig, cz, coef, lay.sens_fanin).view(-1, 2, t_len, b).permute(2, 0, 1, 3)  # (T, Rs, 2, B)
        n = self.state_size
        full = cur.new_zeros(t_len, n, 2, b).index_copy(1, sens["rows"], cur)  # (T, N, 2, B)
        # capacitance over the step length
        perm = lay.perm
        cm = self._pos(self.cm)[perm]  # (N,)
        ts = resolve_timespans(timespans, b, t_len, x)
        if isinstance(ts, float):
            cmt = (cm / (ts / u)).view(1, n, 1).expand(t_len, n, 1)  # (T, N, 1)
        else:
            cmt = cm.view(1, n, 1) / (ts.t().unsqueeze(1) / u)  # (T, N, B)
        gleak = self._pos(self.gleak)[perm]  # (N,)
        base = torch.stack((gleak * self.vleak[perm], gleak + self.epsilon), 1)  # (N, 2)
        # numerator: gleak vleak + Ns ; denominator: cm U/dt + gleak + eps + Ds
        cin = full + base.view(1, n, 2, 1) + torch.stack((torch.zeros_like(cmt), cmt), 2)  # (T, N, 2, B)
        # recurrent synapses
        rec = lay.rec
        rid, rdid = rec["src_id"], rec["dst_id"]
        w = self._pos(self.w)[rid, rdid] * self.sparsity_mask[rid, rdid] * rec["valid"].to(x.dtype)  # (R, K)
        rsig = self.sigma[rid, rdid].reshape(-1, 1)  # (R*K, 1)
        return {
            "cin": cin,
            "cmt": cmt,
            "src": rec["src"],
            "sig": rsig,
            "cz": -(self.mu[rid, rdid].reshape(-1, 1) * rsig),
            "coef": torch.stack((w * self.erev[rid, rdid], w), 1),  # (R, 2, K)
            "perm": perm,
            "pos": lay.pos,
        }

    def unfold(self, prep: dict[str, Any], h: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run steps ``start:stop`` of a prepared sequence from state ``h`` (B, N) -> (B, T', N)."""
        sl = slice(start, stop)
        v0 = h[:, prep["perm"]].t().contiguous()  # (N, B)
        cin, cmt = prep["cin"][sl], prep["cmt"][sl]
        src, sig, cz, coef = prep["src"], prep["sig"], prep["cz"], prep["coef"]
        n, e = v0.shape[0], src.shape[0]
        dense = self.kernel == "dense" or (self.kernel == "auto" and e * n <= _DENSE_LIMIT)
        if self.fused and dense:
            r, _, k = coef.shape
            rows = torch.arange(e, device=src.device)
            gsig = sig.new_zeros(e, n).index_put((rows, src), sig.view(-1))  # (E, N)
            tgt = rows // k
            wcat = coef.new_zeros(2 * n, e).index_put(
                (torch.cat((tgt, tgt + n)), torch.cat((rows, rows))), coef.transpose(0, 1).reshape(-1)
            )  # (2N, E): numerator weights in rows :N, denominator weights in rows N:
            cin2 = cin.transpose(1, 2).reshape(cin.shape[0], 2 * n, -1)  # (T', 2N, B)
            states = _UnfoldDenseFn.apply(v0, cin2, cmt, gsig, cz, wcat, self.ode_unfolds)  # (T', N, B)
        else:
            args = (v0, cin, cmt, src, sig, cz, coef, self.ode_unfolds)
            states = _UnfoldFn.apply(*args) if self.fused else _unfold_autograd(*args)  # (T', N, B)
        return states.index_select(1, prep["pos"]).permute(2, 0, 1)  # (B, T', N)

    def forward(
        self, inputs: torch.Tensor, states: torch.Tensor, elapsed_time: float | torch.Tensor = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ts: Any = elapsed_time
        if isinstance(ts, torch.Tensor):
            ts = ts.reshape(-1, 1) if ts.numel() > 1 else float(ts)
        prep = self.prepare(inputs.unsqueeze(1), ts)
        v = self.unfold(prep, states)[:, 0]  # (B, N)
        return self.map_outputs(v), v

    def extra_repr(self) -> str:
        return (
            f"in_features={self.sensory_size}, units={self.state_size}, motor={self.motor_size}, "
            f"synapses={self.synapse_count}+{self.sensory_synapse_count} sensory, "
            f"ode_unfolds={self.ode_unfolds}, implicit_param_constraints={self.implicit_param_constraints}"
        )


class LTC(nn.Module):
    """An LTC network over a sequence (``ncps.torch.LTC``): ``y, h = ltc(x)``.

    Args:
        input_size: features per step.
        units: a :class:`~archlab.layers.wirings.Wiring` or a number of fully connected neurons.
        return_sequences: outputs of every step ``(B, T, motor)`` (else the last ``(B, motor)``).
        batch_first: inputs ``(B, T, F)`` (else ``(T, B, F)``).
        mixed_memory: an LSTM memory cell updates the state before every LTC step.
        input_mapping, output_mapping, ode_unfolds, epsilon: see :class:`LTCCell`.
        implicit_param_constraints: softplus constraints (default True, as ``ncps.torch.LTC``).
        fused: fused unfold kernel with hand-written backward.

    Shape:
        - Input: ``(B, T, input_size)`` (or ``(T, input_size)`` unbatched); ``hx`` ``(B, units)``
          (a tuple ``(h, c)`` with mixed memory); ``timespans`` ``(B, T)``/``(B, T, 1)``/float
        - Output: ``(y, hx)`` with ``y`` ``(B, T, motor)`` or ``(B, motor)``
    """

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        input_mapping: str | None = "affine",
        output_mapping: str | None = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = True,
        fused: bool = True,
    ):
        super().__init__()
        self.input_size = input_size
        self.batch_first, self.return_sequences = batch_first, return_sequences
        self.rnn_cell = LTCCell(
            units,
            in_features=input_size,
            input_mapping=input_mapping,
            output_mapping=output_mapping,
            ode_unfolds=ode_unfolds,
            epsilon=epsilon,
            implicit_param_constraints=implicit_param_constraints,
            fused=fused,
        )
        self.use_mixed = bool(mixed_memory)
        self.lstm = LSTMCell(input_size, self.state_size) if self.use_mixed else None

    @property
    def wiring(self) -> Wiring:
        return self.rnn_cell.wiring

    @property
    def state_size(self) -> int:
        return self.rnn_cell.state_size

    @property
    def motor_size(self) -> int:
        return self.rnn_cell.motor_size

    output_size = motor_size

    def forward(
        self,
        input: torch.Tensor,
        hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        timespans: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, Any]:
        x, batched = to_batch_first(input, self.batch_first)
        b, t_len, _ = x.shape
        if not batched and isinstance(timespans, torch.Tensor):
            timespans = timespans.reshape(1, t_len)
        h, c = initial_state(hx, b, self.state_size, self.use_mixed, batched, x)
        cell = self.rnn_cell
        prep = cell.prepare(x, timespans)
        if self.use_mixed:
            states = []
            for t in range(t_len):
                h, c = self.lstm(x[:, t], (h, c))
                h = cell.unfold(prep, h, t, t + 1)[:, 0]  # (B, N)
                states.append(h)
            seq = torch.stack(states, 1)  # (B, T, N)
        else:
            seq = cell.unfold(prep, h)  # (B, T, N)
            h = seq[:, -1]
        y = cell.map_outputs(seq if self.return_sequences else seq[:, -1])
        return finish_sequence(y, h, c, self.use_mixed, self.batch_first, batched, self.return_sequences)

    @classmethod
    def from_ncps(cls, module: nn.Module, fused: bool = True) -> LTC:
        """An archlab ``LTC`` equal to an ``ncps.torch.LTC`` (same wiring, weights and options)."""
        cell = module.rnn_cell
        wiring = wiring_from_ncps(module._wiring, cell.sparsity_mask, cell.sensory_sparsity_mask)
        new = cls(
            module.input_size,
            wiring,
            return_sequences=module.return_sequences,
            batch_first=module.batch_first,
            mixed_memory=module.use_mixed,
            input_mapping=cell._input_mapping if cell._input_mapping in _MAPPINGS else None,
            output_mapping=cell._output_mapping if cell._output_mapping in _MAPPINGS else None,
            ode_unfolds=cell._ode_unfolds,
            epsilon=cell._epsilon,
            implicit_param_constraints=cell._implicit_param_constraints,
            fused=fused,
        )
        ref = next(module.parameters())
        new = new.to(device=ref.device, dtype=ref.dtype)  # before loading: keep every bit
        new.load_state_dict(module.state_dict(), strict=True)
        return new

    def extra_repr(self) -> str:
        return f"return_sequences={self.return_sequences}, batch_first={self.batch_first}, mixed_memory={self.use_mixed}"
