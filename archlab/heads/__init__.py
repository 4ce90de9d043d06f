"""Classification heads: each takes backbone features (B, C, H, W) or (B, F) and returns logits."""

from archlab.heads.linear import LinearHead
from archlab.heads.mlp import MLPHead
from archlab.heads.vgg_classifier import VGGClassifierHead
from archlab.heads.spinal import SpinalHead
from archlab.heads.ncp import NCPHead
from archlab.heads.rnn import RNNHead

__all__ = ["LinearHead", "MLPHead", "VGGClassifierHead", "SpinalHead"]
__all__ += ["NCPHead", "RNNHead"]
