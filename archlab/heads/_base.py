"""What every head shares: turning a feature tensor into a flat vector."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from archlab.errors import ConfigError

__all__ = ["FeaturePool", "POOL_MODES"]

POOL_MODES = ("flatten", "avg", "max")


class FeaturePool(nn.Module):
    """Flatten a feature map, or pool it globally first.

    Args:
        in_shape: per-sample feature shape, ``(C, H, W)`` or ``(F,)``.
        mode: ``"flatten"`` keeps every position (width C·H·W), ``"avg"``/``"max"`` pool over
            H, W first (width C). Flat inputs are passed through whatever the mode.

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, out_features)``
    """

    def __init__(self, in_shape: tuple[int, ...], mode: str = "flatten"):
        super().__init__()
        if mode not in POOL_MODES:
            raise ConfigError(f"global_pool must be one of {POOL_MODES}, got {mode!r}")
        self.mode = mode if len(in_shape) > 1 else "flatten"
        self.out_features = in_shape[0] if self.mode != "flatten" else math.prod(in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return x.mean(dim=tuple(range(2, x.ndim)))  # (B, C)
        if self.mode == "max":
            return x.amax(dim=tuple(range(2, x.ndim)))  # (B, C)
        return x.flatten(1)  # (B, C*H*W)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, out_features={self.out_features}"
