"""Sequence adapters: how a CNN feature map becomes a sequence for a recurrent head.

Reference: Truong Minh Hieu, "Liquid Time-constant: an adoption of recurrent neurons to
convolutional neural networks" (bachelor's thesis progress report, 2022; seed 000), which feeds the
last CRNet tensor to a Neural Circuit Policy along the y-axis (rows), the z-axis (channels), as
patches, and later as x-y positions and overlapping ("slide") patches.

An adapter optionally reduces the map first (adaptive average/max pool to ``pool``, then a 1x1
convolution to ``channels``, as the thesis' (128, 13, 13) -> (16, 13, 13)), cuts it into steps, and
projects each step's features to the number of sensory neurons with a learned Linear layer when the
two differ.

Modes (``x`` = width, ``y`` = height, ``z`` = channels):

* ``rows``: step = a row (T = H), features = x * z (C W);
* ``columns``: step = a column (T = W), features = y * z (C H);
* ``channels``: step = a channel (T = C), features = x * y (H W);
* ``patches``: step = a ``size`` x ``size`` patch (row-major; overlapping when ``stride < size``),
  features = z * size * size;
* ``xy``: step = a position (T = H W, row-major), features = the channel vector (C).

:class:`MixedSequence` reads one map in several modes and puts the sequences one after the other
(the thesis' mixed use of the y- and z-axis, ``rows`` + ``channels``); every part must give the same
features per step (a projection to the sensory neurons does that).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError, IncompatibleError, UnknownNameError

__all__ = ["SequenceAdapter", "MixedSequence", "SEQUENCE_MODES"]

SEQUENCE_MODES = ("rows", "columns", "channels", "patches", "xy")


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = (value[0], value[1])
    else:
        raise ConfigError(f"{name} must be an int or (height, width), got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ConfigError(f"{name} must hold positive ints, got {value!r}")
    return (int(pair[0]), int(pair[1]))


class SequenceAdapter(nn.Module):
    """Turn a feature map ``(B, C, H, W)`` into a sequence ``(B, T, F)``.

    Args:
        in_shape: per-sample feature shape ``(C, H, W)``; flat features ``(F,)`` are read as a
            ``(1, 1, F)`` map (one row of F positions).
        mode: ``"rows"``, ``"columns"``, ``"channels"``, ``"patches"`` or ``"xy"``.
        pool: adaptive pool to this size (int or (h, w)) first; ``None`` keeps the map. A size
            larger than the map interpolates by adaptive averaging.
        pool_type: ``"avg"`` or ``"max"``.
        channels: a 1x1 convolution to this many channels (after the pool); ``None`` keeps them.
        patch_size: patch height/width for ``mode="patches"`` (int or (h, w)).
        stride: patch stride (default ``patch_size``; smaller = overlapping patches).
        out_features: project each step's features to this many with a Linear layer when they
            differ (``None`` keeps the step features).

    Attributes:
        steps: sequence length T.
        step_features: features per step before the projection.
        out_features: features per step of the output.
        map_shape: ``(C, H, W)`` after the pool and the 1x1 convolution.

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, steps, out_features)``

    Raises:
        IncompatibleError: a patch that does not fit the feature map (the message
            names the parameter, its value and the limit).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        mode: str = "channels",
        pool: int | tuple[int, int] | None = None,
        pool_type: str = "avg",
        channels: int | None = None,
        patch_size: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        out_features: int | None = None,
    ):
        super().__init__()
        if mode not in SEQUENCE_MODES:
            raise UnknownNameError("sequence mode", str(mode), SEQUENCE_MODES)
        if pool_type not in ("avg", "max"):
            raise ConfigError(f"pool_type must be 'avg' or 'max', got {pool_type!r}")
        if len(in_shape) == 1:
            c, h, w = 1, 1, int(in_shape[0])
            self.flat = True
        elif len(in_shape) == 3:
            c, h, w = (int(s) for s in in_shape)
            self.flat = False
        else:
            raise IncompatibleError(f"the sequence adapter takes (C, H, W) or (F,) features, got {tuple(in_shape)}")
        self.in_shape, self.mode = tuple(in_shape), mode

        self.pool: nn.Module | None = None
        if pool is not None:
            ph, pw = _pair(pool, "pool")
            # A pool larger than the map interpolates (each output averages the 1-2 inputs its bin
            # covers). The seed-000 presets use it to get the thesis' 16x16 grids from CRNet's
            # 13x13 map (the thesis pooled the 27x27 map before CRNet's final average pool).
            if (ph, pw) != (h, w):
                self.pool = nn.AdaptiveAvgPool2d((ph, pw)) if pool_type == "avg" else nn.AdaptiveMaxPool2d((ph, pw))
            h, w = ph, pw
        self.conv: nn.Conv2d | None = None
        if channels is not None:
            if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                raise ConfigError(f"channels must be a positive int, got {channels!r}")
            self.conv = nn.Conv2d(c, channels, kernel_size=1)
            c = channels
        self.map_shape = (c, h, w)

        self.patch_size = self.stride = None
        if mode == "patches":
            if patch_size is None:
                raise ConfigError("mode='patches' needs patch_size (e.g. patch_size=4)")
            ks = _pair(patch_size, "patch_size")
            st = _pair(stride if stride is not None else ks, "stride")
            for i, axis, size in ((0, "height", h), (1, "width", w)):
                if ks[i] > size:
                    raise IncompatibleError(
                        f"patch_size={patch_size!r} is larger than the feature map {axis} {size}; "
                        f"use patch_size <= {size} (or a smaller pool)"
                    )
                if st[i] > ks[i]:
                    raise IncompatibleError(
                        f"stride={stride!r} is larger than patch_size={patch_size!r}: pixels between "
                        f"patches would be dropped; use stride <= {ks[i]}"
                    )
                if (size - ks[i]) % st[i]:
                    raise IncompatibleError(
                        f"patches of {ks[i]} with stride {st[i]} do not tile the feature map {axis} "
                        f"{size} ((size - patch_size) must be a multiple of the stride); change "
                        "patch_size, stride or pool"
                    )
            self.patch_size, self.stride = ks, st
            steps = ((h - ks[0]) // st[0] + 1) * ((w - ks[1]) // st[1] + 1)
            feats = c * ks[0] * ks[1]
        elif patch_size is not None or stride is not None:
            raise ConfigError(f"patch_size/stride only apply to mode='patches', not mode={mode!r}")
        elif mode == "rows":
            steps, feats = h, c * w
        elif mode == "columns":
            steps, feats = w, c * h
        elif mode == "channels":
            steps, feats = c, h * w
        else:  # xy
            steps, feats = h * w, c
        self.steps, self.step_features = steps, feats
        self.proj: nn.Linear | None = None
        if out_features is not None:
            if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features < 1:
                raise ConfigError(f"out_features must be a positive int, got {out_features!r}")
            if out_features != feats:
                self.proj = nn.Linear(feats, out_features)
        self.out_features = out_features if out_features is not None else feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flat:
            x = x.view(x.shape[0], 1, 1, -1)  # (B, 1, 1, F)
        if self.pool is not None:
            x = self.pool(x)  # (B, C, h, w)
        if self.conv is not None:
            x = self.conv(x)  # (B, c, h, w)
        b, c, h, w = x.shape
        if self.mode == "rows":
            seq = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, H, C*W)
        elif self.mode == "columns":
            seq = x.permute(0, 3, 1, 2).reshape(b, w, c * h)  # (B, W, C*H)
        elif self.mode == "channels":
            seq = x.reshape(b, c, h * w)  # (B, C, H*W)
        elif self.mode == "xy":
            seq = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        else:
            seq = F.unfold(x, self.patch_size, stride=self.stride).transpose(1, 2)  # (B, L, C*kh*kw)
        if self.proj is not None:
            seq = self.proj(seq)  # (B, T, out_features)
        return seq

    def extra_repr(self) -> str:
        extra = f", patch_size={self.patch_size}, stride={self.stride}" if self.mode == "patches" else ""
        return (
            f"mode={self.mode!r}, map_shape={self.map_shape}, steps={self.steps}, "
            f"step_features={self.step_features}, out_features={self.out_features}{extra}"
        )


