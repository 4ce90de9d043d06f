"""DenseNet's building blocks: ``DenseLayer``, ``DenseBlock`` and ``Transition`` (seed 004).

Reference: Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017 (arXiv 1608.06993). Every layer receives the concatenation of the block input and all
earlier layers' outputs and adds ``growth_rate`` new maps. With the bottleneck ("B") a layer is
BN -> ReLU -> Conv1x1 (bn_size * k) -> BN -> ReLU -> Conv3x3 (k); without it BN -> ReLU -> Conv3x3
(k). Transitions ("C" with compression theta < 1) are BN -> ReLU -> Conv1x1 -> AvgPool(2, 2).

Names follow torchvision (``denselayerN.norm1/conv1/norm2/conv2``, ``norm``/``conv``/``pool`` in a
transition), so torchvision's DenseNet weights load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError

__all__ = ["DenseLayer", "DenseBlock", "Transition"]


class DenseLayer(nn.Module):
    """One composite layer H_l of a dense block.

    Args:
        in_ch: channels of the concatenated input.
        growth_rate: new channels k this layer adds.
        bn_size: bottleneck width factor (the 1x1 conv has ``bn_size * k`` outputs).
        drop_rate: dropout on the new maps (training only), as in the paper's no-augmentation runs.
        bottleneck: use the 1x1 bottleneck ("DenseNet-B"); without it ``conv1`` is the 3x3 conv.

    Shape:
        - Input: ``(B, in_ch, H, W)`` (or a list of maps concatenated on channels)
        - Output: ``(B, growth_rate, H, W)``
    """

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0,
                 bottleneck: bool = True):
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.in_channels = in_ch
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        if bottleneck:
            self.conv1 = nn.Conv2d(in_ch, bn_size * growth_rate, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_ch, growth_rate, 3, padding=1, bias=False)
        self.bottleneck = bottleneck
        self.drop_rate = float(drop_rate)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(x, (list, tuple)):
            x = torch.cat(x, 1)  # (B, in_ch, H, W)
        out = self.conv1(self.relu1(self.norm1(x)))  # (B, bn_size*k or k, H, W)
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))  # (B, k, H, W)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers, each fed with every earlier output (modules ``denselayer1..``).

    Args:
        num_layers: layers in the block.
        in_ch: channels k0 of the block input.
        growth_rate: k.
        bn_size, drop_rate, bottleneck: see :class:`DenseLayer`.

    Attributes:
        out_channels: ``in_ch + num_layers * growth_rate``.

    Shape:
        - Input: ``(B, in_ch, H, W)``
        - Output: ``(B, in_ch + num_layers * growth_rate, H, W)``
    """

    def __init__(self, num_layers: int, in_ch: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0, bottleneck: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"a dense block needs >= 1 layer, got {num_layers!r}")
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size, drop_rate, bottleneck))
        self.in_channels, self.growth_rate = in_ch, growth_rate
        self.out_channels = in_ch + num_layers * growth_rate

    def source_slices(self) -> list[tuple[int, int]]:
        """Channel range ``[start, stop)`` of each source in the concatenation: block input, layer 1, ..."""
        k0, k = self.in_channels, self.growth_rate
        n = len(self)
        return [(0, k0)] + [(k0 + i * k, k0 + (i + 1) * k) for i in range(n)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))  # (B, k, H, W)
        return torch.cat(features, 1)  # (B, k0 + L*k, H, W)


class Transition(nn.Sequential):
    """BN -> ReLU -> Conv1x1 (in -> out) -> AvgPool(2, 2) between dense blocks.

    Shape:
        - Input: ``(B, in_ch, H, W)``
        - Output: ``(B, out_ch, H // 2, W // 2)``
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)
