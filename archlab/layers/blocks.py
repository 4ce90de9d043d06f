"""ResNet's residual blocks: ``BasicBlock`` and ``Bottleneck``, with optional Squeeze-Excitation.

Reference: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv 1512.03385); SE placement from Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018
(fig. 3: SE on the residual branch, before the addition). Module names follow torchvision
(``conv1``, ``bn1``, ``conv2``, ``bn2``, [``conv3``, ``bn3``], ``downsample.0/1``); the SE module is
``se`` (an extra key torchvision does not have).

Departure from the paper: like torchvision ("ResNet V1.5"), the Bottleneck puts its stride on the
3x3 convolution instead of the first 1x1 one.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab.layers.squeeze_excite import SqueezeExcitation

__all__ = ["BasicBlock", "Bottleneck", "conv1x1", "conv3x3", "make_activation"]


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, groups=groups, bias=False,
                     dilation=dilation)


def make_activation(act_layer: type[nn.Module]) -> nn.Module:
    """``act_layer`` instantiated in place where it can be (no extra memory, same values)."""
    return act_layer(inplace=True) if act_layer in (nn.ReLU, nn.ELU, nn.SiLU, nn.LeakyReLU) else act_layer()


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut.

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) [* se] + shortcut(x))``

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of the first convolution (and of the projection).
        downsample: shortcut projection (``None`` = identity).
        se_reduction: when given, a :class:`SqueezeExcitation` with this reduction ratio rescales
            the residual branch before the addition.
        act_layer: activation class (its instance keeps torchvision's name ``relu``).

    Shape:
        - Input: ``(B, inplanes, H, W)``
        - Output: ``(B, planes, ceil(H / stride), ceil(W / stride))``
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        se_reduction: float | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = make_activation(act_layer)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes, reduction=se_reduction) if se_reduction else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, planes, H', W')
        out = self.relu(self.bn1(self.conv1(x)))  # (B, planes, H', W')
        out = self.bn2(self.conv2(out))  # (B, planes, H', W')
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4) with an identity (or projection) shortcut.

    Args:
        inplanes: input channels.
        planes: bottleneck width; the output has ``planes * 4`` channels.
        stride: stride of the 3x3 convolution (torchvision's V1.5 placement).
        downsample: shortcut projection (``None`` = identity).
        groups, base_width: ResNeXt/wide-ResNet width options (torchvision's meaning).
        se_reduction: SE ratio on the residual branch (``None`` = no SE).
        act_layer: activation class (its instance keeps torchvision's name ``relu``).

    Shape:
        - Input: ``(B, inplanes, H, W)``
        - Output: ``(B, planes * 4, ceil(H / stride), ceil(W / stride))``
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        base_width: int = 64,
        se_reduction: float | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = make_activation(act_layer)
        out_ch = planes * self.expansion
        self.se = SqueezeExcitation(out_ch, reduction=se_reduction) if se_reduction else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4p, H', W')
        out = self.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, w, H', W')
        out = self.bn3(self.conv3(out))  # (B, 4p, H', W')
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)
