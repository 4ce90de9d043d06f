"""Input and state plumbing that the recurrent wrappers :class:`~archlab.layers.ltc.LTC` and
:class:`~archlab.layers.cfc.CfC` share: batch-first inputs, initial states, elapsed times, the
returned layout, and a wiring read back from an ``ncps`` module (for loading ncps weights).

Reference: Lechner, Hasani et al., "Neural circuit policies enabling auditable autonomy" (Nature
Machine Intelligence, 2020) and "Closed-form continuous-time neural networks" (2022): both wrappers
follow the ``ncps`` package's calling conventions, reproduced here once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from archlab.errors import ConfigError
from archlab.layers.wirings import Wiring, custom

__all__ = ["finish_sequence", "initial_state", "resolve_timespans", "to_batch_first", "wiring_from_ncps"]

def wiring_from_ncps(ncps_wiring: Any, mask: torch.Tensor, sensory_mask: torch.Tensor) -> Wiring:
    """A custom wiring with the synapses a ncps module really uses (its masks) and the ncps layers.

    The masks rule: an ncps wiring object reused after the module was built has more synapses.
    """

    def signed(m: torch.Tensor, adj: Any) -> np.ndarray:
        m = (m.detach().cpu().numpy() != 0).astype(np.int32)
        a = np.asarray(adj) if adj is not None and np.shape(adj) == m.shape else np.ones_like(m)
        return m * np.where(a < 0, -1, 1)

    layers = [list(map(int, ncps_wiring.get_neurons_of_layer(i))) for i in range(ncps_wiring.num_layers)]
    return custom(
        signed(mask, ncps_wiring.adjacency_matrix),
        signed(sensory_mask, ncps_wiring.sensory_adjacency_matrix),
        output_dim=int(ncps_wiring.output_dim),
        layers=layers,
    )


def resolve_timespans(timespans: Any, b: int, t_len: int, x: torch.Tensor) -> float | torch.Tensor:
    """Elapsed times as a float (the same everywhere) or a ``(B, T)`` tensor.

    Accepts ``None`` (1.0), a number, ``(B, T)``, ``(B, T, 1)`` or ``(T,)`` (per step).
    """
    if timespans is None:
        return 1.0
    if isinstance(timespans, (int, float)):
        return float(timespans)
    ts = torch.as_tensor(timespans, dtype=x.dtype, device=x.device)
    if ts.dim() == 3 and ts.shape[-1] == 1:
        ts = ts[..., 0]
    if ts.dim() == 1 and ts.shape[0] == t_len:
        ts = ts.view(1, t_len).expand(b, t_len)
    if ts.shape != (b, t_len):
        raise ConfigError(
            f"timespans must have shape ({b}, {t_len}), ({b}, {t_len}, 1) or ({t_len},) for inputs of "
            f"batch {b} and {t_len} steps, got {tuple(ts.shape)}"
        )
    return ts


def to_batch_first(x: torch.Tensor, batch_first: bool) -> tuple[torch.Tensor, bool]:
    """The input as a batch-first ``(B, T, F)`` tensor, and whether it came with a batch dimension.

    Shape:
        - x: :math:`(B, T, F)`, :math:`(T, B, F)` (``batch_first=False``) or :math:`(T, F)`
        - output: :math:`(B, T, F)` (:math:`B = 1` for an unbatched input)

    Raises:
        ConfigError: an input that is neither 2-d nor 3-d.
    """
    if x.dim() == 2:
        return x.unsqueeze(0), False
    if x.dim() != 3:
        raise ConfigError(f"expected input of shape (B, T, F) or (T, F), got {tuple(x.shape)}")
    return (x if batch_first else x.transpose(0, 1)), True


def initial_state(
    hx: Any, b: int, n: int, mixed: bool, batched: bool, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recurrent state ``(h, c)`` to start from: zeros, or the caller's ``hx`` checked.

    Args:
        hx: ``None``, ``h0`` or, with ``mixed`` (an LSTM memory next to the cell), ``(h0, c0)``.
        b / n: batch size and state size.
        mixed: whether a memory state ``c`` is carried (else ``c`` is ``None``).
        batched: whether the input had a batch dimension (an unbatched ``hx`` is ``(n,)``).
        x: the batch-first input (dtype and device of the zeros).

    Shape:
        - output: ``h`` and ``c`` :math:`(B, N)`

    Raises:
        ConfigError: a state of the wrong shape or kind.
    """
    if hx is None:
        z = x.new_zeros(b, n)
        return z, (x.new_zeros(b, n) if mixed else None)
    if mixed:
        if isinstance(hx, torch.Tensor):
            raise ConfigError("with mixed_memory=True the state is a tuple (h0, c0), got one tensor")
        h, c = hx
    else:
        h, c = hx, None
    if not batched:
        h = h.unsqueeze(0)
        c = c.unsqueeze(0) if c is not None else None
    if h.shape != (b, n):
        raise ConfigError(f"initial state must have shape ({b}, {n}), got {tuple(h.shape)}")
    return h, c


def finish_sequence(
    y: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor | None,
    mixed: bool,
    batch_first: bool,
    batched: bool,
    return_sequences: bool,
) -> tuple[torch.Tensor, Any]:
    """The wrapper's return value: outputs in the caller's layout and the final state.

    Shape:
        - y: :math:`(B, T, O)` (``return_sequences``) or :math:`(B, O)`; returned as :math:`(T, B, O)`
          when not ``batch_first`` and without the batch dimension for an unbatched input
        - h / c: :math:`(B, N)` -> returned as ``h`` or ``(h, c)`` (``mixed``)
    """
    if return_sequences and not batch_first:
        y = y.transpose(0, 1)
    if not batched:
        y = y.squeeze(1 if (return_sequences and not batch_first) else 0)
        h = h[0]
        c = c[0] if c is not None else None
    return y, ((h, c) if mixed else h)
