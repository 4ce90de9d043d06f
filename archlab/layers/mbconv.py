"""MBConv, the mobile inverted bottleneck with Squeeze-Excitation (EfficientNet's block, seed 004).

References: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018;
Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019 (arXiv 1905.11946);
Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.

Block: [1x1 expand conv -> BN -> SiLU] (skipped when the expand ratio is 1) -> kxk depthwise conv
(stride s) -> BN -> SiLU -> SE(squeeze = input channels / 4, SiLU) -> 1x1 project conv -> BN
(no activation) -> [stochastic depth + identity when stride 1 and in == out]. Module names follow
torchvision: the layers live in ``block`` (``block.0`` expand, ``block.1`` depthwise, ``block.2``
SE, ``block.3`` project; one fewer without expansion), each conv unit a Sequential
``(conv, bn[, act])`` as torchvision's ``Conv2dNormActivation``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.layers.squeeze_excite import SqueezeExcitation

__all__ = ["MBConv", "ConvNormAct", "StochasticDepth", "make_divisible"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90 % of it.

    The MobileNet/EfficientNet channel rounding (torchvision's ``_make_divisible``): round half up
    to a multiple of ``divisor`` (at least ``min_value``, default ``divisor``), and add one more
    ``divisor`` if rounding lost more than 10 %.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * value:
        new_v += divisor
    return new_v


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> [activation], as torchvision's ``Conv2dNormActivation``.

    Keys are ``0.weight`` (conv), ``1.*`` (norm); the activation (index 2) has no parameters.

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
        groups: int = 1,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = nn.SiLU,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            norm_layer(out_ch),
        ]
        if act_layer is not None:
            layers.append(act_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_ch


class StochasticDepth(nn.Module):
    """Drop the residual branch per sample ("row" mode) with probability ``p`` during training.

    Kept samples are scaled by ``1 / (1 - p)`` so the expectation is unchanged; in eval mode (or
    with ``p == 0``) this is the identity. Randomness comes from torch's generator like
    ``nn.Dropout``'s (seeded by the training engine).

    Shape:
        - Input: ``(B, *)``
        - Output: same as the input
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"stochastic depth probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(survival)  # (B, 1, 1, 1)
        return x * keep.div_(survival)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck with Squeeze-Excitation (EfficientNet, torchvision layout).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel_size: depthwise kernel (3 or 5 in EfficientNet).
        stride: depthwise stride.
        expand_ratio: expansion of the hidden width (1 or 6 in EfficientNet); the hidden width is
            ``make_divisible(in_ch * expand_ratio)``.
        se_ratio: SE squeeze width relative to ``in_ch`` (0.25 in EfficientNet; 0 = no SE).
        stochastic_depth_prob: drop probability of the residual branch.
        norm_layer: normalisation constructor (EfficientNet-B5..B7 use eps 1e-3, momentum 0.01).

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
        expand_ratio: float = 6,
        se_ratio: float = 0.25,
        stochastic_depth_prob: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"MBConv stride must be 1 or 2, got {stride!r}")
        if kernel_size % 2 != 1:
            raise ConfigError(f"MBConv kernel_size must be odd, got {kernel_size!r}")
        if expand_ratio < 1:
            raise ConfigError(f"MBConv expand_ratio must be >= 1, got {expand_ratio!r}")
        self.use_res_connect = stride == 1 and in_ch == out_ch
        hidden = make_divisible(in_ch * expand_ratio, 8)
        layers: list[nn.Module] = []
        if hidden != in_ch:
            layers.append(ConvNormAct(in_ch, hidden, 1, norm_layer=norm_layer))
        layers.append(ConvNormAct(hidden, hidden, kernel_size, stride, groups=hidden, norm_layer=norm_layer))
        if se_ratio > 0:
            # EfficientNet sizes the squeeze from the block's *input* channels, not the hidden ones
            squeeze = max(1, int(in_ch * se_ratio))
            layers.append(SqueezeExcitation(hidden, squeeze, act_layer="silu"))
        layers.append(ConvNormAct(hidden, out_ch, 1, norm_layer=norm_layer, act_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)  # (B, out_ch, H', W')
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out
