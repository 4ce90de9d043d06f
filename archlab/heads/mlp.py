"""A multi-layer perceptron head: the "3 FC layers" of seed 000, VGG-5's and the MNIST CNN's heads."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn as nn

from archlab._registry import register_head
from archlab.errors import ConfigError
from archlab.heads._base import FeaturePool
from archlab.layers.activations import get_act_layer

__all__ = ["MLPHead"]


@register_head("mlp")
class MLPHead(nn.Module):
    """Flatten -> {[Dropout] -> Linear -> [BatchNorm1d] -> act} per hidden size -> [Dropout] -> Linear.

    Args:
        in_shape: per-sample feature shape ``(C, H, W)`` or ``(F,)``.
        num_classes: number of logits.
        hidden: hidden widths (default ``(1000, 100)``: the seed-000 "3 FC" head).
        act_layer: activation name (``relu``, ``gelu``, ``elu``, ``tanh``, ``silu``...).
        batch_norm: BatchNorm1d after every hidden Linear (VGG-5's head).
        drop_rate: dropout before every hidden Linear after the first, and before the output.
        input_drop_rate: dropout before the first Linear (``None`` = ``drop_rate``; the MNIST
            CNN's head has none there).
        global_pool: ``"flatten"``, ``"avg"`` or ``"max"`` (see :class:`LinearHead`).

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, num_classes)``
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        hidden: Sequence[int] = (1000, 100),
        act_layer: str = "relu",
        batch_norm: bool = False,
        drop_rate: float = 0.0,
        input_drop_rate: float | None = None,
        global_pool: str = "flatten",
    ):
        super().__init__()
        if isinstance(hidden, (str, bytes)) or not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) for h in hidden
        ):  # int("12") would quietly accept a string and iterate it digit by digit
            raise ConfigError(f"hidden must be a list of layer widths (ints), e.g. [1000, 100]; got {hidden!r}")
        hidden = [int(h) for h in hidden]
        if any(h < 1 for h in hidden):
            raise ConfigError(f"hidden sizes must be positive, got {hidden}")
        for name, p in (("drop_rate", drop_rate), ("input_drop_rate", input_drop_rate)):
            if p is not None and not 0.0 <= p < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {p!r}")
        self.in_shape, self.num_classes = tuple(in_shape), num_classes
        self.pool = FeaturePool(in_shape, global_pool)
        first_drop = drop_rate if input_drop_rate is None else input_drop_rate
        layers: list[nn.Module] = []
        width = self.pool.out_features
        for i, h in enumerate(hidden):
            p = first_drop if i == 0 else drop_rate
            if p > 0:
                layers.append(nn.Dropout(p))
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(get_act_layer(act_layer)())
            width = h
        p = drop_rate if hidden else first_drop
        if p > 0:
            layers.append(nn.Dropout(p))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.pool(x)))  # (B, num_classes)
