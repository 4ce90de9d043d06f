"""SqueezeExcitation: torchvision names, the SENet computation, recording."""

import pytest
import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.layers.squeeze_excite import SqueezeExcitation, record_excitations, squeeze_channels_for


def test_torchvision_names_and_parameter_count():
    se = SqueezeExcitation(64, 16)
    assert list(se.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert se.fc1.weight.shape == (16, 64, 1, 1) and se.fc2.weight.shape == (64, 16, 1, 1)
    assert sum(p.numel() for p in se.parameters()) == 64 * 16 + 16 + 16 * 64 + 64
    assert isinstance(se.avgpool, nn.AdaptiveAvgPool2d)


def test_reduction_ratio_gives_squeeze_width():
    assert SqueezeExcitation(64).squeeze_channels == 4  # r = 16
    assert SqueezeExcitation(64, reduction=8).squeeze_channels == 8
    assert SqueezeExcitation(8, reduction=16).squeeze_channels == 1  # never 0
    assert squeeze_channels_for(100, 16) == 6


def test_matches_the_senet_formula():
    se = SqueezeExcitation(6, 3)
    x = torch.randn(2, 6, 5, 4)
    z = x.mean(dim=(2, 3))  # squeeze (B, C)
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    s = torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)  # excitation (B, C)
    torch.testing.assert_close(se(x), x * s[:, :, None, None])


def test_silu_activation_option():
    se = SqueezeExcitation(4, 2, act_layer="silu")
    assert isinstance(se.activation, nn.SiLU)


def test_recording_excitation_values():
    se = SqueezeExcitation(6, 3)
    x = torch.randn(3, 6, 4, 4)
    se(x)
    assert se.last_excitation is None  # off by default
    se.record = True
    se(x)
    torch.testing.assert_close(se.last_excitation, se.excitation(x).flatten(1))
    assert se.last_excitation.shape == (3, 6) and not se.last_excitation.requires_grad


def test_record_excitations_context_collects_and_restores():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), SqueezeExcitation(8, 2), nn.Conv2d(8, 4, 1), SqueezeExcitation(4, 2))
    with record_excitations(model) as store:
        model(torch.randn(2, 3, 8, 8))
        model(torch.randn(5, 3, 8, 8))
    assert list(store) == ["1", "3"]
    assert [t.shape for t in store["1"]] == [(2, 8), (5, 8)]
    assert all(((t > 0) & (t < 1)).all() for ts in store.values() for t in ts)
    assert model[1].record is False and model[1].last_excitation is None
    with record_excitations(model, names=["3"]) as store:
        model(torch.randn(2, 3, 8, 8))
    assert list(store) == ["3"]


def test_bad_arguments():
    with pytest.raises(ConfigError, match="positive channel"):
        SqueezeExcitation(0)
    with pytest.raises(ConfigError, match="reduction"):
        SqueezeExcitation(8, reduction=0)
    with pytest.raises(ConfigError, match="squeeze_channels"):
        SqueezeExcitation(8, 0)
