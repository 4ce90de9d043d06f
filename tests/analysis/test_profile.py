import pytest
import torch

import archlab
from archlab.errors import ConfigError


def test_profile_counts_and_flops():
    m = archlab.create_model("mnist_cnn", num_classes=10, in_chans=1)
    p = archlab.profile(m, (1, 28, 28))
    assert p.params_total == 21_840
    assert p.params_per_module == {"backbone": 5_280, "head": 16_560}
    # conv1: 10*24*24 outputs x 25 MACs; conv2: 20*8*8 x 250 MACs; fc: 320*50 + 50*10 MACs (2 FLOPs each)
    expected = 2 * (10 * 24 * 24 * 25 + 20 * 8 * 8 * 250 + 320 * 50 + 50 * 10)
    assert p.flops == expected
    assert p.stage_shapes["backbone.pool2"] == [20, 4, 4]
    assert p.stage_shapes["head"] == [10]


def test_profile_trainable_and_latency():
    m = archlab.create_model("mnist_cnn", num_classes=10, in_chans=1)
    for q in m.backbone.parameters():
        q.requires_grad_(False)
    p = archlab.profile(m, (2, 1, 28, 28), latency_runs=3)
    assert p.params_trainable == 16_560
    assert p.latency_ms is not None and p.latency_ms > 0
    assert p.input_size == (2, 1, 28, 28)


def test_profile_bad_input_size():
    m = archlab.create_model("mnist_cnn", num_classes=10, in_chans=1)
    with pytest.raises(ConfigError, match="input_size"):
        archlab.profile(m, (28, 28))
    with pytest.raises(ConfigError, match="cannot profile"):
        archlab.profile(m, (3, 28, 28))
