"""The mini-VGG of seed 002's CIFAR-10 experiments.

Reference: the blog in seed 002 (Keras model): Conv32 3x3 same, Conv32 3x3 valid, MaxPool2,
Dropout .25, Conv64 same, Conv64 valid, MaxPool2, Dropout .25, Flatten, Dense 512 ReLU,
Dropout .5, Dense C. On 3x32x32 inputs with 10 classes it has exactly 1,250,858 parameters.
The backbone ends with the Dense-512 layer; the default head is Dropout(.5) -> Linear(512, C).

Options reproduce the blog's variants without changing the parameters or their names:
- ``rot_convs=k, rotations=R``: the last ``k`` convs are :class:`RotationInvariantConv2d` (the blog's
  ``R_rot_k``: ``4_rot_1`` .. ``8_rot_4``); or a list of 1-based conv indices.
- ``norm_conv`` / ``norm_dense``: weight-normalized convs / Dense layers (the blog's ``norm_conv``,
  ``norm_dense``, ``norm_conv_dense``). ``norm_dense`` covers the Dense-512 layer *and* every Linear
  of the head, as the blog replaced all Dense layers (a head rebuilt by ``reset_classifier`` is an
  ordinary one).
- ``conv_bias=False``: the blog's code (``bias=False``), 1,250,666 parameters.
- ``rot_pool``: how a rotation-invariant conv merges its rotations: ``max`` (the blog), ``concat``
  (all ``rotations`` responses kept as channels, so the next layer is ``rotations`` times wider) or
  ``squeeze`` (concatenated, then a 1x1 convolution back to the conv's width: the blog's "squeeze
  net style compression", ``out**2 * rotations`` extra parameters per rotation conv).
- ``activation``: the activation after every conv and the Dense layer (``relu``; e.g. ``elu`` for
  the blog's "weight-normalized neurons with another activation").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.errors import ConfigError
from archlab.layers.activations import get_act_layer
from archlab.layers.blocks import make_activation
from archlab.layers.normalized import NormalizedConv2d, NormalizedLinear, normalize_linears
from archlab.layers.rotation_conv import RotationInvariantConv2d
from archlab.models._classifier import Classifier, build_classifier, infer_feature_shape, to_2tuple

__all__ = ["MiniVGG", "mini_vgg", "rotation_conv_indices", "ROT_POOLS"]

_NUM_CONVS = 4
#: how a rotation-invariant conv merges its rotations (see the module docstring).
ROT_POOLS = ("max", "concat", "squeeze")


def rotation_conv_indices(rot_convs: int | Sequence[int]) -> tuple[int, ...]:
    """1-based indices of the rotation-invariant convs: ``k`` -> the last ``k`` of the four.

    Raises:
        ConfigError: ``k`` outside 0..4 or an index outside 1..4.
    """
    if isinstance(rot_convs, bool):
        raise ConfigError(f"rot_convs={rot_convs!r} must be an int 0..4 or a list of conv indices 1..4")
    if isinstance(rot_convs, int):
        if not 0 <= rot_convs <= _NUM_CONVS:
            raise ConfigError(f"rot_convs={rot_convs} must be in 0..{_NUM_CONVS} (the last k of the {_NUM_CONVS} convs)")
        return tuple(range(_NUM_CONVS - rot_convs + 1, _NUM_CONVS + 1))
    idx = tuple(sorted({int(i) for i in rot_convs}))
    if any(not 1 <= i <= _NUM_CONVS for i in idx):
        raise ConfigError(f"rot_convs={list(rot_convs)!r}: conv indices must be in 1..{_NUM_CONVS}")
    return idx


class MiniVGG(nn.Module):
    """Mini-VGG feature extractor (convolutions, then Flatten -> Dense(fc_width) -> ReLU).

    Args:
        in_chans: input channels.
        input_size: (H, W) of the inputs (the Dense layer's width depends on it).
        widths: filters of the two conv stages.
        fc_width: width of the Dense layer ending the backbone.
        drop_rate: dropout after each conv stage (.25 in the blog).
        rot_convs: which convs are rotation-invariant: ``k`` = the last ``k`` (0 = none), or a
            list of 1-based indices.
        rotations: 4 or 8 (see :class:`archlab.layers.RotationInvariantConv2d`).
        norm_conv: weight-normalized convs (:class:`archlab.layers.NormalizedConv2d`).
        norm_dense: weight-normalized Dense-512 layer.
        conv_bias: biases on the convs (the SPEC's count; the blog's code had none).
        rot_pool: ``"max"``, ``"concat"`` or ``"squeeze"`` (see the module docstring).
        activation: activation name after every conv and the Dense layer.

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
        rot_convs: int | Sequence[int] = 0,
        rotations: int = 4,
        norm_conv: bool = False,
        norm_dense: bool = False,
        conv_bias: bool = True,
        rot_pool: str = "max",
        activation: str = "relu",
    ):
        super().__init__()
        c1, c2 = widths
        rot = rotation_conv_indices(rot_convs)
        if isinstance(rotations, bool) or rotations not in (4, 8):
            raise ConfigError(f"rotations={rotations!r} is not supported; allowed: 4 (90 degrees) or 8 (45 degree ring shifts)")
        if rot_pool not in ROT_POOLS:
            raise ConfigError(f"mini_vgg: rot_pool={rot_pool!r} is not supported; allowed: {', '.join(map(repr, ROT_POOLS))}")
        act = get_act_layer(activation)
        self.rot_convs, self.rotations, self.rot_pool = rot, rotations, rot_pool
        width = [in_chans]  # channels the next conv receives (a concat rotation conv widens it)

        def conv(i: int, cout: int, padding: int) -> nn.Conv2d:
            # Every variant is an nn.Conv2d subclass with the same weight/bias: counts and names stay.
            cin = width[0]
            width[0] = cout * rotations if i in rot and rot_pool == "concat" else cout
            if i in rot:
                return RotationInvariantConv2d(
                    cin, cout, rotations=rotations, padding=padding, bias=conv_bias, normalize=norm_conv,
                    pool="max" if rot_pool == "max" else "concat", squeeze=rot_pool == "squeeze",
                )  # fmt: skip
            cls = NormalizedConv2d if norm_conv else nn.Conv2d
            return cls(cin, cout, 3, padding=padding, bias=conv_bias)

        self.stage1 = nn.Sequential(
            conv(1, c1, 1), make_activation(act),  # "same"
            conv(2, c1, 0), make_activation(act),  # "valid"
            nn.MaxPool2d(2), nn.Dropout(drop_rate),
        )
        self.stage2 = nn.Sequential(
            conv(3, c2, 1), make_activation(act),
            conv(4, c2, 0), make_activation(act),
            nn.MaxPool2d(2), nn.Dropout(drop_rate),
        )
        conv_shape = infer_feature_shape(
            nn.Sequential(self.stage1, self.stage2), in_chans, input_size, model_name="mini_vgg"
        )
        flat = conv_shape[0] * conv_shape[1] * conv_shape[2]
        linear = NormalizedLinear if norm_dense else nn.Linear
        self.fc = nn.Sequential(nn.Flatten(1), linear(flat, fc_width), make_activation(act))

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
    rot_convs: int | Sequence[int] = 0,
    rotations: int = 4,
    norm_conv: bool = False,
    norm_dense: bool = False,
    conv_bias: bool = True,
    rot_pool: Literal["max", "concat", "squeeze"] = "max",
    activation: str = "relu",
) -> Classifier:
    """Mini-VGG (seed 002); default head Dropout(.5) -> Linear(512, C).

    ``rot_convs``/``rotations``/``rot_pool``, ``norm_conv``/``norm_dense``, ``activation`` and
    ``conv_bias`` select the blog's variants (see :class:`MiniVGG`); ``norm_dense`` also normalizes every Linear of the head.
    """
    size = to_2tuple(input_size if input_size is not None else 32)
    backbone = MiniVGG(
        in_chans, size, tuple(widths), fc_width, drop_rate,
        rot_convs=rot_convs, rotations=rotations, norm_conv=norm_conv, norm_dense=norm_dense, conv_bias=conv_bias,
        rot_pool=rot_pool, activation=activation,
    )  # fmt: skip
    model = build_classifier(
        backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=32,
        default_head=("linear", {"drop_rate": 0.5}),
        model_name="mini_vgg",
    )
    if norm_dense:
        normalize_linears(model.head)
    return model
