"""Reusable building blocks, one concept per file."""

from archlab.layers.activations import get_act_layer
from archlab.layers.blocks import BasicBlock, Bottleneck
from archlab.layers.dense import DenseBlock, DenseLayer, Transition
from archlab.layers.mbconv import MBConv, StochasticDepth
from archlab.layers.squeeze_excite import SqueezeExcitation, record_excitations
from archlab.layers.spinal import SpinalFC
from archlab.layers.rotation_conv import RotationInvariantConv2d
from archlab.layers.normalized import NormalizedConv2d, NormalizedLinear
from archlab.layers.gated_connection import GatedConnection
from archlab.layers import wirings
from archlab.layers.wirings import Wiring
from archlab.layers.ltc import LTC, LTCCell
from archlab.layers.cfc import CfC, CfCCell, WiredCfCCell
from archlab.layers.sequence import SequenceAdapter

__all__ = ["get_act_layer", "BasicBlock", "Bottleneck", "DenseBlock", "DenseLayer", "Transition", "MBConv", "StochasticDepth", "SqueezeExcitation", "record_excitations", "SpinalFC"]
__all__ += ["wirings", "Wiring", "LTC", "LTCCell", "CfC", "CfCCell", "WiredCfCCell", "SequenceAdapter"]
