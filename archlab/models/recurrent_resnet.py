"""Recurrent ResNet: one residual block per stage, its weights shared over ``unroll`` steps (seed 003).

Reference: Liao & Poggio, "Bridging the Gaps Between Residual Learning, Recurrent Neural Networks
and Visual Cortex", CBMM Memo 047 (arXiv 1604.03640). A stage of a ResNet computes
x_{t+1} = x_t + F_t(x_t); sharing F over t turns it into a recurrent network unrolled ``unroll``
times (a shallow RNN), whose parameters do not depend on the number of steps. ``tie_weights=False``
gives the equivalent deep ResNet with ``unroll`` independent blocks per stage; with blocks that
are copies of the shared one (:meth:`RecurrentResNet.untied`) it computes exactly the same function.

Layout (CIFAR-style, widths 16/32/64 by default): 3x3 stem conv -> per stage: [transition
BN-ReLU-Conv3x3/2 between stages (not shared: it changes the shape)] -> ``unroll`` x
(x <- x + F(x)) -> final BN-ReLU. F is the pre-activation residual function
BN-ReLU-Conv3x3-BN-ReLU-Conv3x3 (He et al., "Identity Mappings in Deep Residual Networks", 2016),
so that the update is exactly x + F(x) with no activation after the addition, as in the paper's
formulation.

BatchNorm (``norm``): ``"shared"`` uses one set of BN layers for all steps (pure weight sharing;
the parameter count is independent of ``unroll``); ``"per_step"`` gives every step its own BN
layers (Liao & Poggio's "time-specific" BN) while the convolutions stay shared — this adds
4 * C parameters per extra step and stage.

``residual=False`` drops the identity (x <- F(x)): the plain CNN of the same depth, seed 003's
first baseline. ``activation`` replaces every ReLU (e.g. ``softplus``, ln(1 + e^x), the smooth
activation seed 003 describes); it has no parameters, so the count does not change.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.errors import ConfigError
from archlab.layers.activations import get_act_layer
from archlab.models._classifier import Classifier, build_classifier
from archlab.pretrained import WeightLayout

__all__ = ["PreActUnit", "RecurrentStage", "RecurrentResNet", "recurrent_resnet", "NORM_MODES"]

NORM_MODES = ("shared", "per_step")


class PreActUnit(nn.Module):
    """The residual function F(x) = Conv(ReLU(BN(Conv(ReLU(BN(x)))))), with 1 or per-step BN sets.

    Args:
        channels: channels C (input = output).
        num_norms: number of BN sets; step ``t`` uses set ``t`` (``num_norms == 1``: always set 0).
        activation: activation name (``relu``).

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(self, channels: int, num_norms: int = 1, activation: str = "relu"):
        super().__init__()
        self.bn1 = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(num_norms))
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(num_norms))
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.relu = get_act_layer(activation)()

    def forward(self, x: torch.Tensor, step: int = 0) -> torch.Tensor:
        i = step if len(self.bn1) > 1 else 0
        out = self.conv1(self.relu(self.bn1[i](x)))  # (B, C, H, W)
        return self.conv2(self.relu(self.bn2[i](out)))  # (B, C, H, W)


