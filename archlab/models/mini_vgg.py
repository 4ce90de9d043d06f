"""The mini-VGG of seed 002's CIFAR-10 experiments.

Reference: the blog in seed 002 (Keras model): Conv32 3x3 same, Conv32 3x3 valid, MaxPool2,
Dropout .25, Conv64 same, Conv64 valid, MaxPool2, Dropout .25, Flatten, Dense 512 ReLU,
Dropout .5, Dense C. On 3x32x32 inputs with 10 classes it has exactly 1,250,858 parameters.
The backbone ends with the Dense-512 layer; the default head is Dropout(.5) -> Linear(512, C).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.models._classifier import Classifier, build_classifier, infer_feature_shape, to_2tuple

__all__ = ["MiniVGG", "mini_vgg"]


class MiniVGG(nn.Module):
    """Mini-VGG feature extractor (convolutions, then Flatten -> Dense(fc_width) -> ReLU).

    Args:
        in_chans: input channels.
        input_size: (H, W) of the inputs (the Dense layer's width depends on it).
        widths: filters of the two conv stages.
        fc_width: width of the Dense layer ending the backbone.
        drop_rate: dropout after each conv stage (.25 in the blog).

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, fc_width)``
    """

    def __init__(
        self,
        in_chans: int = 3,
        input_size: tuple[int, int] = (32, 32),
        widths: tuple[int, int] = (32, 64),
        fc_width: int = 512,
        drop_rate: float = 0.25,
    ):
        super().__init__()
        c1, c2 = widths
        self.stage1 = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, padding=1), nn.ReLU(inplace=True),  # "same"
            nn.Conv2d(c1, c1, 3), nn.ReLU(inplace=True),  # "valid"
            nn.MaxPool2d(2), nn.Dropout(drop_rate),
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c2, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Dropout(drop_rate),
        )
        conv_shape = infer_feature_shape(
            nn.Sequential(self.stage1, self.stage2), in_chans, input_size, model_name="mini_vgg"
        )
        flat = conv_shape[0] * conv_shape[1] * conv_shape[2]
        self.fc = nn.Sequential(nn.Flatten(1), nn.Linear(flat, fc_width), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(x))  # (B, c2, H', W')
        return self.fc(x)  # (B, fc_width)


@register_model
def mini_vgg(
    *,
    num_classes: int,
    in_chans: int,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
    widths: tuple[int, int] = (32, 64),
    fc_width: int = 512,
    drop_rate: float = 0.25,
) -> Classifier:
    """Mini-VGG (seed 002); default head Dropout(.5) -> Linear(512, C)."""
    size = to_2tuple(input_size if input_size is not None else 32)
    return build_classifier(
        MiniVGG(in_chans, size, tuple(widths), fc_width, drop_rate),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=32,
        default_head=("linear", {"drop_rate": 0.5}),
        model_name="mini_vgg",
    )
