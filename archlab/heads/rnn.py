"""The RNN head: backbone features read as a sequence by an Elman RNN, a GRU or an LSTM (seed 003).

Reference: seed 003's "a simple RNN block" over the flattened features of a CNN, unrolled 7 times
(Liao & Poggio, "Bridging the Gaps Between Residual Learning, Recurrent Neural Networks and Visual
Cortex", 2016, read a shallow recurrent net as an unrolled deep one); Elman, "Finding Structure in
Time", 1990; Cho et al. 2014 (GRU); Hochreiter & Schmidhuber 1997 (LSTM). The cells are
:class:`torch.nn.RNN` / :class:`torch.nn.GRU` / :class:`torch.nn.LSTM`, so the parameter count is
theirs plus the output Linear (and the adapter's 1x1 conv / projection when used).

Sequences:

* ``sequence="flat"`` (default): the flattened feature vector is the input of every step, for
  ``unroll`` steps (7, seed 003): the RNN refines its state on the same input, as an unrolled
  recurrent block does.
* any mode of :class:`~archlab.layers.sequence.SequenceAdapter` (``rows``, ``columns``,
  ``channels``, ``patches``, ``xy``): the map cut into steps (``unroll`` must then stay unset:
  the map decides the number of steps).

The logits are ``Linear(hidden * directions)`` of the last step's output (of both directions'
final states with ``bidirectional=True``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from archlab._registry import register_head
from archlab.errors import ConfigError, UnknownNameError
from archlab.heads._base import FeaturePool
from archlab.layers.sequence import SEQUENCE_MODES, SequenceAdapter

__all__ = ["RNNHead", "RNN_CELLS"]

#: cell name -> torch module class
RNN_CELLS: dict[str, type[nn.RNNBase]] = {"elman": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"rnn head: {name} must be a positive int, got {value!r}")
    return value


@register_head("rnn")
class RNNHead(nn.Module):
    """Features -> sequence -> Elman RNN / GRU / LSTM -> last step -> [Dropout] -> Linear.

    Args:
        in_shape: per-sample feature shape ``(C, H, W)`` or ``(F,)``.
        num_classes: number of logits.
        cell: ``"elman"``, ``"gru"`` or ``"lstm"``.
        hidden: hidden units per layer and direction.
        num_layers: stacked recurrent layers.
        sequence: ``"flat"`` (the flattened features at every step) or a
            :class:`~archlab.layers.sequence.SequenceAdapter` mode.
        unroll: steps of the ``flat`` sequence (default 7); must be unset for the other modes.
        nonlinearity: ``"tanh"`` or ``"relu"`` (Elman only).
        bidirectional: a second direction reads the sequence backwards.
        input_features: project each step to this many features with a Linear layer first
            (``None``: the step features as they are).
        pool, pool_type, channels, patch_size, stride: map reduction and patching of the adapter
            modes (see :class:`~archlab.layers.sequence.SequenceAdapter`).
        drop_rate: dropout before the Linear layer.

    Attributes:
        adapter (adapter modes) or pool (``flat``), rnn, drop, fc; steps, step_features.

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, num_classes)``
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        cell: Literal["elman", "gru", "lstm"] = "elman",
        hidden: int = 128,
        num_layers: int = 1,
        sequence: str = "flat",
        unroll: int | None = None,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        bidirectional: bool = False,
        input_features: int | None = None,
        pool: int | tuple[int, int] | None = None,
        pool_type: str = "avg",
        channels: int | None = None,
        patch_size: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if cell not in RNN_CELLS:
            raise UnknownNameError("rnn cell", str(cell), RNN_CELLS)
        if sequence != "flat" and sequence not in SEQUENCE_MODES:
            raise UnknownNameError("sequence mode", str(sequence), ("flat", *SEQUENCE_MODES))
        if nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"rnn head: nonlinearity={nonlinearity!r} is not supported; allowed: 'tanh', 'relu'")
        if nonlinearity != "tanh" and cell != "elman":
            raise ConfigError(f"rnn head: nonlinearity applies to cell='elman' only, not cell={cell!r}")
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"rnn head: drop_rate must be in [0, 1), got {drop_rate!r}")
        hidden, num_layers = _positive_int(hidden, "hidden"), _positive_int(num_layers, "num_layers")
        self.in_shape, self.num_classes, self.cell, self.sequence = tuple(in_shape), num_classes, cell, sequence
        if sequence == "flat":
            if any(v is not None for v in (pool, channels, patch_size, stride)):
                raise ConfigError("rnn head: pool/channels/patch_size/stride apply to the adapter modes, not sequence='flat'")
            self.pool = FeaturePool(self.in_shape, "flatten")
            self.adapter = None
            self.steps = _positive_int(7 if unroll is None else unroll, "unroll")
            feats = self.pool.out_features
            self.proj = None
            if input_features is not None and _positive_int(input_features, "input_features") != feats:
                self.proj = nn.Linear(feats, input_features)
                feats = input_features
        else:
            if unroll is not None:
                raise ConfigError(
                    f"rnn head: unroll={unroll!r} applies to sequence='flat' only; the {sequence!r} mode takes its "
                    "steps from the feature map"
                )
            self.pool, self.proj = None, None
            self.adapter = SequenceAdapter(
                self.in_shape, sequence, pool=pool, pool_type=pool_type, channels=channels, patch_size=patch_size,
                stride=stride, out_features=input_features,
            )  # fmt: skip
            self.steps, feats = self.adapter.steps, self.adapter.out_features
        self.step_features = feats
        kw = {"nonlinearity": nonlinearity} if cell == "elman" else {}
        self.rnn = RNN_CELLS[cell](feats, hidden, num_layers=num_layers, batch_first=True,
                                   bidirectional=bool(bidirectional), **kw)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def sequence_of(self, x: torch.Tensor) -> torch.Tensor:
        """The input sequence of features ``x``. Shape: ``(B, *in_shape)`` -> ``(B, steps, step_features)``."""
        if self.adapter is not None:
            return self.adapter(x)  # (B, T, F)
        flat = self.pool(x)  # (B, F)
        if self.proj is not None:
            flat = self.proj(flat)  # (B, F')
        return flat.unsqueeze(1).expand(-1, self.steps, -1)  # (B, T, F): the same input every step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.sequence_of(x))  # (B, T, hidden * dirs)
        if self.rnn.bidirectional:  # forward direction's last step, backward direction's first
            H = self.rnn.hidden_size
            last = torch.cat([out[:, -1, :H], out[:, 0, H:]], 1)  # (B, 2 * hidden)
        else:
            last = out[:, -1]  # (B, hidden)
        return self.fc(self.drop(last))  # (B, num_classes)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, sequence={self.sequence!r}, steps={self.steps}, step_features={self.step_features}"
