"""SpinalNet's "VGG-5" for 28x28 grey images (seed 001).

Reference: Kabir et al., "SpinalNet" (2020), official ``MNIST_VGG`` scripts. Ten 3x3 convolutions
with BatchNorm and ReLU in groups 64-64 / 128-128 / 256-256-256 / 256-256-256, a 2x2 max-pool
after each group (28 -> 14 -> 7 -> 3 -> 1), giving 256 features (3,508,416 parameters for one
input channel). Default head Dropout(.5) -> Linear 256->512 -> BN -> ReLU -> Dropout(.5) ->
Linear 512->C (137,738 parameters for 10 classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.models._classifier import Classifier, build_classifier

__all__ = ["VGG5", "vgg5"]

_GROUPS = ((64, 64), (128, 128), (256, 256, 256), (256, 256, 256))


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 'same' convolution -> BatchNorm -> ReLU. Shape: ``(B, in_ch, H, W) -> (B, out_ch, H, W)``."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class VGG5(nn.Module):
    """VGG-5 feature extractor: four conv groups, each followed by MaxPool(2).

    Shape:
        - Input: ``(B, in_chans, 28, 28)``
        - Output: ``(B, 256, 1, 1)``
    """

    def __init__(self, in_chans: int = 1, groups: Sequence[Sequence[int]] = _GROUPS):
        super().__init__()
        ch = in_chans
        for i, group in enumerate(groups):
            layers = []
            for width in group:
                layers.append(conv_bn_relu(ch, width))
                ch = width
            layers.append(nn.MaxPool2d(2))
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.children():
            x = stage(x)
        return x  # (B, 256, 1, 1)


@register_model
def vgg5(
    *,
    num_classes: int,
    in_chans: int,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
) -> Classifier:
    """SpinalNet's VGG-5 with its default MLP head."""
    return build_classifier(
        VGG5(in_chans),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=28,
        default_head=("mlp", {"hidden": (512,), "batch_norm": True, "drop_rate": 0.5}),
        model_name="vgg5",
    )
