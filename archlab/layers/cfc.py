"""Closed-form Continuous-time (CfC) cells, dense and wired, equal to the ``ncps`` package.

References:
    Hasani, Lechner et al., "Closed-form continuous-time neural networks", Nature Machine
    Intelligence 2022; the ``ncps`` package 1.0.1 (``ncps.torch.CfCCell``/``WiredCfCCell``/``CfC``),
    whose parameters, initialisation, state-dict names and outputs these modules reproduce
    (``CfC.from_ncps``).

One step with input ``x``, state ``h`` and elapsed time ``ts``::

    z = backbone([x, h])                  # Linear + LeCun tanh, backbone_layers times (dense cell)
    ff1, ff2, ta, tb = Linear(z) x 4      # ff1/ff2 masked by the wiring in the wired cell
    sigma = sigmoid(ta * ts + tb)
    default: h' = tanh(ff1) (1 - sigma) + sigma tanh(ff2)
    no_gate: h' = tanh(ff1) + sigma tanh(ff2)
    pure:    h' = -A exp(-ts (|w_tau| + |ff1|)) ff1 + A

The wired cell (NCP) runs one such cell per wiring layer (inter, command, motor) without backbone;
the state is [inter | command | motor] and the output the motor neurons. As in ``ncps``: the
synapse polarities and the command layer's own recurrent synapses are not used (each layer sees its
full own state), and backbone dropout only exists from the second backbone layer on.

Departures (documented): per-sample elapsed times of shape (B, 1) / (B, T) work (``ncps`` squeezes
them to (B,), which fails or silently mis-broadcasts for B > 1); masks are buffers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.layers.ltc import LSTMCell
from archlab.layers.recurrent import (
    finish_sequence,
    initial_state,
    resolve_timespans,
    to_batch_first,
    wiring_from_ncps,
)
from archlab.layers.wirings import Wiring

__all__ = ["LeCun", "CfCCell", "WiredCfCCell", "CfC", "CFC_MODES"]

CFC_MODES = ("default", "pure", "no_gate")


class LeCun(nn.Module):
    """LeCun's scaled tanh: ``1.7159 tanh(0.666 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "lecun_tanh": LeCun,
}


