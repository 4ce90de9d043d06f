"""Activation layers by name, so configs can say ``act_layer: elu``."""

from __future__ import annotations

import torch.nn as nn

from archlab.errors import UnknownNameError

__all__ = ["get_act_layer", "ACT_LAYERS"]

ACT_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,  # ln(1 + e^x): seed 003's smooth ReLU
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


def get_act_layer(name: str | type[nn.Module]) -> type[nn.Module]:
    """The activation class for ``name`` (a class is returned unchanged)."""
    if isinstance(name, type) and issubclass(name, nn.Module):
        return name
    key = str(name).lower()
    if key not in ACT_LAYERS:
        raise UnknownNameError("activation", str(name), ACT_LAYERS)
    return ACT_LAYERS[key]
