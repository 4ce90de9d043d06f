"""The "default" MNIST CNN of the SpinalNet paper (seed 001), PyTorch's classic MNIST example.

Reference: Kabir et al., "SpinalNet: Deep Neural Network with Gradual Input" (2020), official
scripts. conv 1->10 k5, MaxPool2, ReLU, conv 10->20 k5, Dropout2d, MaxPool2, ReLU -> 320 features
(5,280 parameters); default head Linear 320->50 -> ReLU -> Dropout -> Linear 50->C (16,560).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.layers.activations import get_act_layer
from archlab.layers.normalized import NormalizedConv2d
from archlab.models._classifier import Classifier, build_classifier

__all__ = ["MnistCNN", "mnist_cnn"]


class MnistCNN(nn.Module):
    """Two 5x5 convolutions with max-pooling.

    Args:
        in_chans: input channels.
        widths: channels of the two convolutions.
        drop_rate: Dropout2d after the second convolution.
        activation: activation name after each pool (``relu``).
        norm_conv: weight-normalized convolutions (seed 002's neuron; same parameters).

    Shape:
        - Input: ``(B, in_chans, 28, 28)``
        - Output: ``(B, 20, 4, 4)``
    """

    def __init__(self, in_chans: int = 1, widths: tuple[int, int] = (10, 20), drop_rate: float = 0.5,
                 activation: str = "relu", norm_conv: bool = False):
        super().__init__()
        act = get_act_layer(activation)
        conv = NormalizedConv2d if norm_conv else nn.Conv2d
        self.conv1 = conv(in_chans, widths[0], kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.act1 = act()
        self.conv2 = conv(widths[0], widths[1], kernel_size=5)
        self.drop = nn.Dropout2d(drop_rate)
        self.pool2 = nn.MaxPool2d(2)
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pool1(self.conv1(x)))  # (B, 10, 12, 12)
        return self.act2(self.pool2(self.drop(self.conv2(x))))  # (B, 20, 4, 4)


@register_model
def mnist_cnn(
    *,
    num_classes: int,
    in_chans: int,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
    widths: tuple[int, int] = (10, 20),
    drop_rate: float = 0.5,
    activation: str = "relu",
    norm_conv: bool = False,
) -> Classifier:
    """SpinalNet's default MNIST CNN; default head 320 -> 50 -> C with dropout before the output."""
    return build_classifier(
        MnistCNN(in_chans, tuple(widths), drop_rate, activation, norm_conv),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=28,
        default_head=("mlp", {"hidden": (50,), "drop_rate": 0.5, "input_drop_rate": 0.0}),
        model_name="mnist_cnn",
    )
