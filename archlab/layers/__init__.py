"""Reusable building blocks, one concept per file."""

from archlab.layers.activations import get_act_layer

__all__ = ["get_act_layer"]