class RecurrentStage(nn.Module):
    """``unroll`` residual steps x <- x + F(x) at one resolution, F shared or not.

    Args:
        channels: channels C.
        unroll: number of steps T (>= 1).
        tie_weights: one shared F (module ``block``) or T independent ones (``blocks.0..T-1``).
        norm: ``"shared"`` or ``"per_step"`` BN inside a shared F (ignored when untied: every block
            has its own BN anyway).
        residual: add the identity (``False``: x <- F(x)).
        activation: activation name inside F.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(self, channels: int, unroll: int, *, tie_weights: bool = True, norm: str = "shared",
                 residual: bool = True, activation: str = "relu"):
        super().__init__()
        self.unroll, self.tie_weights, self.norm, self.residual = unroll, tie_weights, norm, residual
        self.activation = activation
        if tie_weights:
            self.block = PreActUnit(channels, unroll if norm == "per_step" else 1, activation)
        else:
            self.blocks = nn.ModuleList(PreActUnit(channels, 1, activation) for _ in range(unroll))

    def step_function(self, t: int) -> nn.Module:
        """The F used at step ``t`` (the same module for every t when tied)."""
        return self.block if self.tie_weights else self.blocks[t]

    def untied(self) -> RecurrentStage:
        """An untied stage whose block t is a copy of the function applied at step t."""
        if not self.tie_weights:
            return copy.deepcopy(self)
        ch = self.block.conv1.in_channels
        new = RecurrentStage(ch, self.unroll, tie_weights=False, residual=self.residual, activation=self.activation)
        for t, blk in enumerate(new.blocks):
            i = t if len(self.block.bn1) > 1 else 0
            blk.conv1.load_state_dict(self.block.conv1.state_dict())
            blk.conv2.load_state_dict(self.block.conv2.state_dict())
            blk.bn1[0].load_state_dict(self.block.bn1[i].state_dict())
            blk.bn2[0].load_state_dict(self.block.bn2[i].state_dict())
        return new.to(next(self.parameters()).device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for t in range(self.unroll):
            if self.tie_weights:
                f = self.block(x, t)  # (B, C, H, W)
            else:
                f = self.blocks[t](x)  # (B, C, H, W)
            x = x + f if self.residual else f
        return x

    def extra_repr(self) -> str:
        return f"unroll={self.unroll}, tie_weights={self.tie_weights}, norm={self.norm!r}, residual={self.residual}"


class RecurrentResNet(nn.Module):
    """Recurrent (weight-shared) pre-activation ResNet for small images (Liao & Poggio 2016).

    Args:
        in_chans: input channels.
        widths: channels per stage; every stage after the first halves the resolution.
        unroll: steps per stage (an int for all stages, or one per stage).
        tie_weights: share F over the steps of a stage.
        norm: ``"shared"`` or ``"per_step"`` BatchNorm (see the module docstring).
        residual: identity shortcut (``False`` = plain CNN of the same depth).
        activation: activation name of every unit, transition and the final BN-act.

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, widths[-1], H / 2^(S-1), W / 2^(S-1))``; (64, 8, 8) at 32x32 with 3 stages.
    """

    weight_layout = WeightLayout(family="recurrent_resnet", head_map={}, drop_prefixes=(),
                                 first_conv="stem.0.weight")

    def __init__(
        self,
        in_chans: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        unroll: int | Sequence[int] = 7,
        *,
        tie_weights: bool = True,
        norm: str = "shared",
        residual: bool = True,
        activation: str = "relu",
    ):
        super().__init__()
        act = get_act_layer(activation)
        widths = [int(w) for w in widths]
        if not widths or any(w < 1 for w in widths):
            raise ConfigError(f"widths must be positive channel counts, got {widths}")
        unrolls = [int(unroll)] * len(widths) if isinstance(unroll, int) else [int(u) for u in unroll]
        if len(unrolls) != len(widths) or any(u < 1 for u in unrolls):
            raise ConfigError(f"unroll must be an int >= 1 or one int >= 1 per stage ({len(widths)} stages), "
                              f"got {unroll!r}")
        if norm not in NORM_MODES:
            raise ConfigError(f"norm must be one of {NORM_MODES}, got {norm!r}")
        self.widths, self.unrolls = widths, unrolls
        self.tie_weights, self.norm, self.residual = tie_weights, norm, residual
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False))
        self.stages = nn.ModuleList()
        for i, (w, t) in enumerate(zip(widths, unrolls)):
            stage = nn.Module()
            if i > 0:
                stage.transition = nn.Sequential(nn.BatchNorm2d(widths[i - 1]), act(),
                                                 nn.Conv2d(widths[i - 1], w, 3, stride=2, padding=1, bias=False))
            stage.recurrent = RecurrentStage(w, t, tie_weights=tie_weights, norm=norm, residual=residual,
                                             activation=activation)
            self.stages.append(stage)
        self.final = nn.Sequential(nn.BatchNorm2d(widths[-1]), act())
        self.out_channels = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def untied(self) -> RecurrentResNet:
        """The equivalent deep ResNet (``tie_weights=False``) whose blocks copy the shared ones.

        Same outputs as ``self`` (train and eval mode) for the same weights; the copies then train
        independently.
        """
        new = copy.deepcopy(self)
        new.tie_weights = False
        for stage in new.stages:
            stage.recurrent = stage.recurrent.untied()
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w0, H, W)
        for stage in self.stages:
            if hasattr(stage, "transition"):
                x = stage.transition(x)  # (B, w_i, H/2, W/2)
            x = stage.recurrent(x)  # (B, w_i, H', W')
        return self.final(x)  # (B, w_last, H', W')


@register_model
def recurrent_resnet(
    *,
    num_classes: int,
    in_chans: int = 3,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
    widths: Sequence[int] = (16, 32, 64),
    unroll: int | Sequence[int] = 7,
    tie_weights: bool = True,
    norm: str = "shared",
    residual: bool = True,
    activation: str = "relu",
) -> Classifier:
    """Recurrent ResNet (Liao & Poggio 2016), unrolled 7 times per stage by default as in seed 003.

    ``tie_weights=False`` is the equivalent deep ResNet, ``unroll=1`` the shallow one,
    ``residual=False`` the plain CNN; ``norm="per_step"`` unties BatchNorm only; ``activation``
    replaces every ReLU (``softplus`` for seed 003's ln(1 + e^x)).
    """
    backbone = RecurrentResNet(in_chans, widths, unroll, tie_weights=tie_weights, norm=norm, residual=residual,
                               activation=activation)
    return build_classifier(
        backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=32,
        default_head=("linear", {"global_pool": "avg"}),
        model_name="recurrent_resnet",
    )
