"""BasicBlock / Bottleneck: torchvision names and shapes, SE on the residual branch."""

import torch
import torch.nn as nn

from archlab.layers.blocks import BasicBlock, Bottleneck, conv1x1


def _bn(p):
    return [f"{p}.weight", f"{p}.bias", f"{p}.running_mean", f"{p}.running_var", f"{p}.num_batches_tracked"]


def test_basic_block_names_and_identity_shortcut():
    blk = BasicBlock(16, 16)
    assert list(blk.state_dict()) == ["conv1.weight", *_bn("bn1"), "conv2.weight", *_bn("bn2")]
    x = torch.randn(2, 16, 8, 8)
    assert blk(x).shape == (2, 16, 8, 8)


def test_basic_block_with_zeroed_branch_is_relu_of_identity():
    blk = BasicBlock(4, 4).eval()
    nn.init.zeros_(blk.bn2.weight)
    nn.init.zeros_(blk.bn2.bias)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(blk(x), torch.relu(x))


def test_bottleneck_names_shapes_and_v15_stride():
    down = nn.Sequential(conv1x1(64, 256, 2), nn.BatchNorm2d(256))
    blk = Bottleneck(64, 64, 2, down)
    keys = list(blk.state_dict())
    assert keys == ["conv1.weight", *_bn("bn1"), "conv2.weight", *_bn("bn2"), "conv3.weight", *_bn("bn3"),
                    "downsample.0.weight", *_bn("downsample.1")]
    assert blk.conv2.stride == (2, 2) and blk.conv1.stride == (1, 1)  # ResNet V1.5
    assert blk(torch.randn(2, 64, 8, 8)).shape == (2, 256, 4, 4)


def test_se_sits_on_the_residual_branch_before_the_addition():
    blk = BasicBlock(32, 32, se_reduction=16).eval()
    assert "se.fc1.weight" in blk.state_dict() and blk.se.squeeze_channels == 2
    x = torch.randn(2, 32, 6, 6)
    branch = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(x)))))
    torch.testing.assert_close(blk(x), torch.relu(blk.se(branch) + x))
    bott = Bottleneck(256, 64, se_reduction=16)
    assert bott.se.channels == 256