class MixedSequence(nn.Module):
    """Several :class:`SequenceAdapter` reads of one map, concatenated along time.

    Args:
        adapters: the parts, in order (e.g. a ``rows`` then a ``channels`` adapter), all with the
            same ``out_features``.

    Attributes:
        adapters: ``nn.ModuleList`` of the parts.
        steps: ``sum`` of the parts' steps.
        out_features: features per step (shared by the parts).
        mode: the parts' modes joined by ``+`` (``"rows+channels"``).

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, sum(steps_i), out_features)``

    Raises:
        IncompatibleError: parts with different features per step.
    """

    def __init__(self, adapters: list[SequenceAdapter]):
        super().__init__()
        if len(adapters) < 2:
            raise ConfigError(f"a mixed sequence needs two or more modes, got {len(adapters)}")
        feats = {a.mode: a.out_features for a in adapters}
        if len(set(feats.values())) != 1:
            raise IncompatibleError(
                f"the sequence modes give different features per step ({feats}); project them to one size "
                "with sensory=N (the NCP head's default 'auto' does)"
            )
        self.adapters = nn.ModuleList(adapters)
        self.steps = sum(a.steps for a in adapters)
        self.out_features = adapters[0].out_features
        self.mode = "+".join(a.mode for a in adapters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([a(x) for a in self.adapters], 1)  # (B, sum T_i, F)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, steps={self.steps}, out_features={self.out_features}"
