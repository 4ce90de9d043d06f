"""Classification heads: each takes backbone features (B, C, H, W) or (B, F) and returns logits."""

from archlab.heads.linear import LinearHead
from archlab.heads.mlp import MLPHead

__all__ = ["LinearHead", "MLPHead"]
