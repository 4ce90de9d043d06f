"""Fused-MBConv, EfficientNetV2's early-stage block (torchvision layout and names).

Reference: Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", ICML 2021 (arXiv
2104.00298), fig. 2: the MBConv's 1x1 expansion and kxk depthwise convolution are *fused* into one
regular kxk convolution, which runs faster on accelerators in the early, high-resolution stages.

Block: kxk conv (stride s, ``in_ch * expand_ratio`` outputs) -> BN -> SiLU -> 1x1 project conv ->
BN (no activation); with expand ratio 1 the block is a single kxk conv -> BN -> SiLU straight to
``out_ch``. No Squeeze-Excitation (the paper and torchvision use none in Fused-MBConv). Residual
with stochastic depth when stride 1 and ``in_ch == out_ch``. Module names follow torchvision's
``FusedMBConv``: ``block.0`` (fused expand, or the only conv), ``block.1`` (project), each a
``(conv, bn[, act])`` Sequential.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.layers.mbconv import ConvNormAct, StochasticDepth, make_divisible

__all__ = ["FusedMBConv"]


class FusedMBConv(nn.Module):
    """Fused mobile inverted bottleneck (EfficientNetV2), torchvision layout.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel_size: kernel of the fused convolution (3 in EfficientNetV2).
        stride: stride of the fused convolution (1 or 2).
        expand_ratio: hidden width ``make_divisible(in_ch * expand_ratio)`` (1 or 4 in V2).
        stochastic_depth_prob: drop probability of the residual branch.
        norm_layer: normalisation constructor (V2 uses BN with eps 1e-3).

    Shape:
        - Input: ``(B, in_ch, H, W)``
        - Output: ``(B, out_ch, ceil(H / stride), ceil(W / stride))``
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        expand_ratio: float = 4,
        stochastic_depth_prob: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"FusedMBConv stride must be 1 or 2, got {stride!r}")
        if kernel_size % 2 != 1:
            raise ConfigError(f"FusedMBConv kernel_size must be odd, got {kernel_size!r}")
        if expand_ratio < 1:
            raise ConfigError(f"FusedMBConv expand_ratio must be >= 1, got {expand_ratio!r}")
        self.use_res_connect = stride == 1 and in_ch == out_ch
        hidden = make_divisible(in_ch * expand_ratio, 8)
        if hidden != in_ch:
            layers: list[nn.Module] = [
                ConvNormAct(in_ch, hidden, kernel_size, stride, norm_layer=norm_layer),
                ConvNormAct(hidden, out_ch, 1, norm_layer=norm_layer, act_layer=None),
            ]
        else:
            layers = [ConvNormAct(in_ch, out_ch, kernel_size, stride, norm_layer=norm_layer)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)  # (B, out_ch, H', W')
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out
