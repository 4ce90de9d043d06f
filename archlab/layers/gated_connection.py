"""Learned, gated connectivity between layers (seed 002, "learning network connectivity").

Reference: the blog in seed 002 (raghakot, 2017; code ``exp3/architecture.py``, Keras layer
``Connection``): a layer receives the outputs of *all* previous layers, each resized to the
smallest spatial size among them and multiplied by ``sigmoid(w)`` -- one learned scalar per input
(``shared_weights=True``) or one per feature map -- then merged. Gates near 0 mark connections the
network "tries to get rid of"; they can be read per epoch and pruned.

Departures from the blog, each for a reason:
- Resizing uses PyTorch's ``F.interpolate`` (half-pixel centres) where TF1's ``resize_images``
  used corner alignment; ``area`` is adaptive average pooling (the blog notes TF had no gradient
  for it). Inputs already at the target size are passed through untouched.
- The blog only implemented ``concat``; ``sum``/``max`` (its "ResNet style") and ``squeeze`` (its
  "squeeze net style", a 1x1 convolution to ``m`` maps) are built here. ``sum``/``max`` need equal
  widths, so narrower inputs are padded with zero channels (``sum``) or ignored on the missing
  channels (``max``), as ResNet's option-A shortcut pads with zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError

__all__ = ["GatedConnection", "INTERPOLATIONS", "MERGES", "GATE_ACTIVATIONS"]

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")
MERGES = ("concat", "sum", "max", "squeeze")
#: the gate applied to the logits ``w``: ``sigmoid`` (the blog) or ``identity`` (its "tested
#: without sigmoid": the gate is ``w`` itself, unbounded).
GATE_ACTIVATIONS = ("sigmoid", "identity")


def _allowed(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


class GatedConnection(nn.Module):
    """Resize several feature maps to a common size, gate each by ``sigmoid(w)`` and merge them.

    Args:
        in_channels: channels of every input, in the order they are passed (at least one).
        interpolation: ``"bilinear"`` (the blog's default), ``"nearest"``, ``"bicubic"`` or ``"area"``.
        shared: ``True``: one gate per input (the blog's ``shared_weights``); ``False``: one gate
            per feature map of every input.
        init: initial ``w`` (the gate is ``sigmoid(init)``): one value for all gates, or one per
            input (e.g. the blog's "feed-forward edge 1, the rest 0.5").
        merge: ``"concat"`` (channels add up), ``"sum"``/``"max"`` (widest input's channels),
            ``"squeeze"`` (concat, then a 1x1 convolution with bias to ``squeeze_channels``).
        squeeze_channels: output channels of the ``squeeze`` merge (required for it, else unused).
        input_names: labels of the inputs for plots and tables (default ``in0``, ``in1``, ...).
        gate_activation: ``"sigmoid"`` (gate ``sigmoid(w)``) or ``"identity"`` (gate ``w``).

    Attributes:
        weight: the gate logits ``w``: ``(num_inputs,)`` when shared, else ``(sum(in_channels),)``.
        out_channels: channels of the output.

    Shape:
        - Input: a list of ``(B, in_channels[i], H_i, W_i)`` tensors
        - Output: ``(B, out_channels, min H_i, min W_i)``
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        interpolation: str = "bilinear",
        shared: bool = True,
        init: float | Sequence[float] = 0.5,
        merge: str = "concat",
        squeeze_channels: int | None = None,
        input_names: Sequence[str] | None = None,
        gate_activation: str = "sigmoid",
    ):
        super().__init__()
        if gate_activation not in GATE_ACTIVATIONS:
            raise ConfigError(
                f"gate_activation={gate_activation!r} is not supported; allowed: {_allowed(GATE_ACTIVATIONS)}"
            )
        self.gate_activation = gate_activation
        in_channels = [int(c) for c in in_channels] if isinstance(in_channels, Sequence) else in_channels
        if not isinstance(in_channels, list) or len(in_channels) == 0:
            raise ConfigError(
                f"in_channels={in_channels!r}: a GatedConnection needs a non-empty list of input channel "
                "counts, e.g. [3, 32]"
            )
        if any(c < 1 for c in in_channels):
            raise ConfigError(f"in_channels={in_channels!r}: every channel count must be >= 1")
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation={interpolation!r} is not supported; allowed: {_allowed(INTERPOLATIONS)}")
        if merge not in MERGES:
            raise ConfigError(f"merge={merge!r} is not supported; allowed: {_allowed(MERGES)}")
        if merge == "squeeze" and (
            isinstance(squeeze_channels, bool) or not isinstance(squeeze_channels, int) or squeeze_channels < 1
        ):
            raise ConfigError(
                f"merge='squeeze' needs squeeze_channels (a positive int, the m of the 1x1 squeeze conv), "
                f"got {squeeze_channels!r}"
            )
        inits = [float(init)] * len(in_channels) if isinstance(init, (int, float)) else [float(v) for v in init]
        if len(inits) != len(in_channels):
            raise ConfigError(
                f"init has {len(inits)} values for {len(in_channels)} inputs; give one value or one per input"
            )
        self.in_channels, self.interpolation, self.shared, self.merge = in_channels, interpolation, bool(shared), merge
        self.init = inits
        names = [f"in{i}" for i in range(len(in_channels))] if input_names is None else [str(n) for n in input_names]
        if len(names) != len(in_channels):
            raise ConfigError(f"input_names has {len(names)} names for {len(in_channels)} inputs")
        self.input_names = names
        w = torch.tensor(inits) if self.shared else torch.cat([torch.full((c,), v) for c, v in zip(in_channels, inits)])
        self.weight = nn.Parameter(w)
        total = sum(in_channels)
        self.squeeze = nn.Conv2d(total, squeeze_channels, 1) if merge == "squeeze" else None
        if merge == "concat":
            self.out_channels = total
        elif merge == "squeeze":
            self.out_channels = int(squeeze_channels)
        else:
            self.out_channels = max(in_channels)

    @property
    def num_inputs(self) -> int:
        return len(self.in_channels)

    def gates(self) -> list[torch.Tensor]:
        """Current gate values ``sigmoid(w)``, one detached tensor per input.

        Returns:
            A list of ``num_inputs`` tensors: scalars (shape ``()``) when shared, else ``(C_i,)``.
        """
        g = self.gate(self.weight.detach()).cpu()
        if self.shared:
            return list(g.unbind(0))
        return list(g.split(self.in_channels))

    def gate(self, w: torch.Tensor) -> torch.Tensor:
        """The gate values of logits ``w`` (``sigmoid(w)`` or ``w``). Shape: same as ``w``."""
        return torch.sigmoid(w) if self.gate_activation == "sigmoid" else w

    def input_strengths(self, reduce: str = "max") -> torch.Tensor:
        """One value per input: its gate (shared) or the ``max``/``mean`` of its feature-map gates.

        Shape:
            ``(num_inputs,)``
        """
        if reduce not in ("max", "mean"):
            raise ConfigError(f"reduce={reduce!r} is not supported; allowed: 'max', 'mean'")
        return torch.stack([g.amax() if reduce == "max" else g.mean() for g in self.gates()])

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        if self.interpolation == "area":
            return F.adaptive_avg_pool2d(x, size)  # (B, C, h, w)
        align = False if self.interpolation in ("bilinear", "bicubic") else None
        return F.interpolate(x, size=size, mode=self.interpolation, align_corners=align)  # (B, C, h, w)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != self.num_inputs:
            raise ConfigError(f"GatedConnection built for {self.num_inputs} inputs got {len(inputs)}")
        size = (min(int(x.shape[-2]) for x in inputs), min(int(x.shape[-1]) for x in inputs))
        xs = [self._resize(x, size) for x in inputs]  # each (B, C_i, h, w)
        gate = self.gate(self.weight)
        if self.shared:
            xs = [x * gate[i] for i, x in enumerate(xs)]
        else:
            xs = [x * g.view(1, -1, 1, 1) for x, g in zip(xs, gate.split(self.in_channels))]
        if self.merge in ("concat", "squeeze"):
            y = xs[0] if len(xs) == 1 else torch.cat(xs, 1)  # (B, sum C_i, h, w)
            return y if self.squeeze is None else self.squeeze(y)
        C = self.out_channels
        fill = 0.0 if self.merge == "sum" else float("-inf")
        # Narrower inputs: zero channels for sum; -inf (never the max) for max. The widest input
        # has every channel, so the max stays finite.
        padded = [x if x.shape[1] == C else F.pad(x, (0, 0, 0, 0, 0, C - x.shape[1]), value=fill) for x in xs]
        stacked = torch.stack(padded, 0)  # (N, B, C, h, w)
        return stacked.sum(0) if self.merge == "sum" else stacked.amax(0)  # (B, C, h, w)

    def keep(self, indices: Sequence[int]) -> GatedConnection:
        """A new connection over the inputs ``indices`` only, carrying their current gates.

        The squeeze convolution (when there is one) keeps the columns of the kept inputs.
        """
        idx = sorted({int(i) for i in indices})
        if not idx or idx[0] < 0 or idx[-1] >= self.num_inputs:
            raise ConfigError(f"indices={list(indices)!r} must be a non-empty subset of 0..{self.num_inputs - 1}")
        new = GatedConnection(
            [self.in_channels[i] for i in idx], self.interpolation, self.shared, [self.init[i] for i in idx],
            self.merge, self.squeeze.out_channels if self.squeeze is not None else None,
            [self.input_names[i] for i in idx], self.gate_activation,
        )  # fmt: skip
        offsets = [0]
        for c in self.in_channels:
            offsets.append(offsets[-1] + c)
        chans = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in idx])
        with torch.no_grad():
            new.weight.copy_(self.weight[torch.tensor(idx)] if self.shared else self.weight[chans])
            if self.squeeze is not None:
                new.squeeze.weight.copy_(self.squeeze.weight[:, chans])
                new.squeeze.bias.copy_(self.squeeze.bias)
        return new.to(self.weight.device)

    def extra_repr(self) -> str:
        s = f"in_channels={self.in_channels}, merge={self.merge!r}, shared={self.shared}"
        s += f", gate_activation={self.gate_activation!r}" if self.gate_activation != "sigmoid" else ""
        return s + f", interpolation={self.interpolation!r}"
