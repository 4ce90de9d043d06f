"""Squeeze-and-Excitation: channel attention from global context (seed 004).

Reference: Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (arXiv 1709.01507).
Global average pool ("squeeze") -> FC (C -> C/r) -> ReLU -> FC (C/r -> C) -> sigmoid ("excitation")
-> channel-wise rescale of the input. The two FC layers are 1x1 convolutions with bias and the
modules carry torchvision's names (``avgpool``, ``fc1``, ``fc2``, ``activation``,
``scale_activation``) so that torchvision's EfficientNet weights load unchanged.

The excitation values (the sigmoid output, one per channel and sample) can be recorded for the
excitation analysis (SPEC §6): set ``record = True`` (or use :func:`record_excitations`) and read
``last_excitation`` after a forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.layers.activations import get_act_layer

__all__ = ["SqueezeExcitation", "record_excitations", "squeeze_channels_for"]


def squeeze_channels_for(channels: int, reduction: float) -> int:
    """Width of the squeeze layer: ``max(1, int(channels / reduction))`` (SENet's C/r)."""
    if reduction <= 0:
        raise ConfigError(f"SE reduction must be > 0, got {reduction!r}")
    return max(1, int(channels / reduction))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation block (Hu et al. 2018), torchvision layout.

    Args:
        channels: channels C of the input (and output).
        squeeze_channels: width of the bottleneck; ``None`` = ``max(1, C // reduction)``.
        reduction: reduction ratio r used when ``squeeze_channels`` is ``None`` (16 in the paper).
        act_layer: activation between the two FC layers (ReLU in SENet, SiLU in EfficientNet).
        scale_layer: gate activation (sigmoid).

    Attributes:
        record: when True, every forward pass stores the excitation values in
            ``last_excitation`` (detached, shape ``(B, C)``).
        last_excitation: the excitation values of the latest recorded forward pass, or ``None``.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int | None = None,
        *,
        reduction: float = 16,
        act_layer: str | type[nn.Module] = "relu",
        scale_layer: str | type[nn.Module] = "sigmoid",
    ):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ConfigError(f"SqueezeExcitation needs a positive channel count, got {channels!r}")
        if squeeze_channels is None:
            squeeze_channels = squeeze_channels_for(channels, reduction)
        if squeeze_channels < 1:
            raise ConfigError(f"squeeze_channels must be >= 1, got {squeeze_channels!r}")
        self.channels, self.squeeze_channels = channels, squeeze_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = get_act_layer(act_layer)()
        self.scale_activation = get_act_layer(scale_layer)()
        self.record = False
        self.last_excitation: torch.Tensor | None = None

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights. Shape: ``(B, C, H, W) -> (B, C, 1, 1)``."""
        s = self.avgpool(x)  # (B, C, 1, 1)
        s = self.activation(self.fc1(s))  # (B, C/r, 1, 1)
        return self.scale_activation(self.fc2(s))  # (B, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.excitation(x)  # (B, C, 1, 1)
        if self.record:
            self.last_excitation = scale.detach().flatten(1)  # (B, C)
        return scale * x  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, squeeze_channels={self.squeeze_channels}"


@contextlib.contextmanager
def record_excitations(model: nn.Module, names: Iterable[str] | None = None
                       ) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Collect the excitation values of every :class:`SqueezeExcitation` in ``model``.

    ``names`` restricts recording to those SE modules (qualified names); ``None`` = all.

    Inside the ``with`` block every forward pass appends, per SE module (by its qualified name,
    in module order), the ``(B, C)`` excitation tensor to the yielded dict. Recording is switched
    off again (and the previous flags restored) on exit.

    Example:
        >>> with record_excitations(model) as exc:
        ...     model(x)
        >>> exc["backbone.layer1.0.se"][0].shape  # (B, C)
    """
    wanted = None if names is None else set(names)
    modules = [(n, m) for n, m in model.named_modules()
               if isinstance(m, SqueezeExcitation) and (wanted is None or n in wanted)]
    store: dict[str, list[torch.Tensor]] = {n: [] for n, _ in modules}
    handles = []
    flags = [m.record for _, m in modules]

    def make_hook(name: str):
        def hook(mod: SqueezeExcitation, _inp, _out) -> None:
            if mod.last_excitation is not None:
                store[name].append(mod.last_excitation)

        return hook

    try:
        for name, m in modules:
            m.record = True
            m.last_excitation = None
            handles.append(m.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()
        for (_, m), flag in zip(modules, flags):
            m.record = flag
            m.last_excitation = None
