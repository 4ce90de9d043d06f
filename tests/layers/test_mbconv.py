"""MBConv: torchvision layout, residual rule, stochastic depth, channel rounding."""

import pytest
import torch

from archlab.errors import ConfigError
from archlab.layers.mbconv import MBConv, StochasticDepth, make_divisible


def _bn(p):
    return [f"{p}.weight", f"{p}.bias", f"{p}.running_mean", f"{p}.running_var", f"{p}.num_batches_tracked"]


def test_make_divisible_rounds_to_multiples_of_8_never_below_90_percent():
    assert make_divisible(32 * 1.1) == 32  # 35.2 -> 32 (>= 31.68)
    assert make_divisible(320 * 1.1) == 352
    assert make_divisible(32 * 1.4) == 48  # 44.8 -> 48
    assert make_divisible(1280 * 1.8) == 2304
    assert make_divisible(3) == 8  # minimum = divisor
    assert make_divisible(11) == 16  # 8 would lose > 10 %
    assert all(make_divisible(v) % 8 == 0 for v in (7.5, 13, 99.9, 1000))


def test_expand_block_layout_matches_torchvision():
    blk = MBConv(16, 24, kernel_size=3, stride=2, expand_ratio=6)
    assert list(blk.state_dict()) == [
        "block.0.0.weight", *_bn("block.0.1"),  # expand 1x1
        "block.1.0.weight", *_bn("block.1.1"),  # depthwise
        "block.2.fc1.weight", "block.2.fc1.bias", "block.2.fc2.weight", "block.2.fc2.bias",  # SE
        "block.3.0.weight", *_bn("block.3.1"),  # project
    ]
    assert blk.block[1][0].groups == 96 and blk.block[1][0].stride == (2, 2)
    assert blk.block[2].fc1.weight.shape == (4, 96, 1, 1)  # squeeze = in_ch / 4
    assert len(blk.block[3]) == 2  # linear bottleneck: no activation after the projection
    assert blk(torch.randn(2, 16, 8, 8)).shape == (2, 24, 4, 4)
    assert not blk.use_res_connect


def test_no_expand_conv_for_ratio_one():
    blk = MBConv(32, 16, 3, 1, expand_ratio=1)
    assert list(blk.state_dict())[0] == "block.0.0.weight" and blk.block[0][0].groups == 32
    assert blk.block[1].fc1.weight.shape == (8, 32, 1, 1)


def test_residual_only_when_shapes_agree():
    blk = MBConv(8, 8, 3, 1, expand_ratio=4).eval()
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(blk(x), blk.block(x) + x)
    assert blk.use_res_connect


def test_stochastic_depth_drops_whole_samples_and_is_identity_in_eval():
    torch.manual_seed(0)
    sd = StochasticDepth(0.5)
    x = torch.ones(64, 3, 2, 2)
    y = sd(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()  # row mode
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    sd.eval()
    assert torch.equal(sd(x), x)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        StochasticDepth(1.0)
    with pytest.raises(ConfigError, match="stride"):
        MBConv(8, 8, stride=3)
    with pytest.raises(ConfigError, match="odd"):
        MBConv(8, 8, kernel_size=4)
    with pytest.raises(ConfigError, match="expand_ratio"):
        MBConv(8, 8, expand_ratio=0.5)
