"""ncp_conv: the NCP paper's conv head (5 convs, a Dense(4) per final map -> 32 sensory features)."""

import pytest
import torch

import archlab
from archlab.errors import ConfigError
from archlab.models.ncp_conv import PerMapDense


def test_exact_parameter_count_and_features():
    m = archlab.create_model("ncp_conv", num_classes=10, in_chans=1, input_size=28)
    # convs 624 + 21,636 + 15,600 + 27,712 + 4,616; 8 maps of 4x4 -> Dense(4) each: 8 * (16 * 4 + 4);
    # linear head 32 -> 10
    assert sum(p.numel() for p in m.parameters()) == 70_188 + 544 + 330
    assert m.feature_shape == (32,)
    # the paper's unpadded layers on its 66x200 camera frames: maps of 2x19
    m = archlab.create_model("ncp_conv", num_classes=1, in_chans=3, input_size=(66, 200), padding="valid")
    assert m.backbone.dense.in_per_map == 2 * 19


def test_per_map_dense_equals_one_linear_per_map():
    torch.manual_seed(0)
    dense = PerMapDense(maps=3, in_per_map=6, out_per_map=4)
    x = torch.randn(5, 3, 2, 3)
    expected = torch.cat([x[:, c].flatten(1) @ dense.weight[c].T + dense.bias[c] for c in range(3)], dim=1)
    torch.testing.assert_close(dense(x), expected)


def test_feeds_the_original_ncp_head():
    m = archlab.create_model("ncp_conv", num_classes=2, in_chans=3, input_size=32, head="ncp_original")
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_bad_input():
    with pytest.raises(ConfigError, match="too small for conv"):
        archlab.create_model("ncp_conv", num_classes=2, in_chans=1, input_size=28, padding="valid")
    with pytest.raises(ConfigError, match="padding must be"):
        archlab.create_model("ncp_conv", num_classes=2, in_chans=1, padding="full")