def _as_ts(ts: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """Elapsed time as a float or a (B, 1) column that broadcasts over the units."""
    if isinstance(ts, torch.Tensor):
        if ts.numel() == 1:
            return ts.reshape(1, 1).to(like)
        return ts.reshape(-1, 1).to(like)
    return float(ts)


class CfCCell(nn.Module):
    """One CfC step (``ncps.torch.CfCCell``).

    Args:
        input_size: features per step.
        hidden_size: units.
        mode: ``"default"``, ``"pure"`` or ``"no_gate"``.
        backbone_activation: ``"lecun_tanh"``, ``"silu"``, ``"relu"``, ``"tanh"``, ``"gelu"``.
        backbone_units: width of the backbone layers.
        backbone_layers: number of backbone layers (0 = the heads see ``[x, h]`` directly).
        backbone_dropout: dropout after backbone layers 2.. (as ``ncps``).
        sparsity_mask: ``(input_size + hidden_size, hidden_size)`` mask ``[in, out]`` applied to
            ff1/ff2 (a buffer).

    Shape:
        - Input: ``x (B, input_size)``, ``hx (B, hidden_size)``, ``ts`` float or ``(B, 1)``
        - Output: ``(h', h')`` each ``(B, hidden_size)``
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        mode: str = "default",
        backbone_activation: str = "lecun_tanh",
        backbone_units: int = 128,
        backbone_layers: int = 1,
        backbone_dropout: float = 0.0,
        sparsity_mask: np.ndarray | torch.Tensor | None = None,
    ):
        super().__init__()
        if mode not in CFC_MODES:
            raise ConfigError(f"mode must be one of {CFC_MODES}, got {mode!r}")
        if backbone_activation not in _ACTIVATIONS:
            raise ConfigError(f"backbone_activation must be one of {tuple(_ACTIVATIONS)}, got {backbone_activation!r}")
        if backbone_layers < 0:
            raise ConfigError(f"backbone_layers must be >= 0, got {backbone_layers!r}")
        if not 0.0 <= backbone_dropout < 1.0:
            raise ConfigError(f"backbone_dropout must be in [0, 1), got {backbone_dropout!r}")
        self.input_size, self.hidden_size, self.mode = input_size, hidden_size, mode
        self.backbone_layers = backbone_layers
        if sparsity_mask is None:
            self.sparsity_mask = None
        else:
            mask = torch.as_tensor(np.abs(np.asarray(sparsity_mask)).T.astype(np.float32))  # (out, in)
            self.register_buffer("sparsity_mask", mask)
        act = _ACTIVATIONS[backbone_activation]
        self.backbone = None
        if backbone_layers > 0:
            layers: list[nn.Module] = [nn.Linear(input_size + hidden_size, backbone_units), act()]
            for _ in range(1, backbone_layers):
                layers += [nn.Linear(backbone_units, backbone_units), act()]
                if backbone_dropout > 0.0:
                    layers.append(nn.Dropout(backbone_dropout))
            self.backbone = nn.Sequential(*layers)
        width = hidden_size + input_size if backbone_layers == 0 else backbone_units
        self.ff1 = nn.Linear(width, hidden_size)
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(1, hidden_size))
            self.A = nn.Parameter(torch.ones(1, hidden_size))
        else:
            self.ff2 = nn.Linear(width, hidden_size)
            self.time_a = nn.Linear(width, hidden_size)
            self.time_b = nn.Linear(width, hidden_size)
        # As ncps: Xavier-uniform on every 2-D parameter, in registration order (w_tau, A too).
        for p in self.parameters():
            if p.dim() == 2 and p.requires_grad:
                nn.init.xavier_uniform_(p)

    def masked_weights(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """ff1/ff2 weights times the mask (``None`` without a mask); a sequence computes them once."""
        if self.sparsity_mask is None:
            return None
        return self.ff1.weight * self.sparsity_mask, (None if self.mode == "pure" else self.ff2.weight * self.sparsity_mask)

    def forward(
        self,
        input: torch.Tensor,
        hx: torch.Tensor,
        ts: float | torch.Tensor = 1.0,
        weights: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ts = _as_ts(ts, input)
        if weights is None:
            weights = self.masked_weights()
        z = torch.cat([input, hx], 1)  # (B, in + H)
        if self.backbone is not None:
            z = self.backbone(z)  # (B, units)
        ff1 = self.ff1(z) if weights is None else F.linear(z, weights[0], self.ff1.bias)  # (B, H)
        if self.mode == "pure":
            h = -self.A * torch.exp(-ts * (torch.abs(self.w_tau) + torch.abs(ff1))) * ff1 + self.A
        else:
            ff1 = torch.tanh(ff1)
            ff2 = torch.tanh(self.ff2(z) if weights is None else F.linear(z, weights[1], self.ff2.bias))
            t_interp = torch.sigmoid(self.time_a(z) * ts + self.time_b(z))  # (B, H)
            if self.mode == "no_gate":
                h = ff1 + t_interp * ff2
            else:
                h = ff1 * (1.0 - t_interp) + t_interp * ff2
        return h, h


class WiredCfCCell(nn.Module):
    """A CfC over a wiring: one :class:`CfCCell` per layer (``ncps.torch.WiredCfCCell``).

    Args:
        input_size: sensory inputs (builds a copy of an unbuilt wiring).
        wiring: a :class:`~archlab.layers.wirings.Wiring`.
        mode: CfC mode.

    Shape:
        - Input: ``x (B, input_size)``, ``hx (B, units)`` ordered by layer, ``ts``
        - Output: ``(motor (B, output_dim), state (B, units))``
    """

    def __init__(self, input_size: int | None, wiring: Wiring, mode: str = "default"):
        super().__init__()
        self.wiring = wiring.built_for(input_size)
        self.layer_sizes = [len(layer) for layer in self.wiring.layers]
        in_features = self.wiring.input_dim
        for i, neurons in enumerate(self.wiring.layers):
            if i == 0:
                mask = self.wiring.sensory_adjacency[:, neurons]
            else:
                mask = self.wiring.adjacency[self.wiring.layers[i - 1]][:, neurons]
            mask = np.concatenate([mask, np.ones((len(neurons), len(neurons)))], 0)
            cell = CfCCell(in_features, len(neurons), mode, "lecun_tanh", 0, 0, 0.0, sparsity_mask=mask)
            self.add_module(f"layer_{i}", cell)
            in_features = len(neurons)

    @property
    def state_size(self) -> int:
        return self.wiring.units

    @property
    def output_size(self) -> int:
        return self.layer_sizes[-1]

    def masked_weights(self) -> list[Any]:
        """Masked ff1/ff2 weights of every layer (computed once per sequence by :class:`CfC`)."""
        return [getattr(self, f"layer_{i}").masked_weights() for i in range(len(self.layer_sizes))]

    def forward(
        self, input: torch.Tensor, hx: torch.Tensor, ts: float | torch.Tensor = 1.0, weights: list[Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states = torch.split(hx, self.layer_sizes, dim=1)
        new, h = [], input
        for i, state in enumerate(states):
            cell = getattr(self, f"layer_{i}")
            h, _ = cell(h, state, ts, None if weights is None else weights[i])
            new.append(h)
        return h, torch.cat(new, 1)


class CfC(nn.Module):
    """A CfC network over a sequence (``ncps.torch.CfC``): ``y, h = cfc(x)``.

    Args:
        input_size: features per step.
        units: a :class:`~archlab.layers.wirings.Wiring` (wired cell) or a number of units.
        proj_size: a Linear projection of the outputs to this size (dense cell).
        return_sequences: outputs of every step (else the last one).
        batch_first: inputs ``(B, T, F)`` (else ``(T, B, F)``).
        mixed_memory: an LSTM memory cell updates the state before every step.
        mode: ``"default"``, ``"pure"`` or ``"no_gate"``.
        activation: backbone activation (dense cell).
        backbone_units, backbone_layers, backbone_dropout: dense cell only (defaults 128, 1, 0).

    Shape:
        - Input: ``(B, T, input_size)``; ``timespans`` float, ``(B, T)`` or ``(B, T, 1)``
        - Output: ``(y, hx)`` with ``y`` ``(B, T, out)`` or ``(B, out)``
    """

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        proj_size: int | None = None,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        mode: str = "default",
        activation: str = "lecun_tanh",
        backbone_units: int | None = None,
        backbone_layers: int | None = None,
        backbone_dropout: float | None = None,
    ):
        super().__init__()
        self.input_size, self.proj_size = input_size, proj_size
        self.batch_first, self.return_sequences = batch_first, return_sequences
        if isinstance(units, Wiring):
            dense_only = {"backbone_units": backbone_units, "backbone_layers": backbone_layers, "backbone_dropout": backbone_dropout}
            for name, value in dense_only.items():
                if value is not None:
                    raise ConfigError(f"{name} cannot be used with a wiring (the wired CfC has no backbone)")
            self.wired_mode = True
            self.rnn_cell: nn.Module = WiredCfCCell(input_size, units, mode)
            self.state_size = self.rnn_cell.state_size
            self.output_size = self.rnn_cell.output_size
        else:
            if isinstance(units, bool) or not isinstance(units, int) or units < 1:
                raise ConfigError(f"units must be a positive int or a Wiring, got {units!r}")
            self.wired_mode = False
            self.rnn_cell = CfCCell(
                input_size,
                units,
                mode,
                activation,
                128 if backbone_units is None else backbone_units,
                1 if backbone_layers is None else backbone_layers,
                0.0 if backbone_dropout is None else backbone_dropout,
            )
            self.state_size = self.output_size = units
        self.use_mixed = bool(mixed_memory)
        self.lstm = LSTMCell(input_size, self.state_size) if self.use_mixed else None
        self.fc = nn.Identity() if proj_size is None else nn.Linear(self.output_size, proj_size)

    @property
    def wiring(self) -> Wiring | None:
        return self.rnn_cell.wiring if self.wired_mode else None

    def forward(
        self,
        input: torch.Tensor,
        hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        timespans: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, Any]:
        x, batched = to_batch_first(input, self.batch_first)
        b, t_len, _ = x.shape
        h, c = initial_state(hx, b, self.state_size, self.use_mixed, batched, x)
        if not batched and isinstance(timespans, torch.Tensor):
            timespans = timespans.reshape(1, t_len)
        ts_all = resolve_timespans(timespans, b, t_len, x)  # float or (B, T)
        outs = []
        out = None
        weights = self.rnn_cell.masked_weights()  # the masks are applied once, not every step
        for t in range(t_len):
            xt = x[:, t]  # (B, F)
            if self.use_mixed:
                h, c = self.lstm(xt, (h, c))
            ts = ts_all if not isinstance(ts_all, torch.Tensor) else ts_all[:, t : t + 1]
            out, h = self.rnn_cell(xt, h, ts, weights)
            if self.return_sequences:
                outs.append(self.fc(out))
        y = torch.stack(outs, 1) if self.return_sequences else self.fc(out)
        return finish_sequence(y, h, c, self.use_mixed, self.batch_first, batched, self.return_sequences)

    @classmethod
    def from_ncps(cls, module: nn.Module) -> CfC:
        """An archlab ``CfC`` equal to an ``ncps.torch.CfC`` (same wiring, weights and options)."""
        cell = module.rnn_cell
        if getattr(module, "wired_mode", False):
            ncps_wiring = module.wiring
            mode = cell._layers[0].mode
            wiring = wiring_from_ncps(
                ncps_wiring,
                torch.as_tensor(np.asarray(ncps_wiring.adjacency_matrix)),
                torch.as_tensor(np.asarray(ncps_wiring.sensory_adjacency_matrix)),
            )
            new = cls(
                module.input_size, wiring, module.proj_size, module.return_sequences, module.batch_first, module.use_mixed, mode
            )
        else:
            if cell.backbone_layers > 0:
                act_name = _activation_name(cell.backbone[1])
                units = cell.backbone[0].out_features
                drops = [m.p for m in cell.backbone if isinstance(m, nn.Dropout)]
            else:
                act_name, units, drops = "lecun_tanh", 128, []
            new = cls(
                module.input_size,
                cell.hidden_size,
                module.proj_size,
                module.return_sequences,
                module.batch_first,
                module.use_mixed,
                cell.mode,
                act_name,
                units,
                cell.backbone_layers,
                drops[0] if drops else 0.0,
            )
        # the wired cell's masks come from the module (they rule, as for the LTC)
        ref = next(module.parameters())
        new = new.to(device=ref.device, dtype=ref.dtype)  # before loading: keep every bit
        new.load_state_dict(module.state_dict(), strict=True)
        return new

    def extra_repr(self) -> str:
        return f"return_sequences={self.return_sequences}, batch_first={self.batch_first}, mixed_memory={self.use_mixed}"


def _activation_name(module: nn.Module) -> str:
    for name, cls in _ACTIVATIONS.items():
        if type(module).__name__ == cls.__name__:
            return name
    raise ConfigError(f"unsupported backbone activation {type(module).__name__}")
