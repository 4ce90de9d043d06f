"""DenseLayer / DenseBlock / Transition: dense connectivity and torchvision names."""

import pytest
import torch

from archlab.errors import ConfigError
from archlab.layers.dense import DenseBlock, DenseLayer, Transition


def test_block_concatenates_every_earlier_output():
    blk = DenseBlock(3, 8, growth_rate=4).eval()
    x = torch.randn(2, 8, 6, 6)
    feats = [x]
    for layer in blk.values():
        feats.append(layer(torch.cat(feats, 1)))
    out = blk(x)
    torch.testing.assert_close(out, torch.cat(feats, 1))
    assert out.shape == (2, 8 + 3 * 4, 6, 6) and blk.out_channels == 20
    torch.testing.assert_close(out[:, :8], x)  # the block input passes through unchanged


def test_torchvision_layer_names_and_input_widths():
    blk = DenseBlock(2, 64, growth_rate=32)
    keys = [k for k in blk.state_dict() if k.endswith("weight")]
    assert keys == ["denselayer1.norm1.weight", "denselayer1.conv1.weight", "denselayer1.norm2.weight",
                    "denselayer1.conv2.weight", "denselayer2.norm1.weight", "denselayer2.conv1.weight",
                    "denselayer2.norm2.weight", "denselayer2.conv2.weight"]
    assert blk.denselayer2.conv1.weight.shape == (128, 96, 1, 1)  # bn_size * k from k0 + k maps
    assert blk.source_slices() == [(0, 64), (64, 96), (96, 128)]


def test_layer_without_bottleneck_is_one_3x3_conv():
    layer = DenseLayer(10, 12, bottleneck=False)
    assert layer.conv1.weight.shape == (12, 10, 3, 3) and not hasattr(layer, "conv2")


def test_transition_compresses_and_halves():
    tr = Transition(20, 10)
    assert list(dict(tr.named_children())) == ["norm", "relu", "conv", "pool"]
    assert tr(torch.randn(2, 20, 8, 8)).shape == (2, 10, 4, 4)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        DenseBlock(0, 8, 4)
    with pytest.raises(ConfigError):
        DenseLayer(8, 4, drop_rate=1.0)
