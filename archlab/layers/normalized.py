"""Weight-normalized convolution and linear layers without a learned gain (seed 002).

Reference: the blog in seed 002 ("Exploring alternative neural computational models", raghakot,
2016; code ``exp1/layers.py``): a neuron computes ``(W / |W|) . X`` instead of ``W . X`` so its output
does not change when ``W`` is scaled; the gradient of ``W`` then only moves it along the unit sphere.
``W_norm = W / (sqrt(sum W^2) + 1e-8)`` per output unit (conv: over in x kh x kw), the bias is added
unchanged.

Unlike :func:`torch.nn.utils.parametrizations.weight_norm` (Salimans & Kingma 2016) there is *no*
learned gain ``g``: the blog's neuron has unit-norm weights, so both layers keep exactly the
parameters (and names) of ``nn.Conv2d`` / ``nn.Linear`` and trained weights load either way.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["NormalizedConv2d", "NormalizedLinear", "normalize_weight", "normalize_convs", "normalize_linears", "EPS"]

#: The blog's constant, added to the norm (not under the square root).
EPS = 1e-8


def normalize_weight(weight: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``weight / (||weight_o||_2 + eps)`` for every output unit ``o`` (dim 0).

    Shape:
        - Input: ``(O, ...)`` (``(O, I)`` linear, ``(O, I, kh, kw)`` conv)
        - Output: same as input
    """
    norm = weight.flatten(1).norm(dim=1)  # (O,)
    return weight / (norm + eps).view(-1, *([1] * (weight.dim() - 1)))


class NormalizedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose filters are divided by their L2 norm (over in x kh x kw) + 1e-8.

    Same arguments, parameters and parameter names as :class:`torch.nn.Conv2d`; the stored
    ``weight`` is the raw (unnormalized) parameter.

    Shape:
        - Input: ``(B, in_channels, H, W)``
        - Output: ``(B, out_channels, H', W')`` as ``nn.Conv2d``
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, normalize_weight(self.weight), self.bias)  # (B, O, H', W')

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> NormalizedConv2d:
        """A normalized convolution carrying a copy of ``conv``'s parameters."""
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )  # fmt: skip
        layer.load_state_dict(conv.state_dict())
        return layer


class NormalizedLinear(nn.Linear):
    """``nn.Linear`` whose rows (one per output unit) are divided by their L2 norm + 1e-8.

    Shape:
        - Input: ``(*, in_features)``
        - Output: ``(*, out_features)``
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, normalize_weight(self.weight), self.bias)  # (*, out_features)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> NormalizedLinear:
        """A normalized linear layer carrying a copy of ``linear``'s parameters."""
        layer = cls(
            linear.in_features, linear.out_features, bias=linear.bias is not None,
            device=linear.weight.device, dtype=linear.weight.dtype,
        )  # fmt: skip
        layer.load_state_dict(linear.state_dict())
        return layer


def normalize_convs(module: nn.Module, skip: set[int] | frozenset[int] = frozenset()) -> None:
    """Swap every plain ``nn.Conv2d`` inside ``module`` (not those whose ``id`` is in ``skip``) for a
    :class:`NormalizedConv2d` carrying its parameters: same names and counts, normalized weights."""
    for name, child in module.named_children():
        if type(child) is nn.Conv2d and id(child) not in skip:
            setattr(module, name, NormalizedConv2d.from_conv(child))
        else:
            normalize_convs(child, skip)


def normalize_linears(module: nn.Module) -> None:
    """Swap every plain ``nn.Linear`` inside ``module`` for a :class:`NormalizedLinear` with its weights."""
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, NormalizedLinear.from_linear(child))
        else:
            normalize_linears(child)
