"""Spinal FC heads (SpinalNet, seed 001): ``spinal`` and the presets ``spinal_vgg``, ``spinal_resnet``.

Reference: Kabir et al., "SpinalNet: Deep Neural Network with Gradual Input", arXiv:2007.03347
(2020); official code github.com/dipuk0506/SpinalNet. The block itself is
:class:`archlab.layers.spinal.SpinalFC`; a head adds how the backbone's features become its parts:

- ``split="halves"`` (the paper): features are flattened (or globally pooled, ``global_pool``) to
  ``F`` values and cut into two halves of width ``H = ceil(F / 2)``; for odd ``F`` the second half
  is the last ``H`` features, so the halves share the middle feature (nothing is dropped).
- ``split="spatial"`` (the official ResNet scripts): the map is max-pooled to a 2x2 grid and its
  four positions (each a ``C``-vector) feed layers 1-4 in row-major order.

Reference parameter counts reproduced by the tests: ``vgg5`` + ``spinal_vgg`` (10 classes): head
121,354; ``mnist_cnn`` + ``spinal`` with ``num_layers=6, layer_width=8`` (the official default MNIST
script): head 8,538.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab._registry import register_head
from archlab.errors import ConfigError, IncompatibleError
from archlab.heads._base import POOL_MODES, FeaturePool
from archlab.layers.spinal import SpinalFC, check_spinal_options, half_width, split_halves, split_positions

__all__ = ["SpinalHead", "SPLIT_MODES", "spinal_vgg", "spinal_resnet"]

SPLIT_MODES = ("halves", "spatial")
_SPATIAL_POOLS = ("max", "avg")


@register_head("spinal")
class SpinalHead(nn.Module):
    """Spinal FC head: features -> parts -> :class:`~archlab.layers.spinal.SpinalFC` -> logits.

    Each spinal layer is ``[Dropout] -> Linear -> [BatchNorm1d] -> activation``; layer ``i`` sees
    its part (alternating first half, second half, first, ... for ``"halves"``; positions
    (0,0), (0,1), (1,0), (1,1), then again, for ``"spatial"``) concatenated with layer ``i-1``'s
    output; the output is ``[Dropout] -> Linear(num_layers * layer_width -> num_classes)`` over all
    layer outputs.

    Args:
        in_shape: per-sample feature shape ``(C, H, W)`` or ``(F,)``.
        num_classes: number of logits.
        num_layers: spinal layers (default 4, the paper's). At least 2 for ``"halves"`` and 4 for
            ``"spatial"``, so every part reaches a layer.
        layer_width: width of every spinal layer.
        dropout: dropout before every Linear (0 = none), in [0, 1).
        batch_norm: BatchNorm1d after every spinal Linear.
        activation: activation name (``relu``, ``gelu``, ``elu``, ``tanh``, ``silu``, ...).
        global_pool: with ``"halves"``: ``"flatten"`` (default; every position, as the official
            VGG/MNIST scripts), ``"avg"`` or ``"max"`` (pool over H, W first, as a ResNet's fc).
            With ``"spatial"``: how the map is reduced to the 2x2 grid, ``"max"`` (default, as the
            official scripts) or ``"avg"``.
        split: ``"halves"`` or ``"spatial"`` (see the module docstring).

    Raises:
        ConfigError: a bad option (value and allowed range in the message).
        IncompatibleError: ``split="spatial"`` on features without a map of at least 2x2.

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, num_classes)``
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        num_layers: int = 4,
        layer_width: int = 128,
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: str = "relu",
        global_pool: str | None = None,
        split: str = "halves",
    ):
        super().__init__()
        if split not in SPLIT_MODES:
            raise ConfigError(f"split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an int >= 1, got {num_classes!r}")
        num_parts = 2 if split == "halves" else 4
        parts_name = "halves" if split == "halves" else "2x2 positions (split='spatial')"
        # Options first, so a bad value is reported even on a feature shape that cannot fit.
        check_spinal_options(
            num_layers=num_layers,
            layer_width=layer_width,
            dropout=dropout,
            activation=activation,
            batch_norm=batch_norm,
            num_parts=num_parts,
            parts_name=parts_name,
        )
        self.in_shape, self.num_classes, self.split = tuple(in_shape), num_classes, split
        if split == "halves":
            pool_mode = "flatten" if global_pool is None else global_pool
            if pool_mode not in POOL_MODES:
                raise ConfigError(
                    f"global_pool must be one of {', '.join(POOL_MODES)} with split='halves', got {global_pool!r}"
                )
            self.pool: nn.Module = FeaturePool(self.in_shape, pool_mode)
            part_features = half_width(self.pool.out_features)
        else:
            pool_mode = "max" if global_pool is None else global_pool
            if pool_mode not in _SPATIAL_POOLS:
                raise ConfigError(
                    f"global_pool must be one of {', '.join(_SPATIAL_POOLS)} with split='spatial' "
                    f"(it reduces the map to the 2x2 grid), got {global_pool!r}"
                )
            if len(self.in_shape) != 3 or self.in_shape[1] < 2 or self.in_shape[2] < 2:
                raise IncompatibleError(
                    f"split='spatial' needs a feature map (C, H, W) with H >= 2 and W >= 2 to take its "
                    f"2x2 positions, got features of shape {self.in_shape}; use split='halves', or a "
                    "backbone/input_size whose last feature map is at least 2x2"
                )
            # Adaptive pooling equals the official MaxPool2d(2, 2) on a 4x4 map; on other sizes its
            # windows cover every position (MaxPool2d(2, 2) would drop the last row/column of odd maps).
            self.pool = nn.AdaptiveMaxPool2d(2) if pool_mode == "max" else nn.AdaptiveAvgPool2d(2)
            part_features = self.in_shape[0]
        self.global_pool = self.pool.mode if split == "halves" else pool_mode  # as applied
        self.spinal = SpinalFC(
            part_features,
            num_classes,
            num_parts=num_parts,
            num_layers=num_layers,
            layer_width=layer_width,
            dropout=dropout,
            batch_norm=batch_norm,
            activation=activation,
        )

    def split_parts(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features to the parts the spinal layers take.

        Shape: ``(B, *in_shape)`` -> ``(B, 2, ceil(F/2))`` (halves) or ``(B, 4, C)`` (spatial).
        """
        x = self.pool(x)  # (B, F) or (B, C, 2, 2)
        return split_halves(x) if self.split == "halves" else split_positions(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spinal(self.split_parts(x))  # (B, num_classes)

    def extra_repr(self) -> str:
        return f"split={self.split!r}, global_pool={self.global_pool!r}"


@register_head("spinal_vgg")
def spinal_vgg(
    in_shape: tuple[int, ...],
    num_classes: int,
    num_layers: int = 4,
    layer_width: int = 128,
    dropout: float = 0.5,
    batch_norm: bool = True,
    activation: str = "relu",
    global_pool: str | None = None,
    split: str = "halves",
) -> SpinalHead:
    """The official SpinalVGG head (``MNIST_VGG`` scripts): width 128, Dropout .5, BatchNorm, ReLU.

    On ``vgg5`` (256 features, halves of 128) with 10 classes it has exactly 121,354 parameters.
    The transfer-learning scripts' ``SpinalNet_VGG`` is the same head, wider (``layer_width``
    512-1024). Arguments as :class:`SpinalHead`.
    """
    return SpinalHead(
        in_shape,
        num_classes,
        num_layers=num_layers,
        layer_width=layer_width,
        dropout=dropout,
        batch_norm=batch_norm,
        activation=activation,
        global_pool=global_pool,
        split=split,
    )


@register_head("spinal_resnet")
def spinal_resnet(
    in_shape: tuple[int, ...],
    num_classes: int,
    num_layers: int = 4,
    layer_width: int = 20,
    dropout: float = 0.0,
    batch_norm: bool = False,
    activation: str = "relu",
    global_pool: str | None = None,
    split: str = "halves",
) -> SpinalHead:
    """The official transfer-learning ``SpinalNet_ResNet`` head: Linear + ReLU, narrow, no dropout/BN.

    ``layer_width=20`` is the value of the official CIFAR-10/100 transfer scripts ("small for
    ResNet, large for VGG"); other scripts use about the number of classes (e.g. 196 for Stanford
    Cars, 102 for Oxford-102), so set ``layer_width`` per dataset. ``global_pool=None`` means
    ``"avg"`` with ``split="halves"`` (the head replaces a ResNet's ``fc``, which reads globally
    average-pooled features) and ``"max"`` with ``split="spatial"`` (the official CIFAR ResNet
    scripts' spatial head, there with ``layer_width=256``). Arguments as :class:`SpinalHead`.
    """
    if global_pool is None:
        global_pool = "avg" if split == "halves" else "max"
    return SpinalHead(
        in_shape,
        num_classes,
        num_layers=num_layers,
        layer_width=layer_width,
        dropout=dropout,
        batch_norm=batch_norm,
        activation=activation,
        global_pool=global_pool,
        split=split,
    )
