"""The vgg_classifier head: torchvision's VGG classifier, with and without up-sampling small maps."""

import pytest
import torch

from archlab._registry import build_head
from archlab.errors import ConfigError, IncompatibleError
from archlab.heads.vgg_classifier import VGGClassifierHead


def test_torchvision_layout_at_7x7():
    with torch.device("meta"):
        head = VGGClassifierHead((512, 7, 7), 1000)
    assert list(head.state_dict()) == [f"classifier.{i}.{s}" for i in (0, 3, 6) for s in ("weight", "bias")]
    assert sum(p.numel() for p in head.parameters()) == 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert head.fc is head.classifier[6]


def test_torchvision_initialisation():
    head = VGGClassifierHead((64, 7, 7), 10, hidden=512)
    w = head.classifier[0].weight.detach()
    assert torch.count_nonzero(head.classifier[0].bias) == 0  # bias 0, weight N(0, 0.01)
    assert abs(float(w.std()) - 0.01) < 1e-3 and abs(float(w.mean())) < 1e-3


def test_larger_maps_are_pooled_to_7x7():
    head = VGGClassifierHead((4, 14, 10), 3, hidden=8).eval()
    x = torch.randn(2, 4, 14, 10)
    ref = head.classifier(torch.nn.functional.adaptive_avg_pool2d(x, 7).flatten(1))
    torch.testing.assert_close(head(x), ref)


def test_always_pool_is_the_same_function_with_replicated_weights():
    """A 1x1 map pooled up to 7x7 feeds 49 copies; summing the weights over the copies is equal."""
    exact = VGGClassifierHead((8, 1, 1), 3, hidden=16, always_pool=True).eval()
    small = VGGClassifierHead((8, 1, 1), 3, hidden=16).eval()
    assert exact.classifier[0].in_features == 8 * 49 and small.classifier[0].in_features == 8
    sd = exact.state_dict()
    sd["classifier.0.weight"] = sd["classifier.0.weight"].reshape(16, 8, 49).sum(-1)
    small.load_state_dict(sd)
    x = torch.randn(4, 8, 1, 1)
    torch.testing.assert_close(small(x), exact(x))


def test_registered_and_options():
    head = build_head("vgg_classifier", (16, 2, 2), 5, hidden=32, drop_rate=0.1)
    assert head(torch.randn(3, 16, 2, 2)).shape == (3, 5)
    assert head.classifier[2].p == 0.1 and head.classifier[0].in_features == 64


def test_bad_inputs():
    with pytest.raises(IncompatibleError, match="feature map"):
        VGGClassifierHead((512,), 10)
    with pytest.raises(ConfigError, match="drop_rate"):
        VGGClassifierHead((8, 1, 1), 10, drop_rate=1.0)
    with pytest.raises(ConfigError):
        VGGClassifierHead((8, 1, 1), 10, hidden=0)
