"""CRNet, the small CT/X-ray classifier of seed 000.

Reference: the thesis "LTC recurrent neurons in CNN" (seed 000) and its CRNet
(ct-based-covid-19-classification, ``covid19_crnet.py``). Three blocks
Conv(7x7, s1, p3, bias) -> [BatchNorm on block 1 only] -> ReLU -> MaxPool(3, s2), channels
32/64/128, then AvgPool(2, 2). At 224x224 the features are (128, 13, 13); with a linear head,
``in_chans=1, num_classes=2`` has exactly 546,882 parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.layers.activations import get_act_layer
from archlab.layers.blocks import make_activation
from archlab.layers.normalized import NormalizedConv2d
from archlab.models._classifier import Classifier, build_classifier

__all__ = ["CRNet", "crnet"]


class CRNetBlock(nn.Sequential):
    """Conv(k, stride 1, same padding, bias) -> [BN] -> ReLU -> MaxPool(3, 2).

    Shape:
        - Input: ``(B, in_ch, H, W)``
        - Output: ``(B, out_ch, floor((H - 3) / 2) + 1, ...)``
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 7, batch_norm: bool = False,
                 act_layer: type[nn.Module] = nn.ReLU, norm_conv: bool = False):
        conv = NormalizedConv2d if norm_conv else nn.Conv2d
        layers: dict[str, nn.Module] = {
            "conv": conv(in_ch, out_ch, kernel_size, stride=1, padding=kernel_size // 2, bias=True)
        }
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_ch)
        layers["act"] = make_activation(act_layer)
        layers["pool"] = nn.MaxPool2d(3, stride=2)
        super().__init__(OrderedDict(layers))


class CRNet(nn.Module):
    """The CRNet feature extractor.

    Args:
        in_chans: input channels.
        channels: output channels of the three blocks.
        kernel_size: convolution kernel size (7 in the paper).
        activation: activation name of every block (``relu``).
        norm_conv: weight-normalized convolutions (seed 002's neuron; same parameters).

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, channels[-1], H', W')``; (128, 13, 13) for 224x224.
    """

    def __init__(self, in_chans: int = 1, channels: Sequence[int] = (32, 64, 128), kernel_size: int = 7,
                 activation: str = "relu", norm_conv: bool = False):
        super().__init__()
        chs = [in_chans, *channels]
        act = get_act_layer(activation)
        for i in range(len(channels)):
            # Only the first block has BatchNorm, as in the original CRNet.
            block = CRNetBlock(chs[i], chs[i + 1], kernel_size, batch_norm=i == 0, act_layer=act, norm_conv=norm_conv)
            self.add_module(f"block{i + 1}", block)
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x  # (B, C, H', W')


@register_model
def crnet(
    *,
    num_classes: int,
    in_chans: int,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
    channels: Sequence[int] = (32, 64, 128),
    kernel_size: int = 7,
    activation: str = "relu",
    norm_conv: bool = False,
) -> Classifier:
    """CRNet (seed 000) with a linear head on the flattened (128, 13, 13) map by default."""
    return build_classifier(
        CRNet(in_chans, channels, kernel_size, activation, norm_conv),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=224,
        model_name="crnet",
    )
