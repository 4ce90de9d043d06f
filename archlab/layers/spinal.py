"""The Spinal fully-connected block of SpinalNet (seed 001).

Reference: H M D Kabir, M Abdar, S M J Jalali, A Khosravi, A F Atiya, S Nahavandi, D Srinivasan,
"SpinalNet: Deep Neural Network with Gradual Input", arXiv:2007.03347 (2020); official code
github.com/dipuk0506/SpinalNet.

A spinal block takes its input *gradually*: the input is cut into ``P`` parts (two halves in the
paper, the four 2x2 positions of a pooled map in the official ResNet scripts), and hidden layer
``i`` (1-based) sees part ``(i - 1) mod P`` concatenated with the output of layer ``i - 1``::

    h_1 = L_1(part_1)
    h_i = L_i(cat[part_((i-1) mod P + 1), h_(i-1)])     i = 2..n
    out = [Dropout] -> Linear(n * width -> out_features) over cat[h_1, ..., h_n]

with ``L_i = [Dropout] -> Linear -> [BatchNorm1d] -> activation``. The part comes before the previous
output in each concatenation, as in the official scripts, so their weights map one-to-one.

This file holds the block on already-split parts (:class:`SpinalFC`) and the two ways to split:
:func:`split_halves` (flat features) and :func:`split_positions` (a 2x2 map).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn

from archlab.errors import ConfigError, close_matches
from archlab.layers.activations import ACT_LAYERS, get_act_layer

__all__ = ["SpinalFC", "split_halves", "split_positions", "half_width", "check_spinal_options"]


def half_width(in_features: int) -> int:
    """Width ``H = ceil(F / 2)`` of each half of ``F`` features (see :func:`split_halves`)."""
    return (int(in_features) + 1) // 2


def split_halves(x: torch.Tensor) -> torch.Tensor:
    """Cut flat features into the two halves the spinal layers take in turn.

    Both halves have width ``H = ceil(F / 2)``: the first half is ``x[:, :H]``, the second half is
    the last ``H`` features ``x[:, F - H:]``. For even ``F`` this is the paper's split exactly; for
    odd ``F`` the two halves overlap by one feature (the middle one, index ``H - 1``).

    Departure from the official code: it slices ``x[:, :H]`` and ``x[:, H:2H]`` with
    ``H = round(F / 2)``, which for odd ``F`` either drops the last feature (``round`` down) or
    builds a second half one feature short that breaks the Linear shapes (``round`` up). Sharing
    the middle feature keeps every feature and keeps all layers after the first the same shape.

    Args:
        x: flat features.

    Returns:
        A view (no copy) holding both halves.

    Shape:
        - Input: ``(B, F)``
        - Output: ``(B, 2, H)`` with ``H = ceil(F / 2)``
    """
    B, F = x.shape
    H = half_width(F)
    if F == 1:  # a single feature is both halves
        return x.unsqueeze(1).expand(B, 2, 1)  # (B, 2, 1)
    # windows of width H starting at 0 and at F - H (step F - H gives exactly two windows)
    return x.unfold(1, H, F - H)  # (B, 2, H)


def split_positions(x: torch.Tensor) -> torch.Tensor:
    """Turn a 2x2 feature map into its four positions, in row-major order.

    The order (0,0), (0,1), (1,0), (1,1) is the official ResNet scripts' ``out1[:, :, 0, 0]``,
    ``[0, 1]``, ``[1, 0]``, ``[1, 1]``.

    Shape:
        - Input: ``(B, C, 2, 2)``
        - Output: ``(B, 4, C)``
    """
    B, C, H, W = x.shape
    if (H, W) != (2, 2):
        raise ValueError(f"split_positions needs a (B, C, 2, 2) map, got {tuple(x.shape)}")
    return x.flatten(2).transpose(1, 2)  # (B, 4, C)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_spinal_options(
    *,
    num_layers: object,
    layer_width: object,
    dropout: object,
    activation: object,
    batch_norm: object,
    num_parts: int = 2,
    parts_name: str = "input parts",
) -> None:
    """Validate the spinal options; ``ConfigError`` (a ``ValueError``) naming value and range.

    Args:
        num_layers: must be an int >= ``num_parts`` so that every part feeds at least one layer
            (fewer layers would silently ignore part of the input).
        layer_width: int >= 1.
        dropout: float in [0, 1).
        activation: a name in :data:`archlab.layers.activations.ACT_LAYERS` or an ``nn.Module``
            class.
        batch_norm: bool.
        num_parts: number of parts the input is cut into.
        parts_name: how the parts are called in messages (e.g. ``"halves"``).
    """
    if not _is_int(num_layers) or num_layers < max(1, num_parts):
        raise ConfigError(
            f"num_layers must be an int >= {max(1, num_parts)} (each of the {num_parts} {parts_name} "
            f"must feed at least one spinal layer), got {num_layers!r}; use num_layers >= {num_parts}"
        )
    if not _is_int(layer_width) or layer_width < 1:
        raise ConfigError(f"layer_width must be an int >= 1, got {layer_width!r}")
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not math.isfinite(dropout)
        or not 0.0 <= dropout < 1.0
    ):
        raise ConfigError(f"dropout must be a float in [0, 1), got {dropout!r}")
    if not isinstance(batch_norm, bool):
        raise ConfigError(f"batch_norm must be true or false, got {batch_norm!r}")
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return
    if not isinstance(activation, str) or activation.lower() not in ACT_LAYERS:
        allowed = ", ".join(sorted(ACT_LAYERS))
        msg = f"unknown activation {activation!r}; allowed: {allowed} (or an nn.Module class)"
        hint = close_matches(str(activation).lower(), ACT_LAYERS) if isinstance(activation, str) else []
        if hint:
            msg += f"; did you mean {', '.join(repr(h) for h in hint)}?"
        raise ConfigError(msg)


class SpinalFC(nn.Module):
    """Spinal fully-connected block on an input already cut into parts.

    Hidden layer ``i`` (0-based here) takes part ``i mod num_parts`` concatenated with the previous
    layer's output (part first); the output Linear reads all hidden outputs concatenated. Every
    layer owns its parameters (an official script is reported to reuse ``fc3``/``fc4`` for layers
    5/6 by accident; that sharing is not reproduced).

    Args:
        part_features: width ``D`` of one part.
        out_features: width of the output (the number of classes in a head).
        num_parts: number of parts ``P`` (2 for halves, 4 for 2x2 positions).
        num_layers: number of spinal layers ``n`` (>= ``num_parts``; default 4 as in the paper).
        layer_width: width ``w`` of every spinal layer.
        dropout: dropout before every Linear, the output one included (0 = none).
        batch_norm: BatchNorm1d after every spinal Linear.
        activation: activation name (``relu``, ``gelu``, ``elu``, ``tanh``, ...) or class.

    Attributes:
        layers: ``ModuleList`` of ``Sequential(drop?, fc, bn?, act)``, one per spinal layer.
        drop, fc: the output dropout and Linear.

    Shape:
        - Input: ``(B, num_parts, part_features)``
        - Output: ``(B, out_features)``
    """

    def __init__(
        self,
        part_features: int,
        out_features: int,
        *,
        num_parts: int = 2,
        num_layers: int = 4,
        layer_width: int = 128,
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: str | type[nn.Module] = "relu",
    ):
        super().__init__()
        for name, v in (("part_features", part_features), ("out_features", out_features), ("num_parts", num_parts)):
            if not _is_int(v) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        check_spinal_options(
            num_layers=num_layers,
            layer_width=layer_width,
            dropout=dropout,
            activation=activation,
            batch_norm=batch_norm,
            num_parts=num_parts,
        )
        self.part_features, self.out_features = part_features, out_features
        self.num_parts, self.num_layers, self.layer_width = num_parts, num_layers, layer_width
        act = get_act_layer(activation)
        layers = []
        for i in range(num_layers):
            in_w = part_features + (layer_width if i > 0 else 0)
            mods: OrderedDict[str, nn.Module] = OrderedDict()
            if dropout > 0:
                mods["drop"] = nn.Dropout(dropout)
            mods["fc"] = nn.Linear(in_w, layer_width)
            if batch_norm:
                mods["bn"] = nn.BatchNorm1d(layer_width)
            mods["act"] = act()
            layers.append(nn.Sequential(mods))
        self.layers = nn.ModuleList(layers)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(num_layers * layer_width, out_features)

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        B, P, D = parts.shape
        if P != self.num_parts or D != self.part_features:
            raise ValueError(
                f"SpinalFC expects (B, {self.num_parts}, {self.part_features}) parts, got {tuple(parts.shape)}"
            )
        outs: list[torch.Tensor] = []
        h: torch.Tensor | None = None
        for i, layer in enumerate(self.layers):
            part = parts[:, i % P]  # (B, D)
            inp = part if h is None else torch.cat((part, h), dim=1)  # (B, D) or (B, D + w)
            h = layer(inp)  # (B, w)
            outs.append(h)
        return self.fc(self.drop(torch.cat(outs, dim=1)))  # (B, out_features)

    def extra_repr(self) -> str:
        return (
            f"part_features={self.part_features}, num_parts={self.num_parts}, num_layers={self.num_layers}, "
            f"layer_width={self.layer_width}, out_features={self.out_features}"
        )
