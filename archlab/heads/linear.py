"""The plain classification head: flatten (or global-pool) -> [Dropout] -> Linear."""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab._registry import register_head
from archlab.errors import ConfigError
from archlab.heads._base import FeaturePool

__all__ = ["LinearHead"]


@register_head("linear")
class LinearHead(nn.Module):
    """Flatten -> [Dropout] -> Linear.

    Args:
        in_shape: per-sample feature shape ``(C, H, W)`` or ``(F,)``.
        num_classes: number of logits.
        global_pool: ``"flatten"`` (default: every position, as CRNet's classifier),
            ``"avg"`` or ``"max"`` (pool over H, W first, as ResNet's).
        drop_rate: dropout before the Linear layer.

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, num_classes)``
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        global_pool: str = "flatten",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.in_shape, self.num_classes = tuple(in_shape), num_classes
        self.pool = FeaturePool(in_shape, global_pool)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(self.pool.out_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(x)))  # (B, num_classes)
