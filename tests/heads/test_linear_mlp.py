import pytest
import torch

import archlab
from archlab.errors import ConfigError


def test_create_head_on_flat_features():
    head = archlab.create_head("linear", in_features=20, num_classes=3)
    assert head(torch.randn(4, 20)).shape == (4, 3)
    assert sum(p.numel() for p in head.parameters()) == 20 * 3 + 3


def test_linear_head_pooling_modes():
    x = torch.randn(2, 8, 4, 4)
    from archlab.heads import LinearHead

    assert LinearHead((8, 4, 4), 3).fc.in_features == 128
    h = LinearHead((8, 4, 4), 3, global_pool="avg")
    assert h.fc.in_features == 8
    torch.testing.assert_close(h(x), h.fc(x.mean((2, 3))))


def test_mlp_default_is_three_fc_layers():
    head = archlab.create_head("mlp", in_features=64, num_classes=2)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 1000), (1000, 100), (100, 2)]


def test_mlp_dropout_placement_mnist_head():
    head = archlab.create_head("mlp", in_features=320, num_classes=10, hidden=(50,), drop_rate=0.5, input_drop_rate=0.0)
    kinds = [type(m).__name__ for m in head.layers]
    assert kinds == ["Linear", "ReLU", "Dropout"]


def test_mlp_bad_values():
    with pytest.raises(ConfigError, match="drop_rate"):
        archlab.create_head("mlp", in_features=3, num_classes=2, drop_rate=1.5)
    with pytest.raises(ConfigError, match="hidden"):
        archlab.create_head("mlp", in_features=3, num_classes=2, hidden=(0,))
    with pytest.raises(ConfigError, match="global_pool"):
        archlab.create_head("linear", in_features=3, num_classes=2, global_pool="mean")
    with pytest.raises(ValueError, match="activation"):
        archlab.create_head("mlp", in_features=3, num_classes=2, act_layer="relux")
