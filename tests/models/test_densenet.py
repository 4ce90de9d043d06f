"""DenseNet: torchvision key list and parameter counts; DenseNet-BC for CIFAR."""

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters
from archlab.errors import ConfigError
from archlab.pretrained import torchvision_state_dict

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_densenet_keys(blocks):
    """torchvision.models.DenseNet keys: features.conv0/norm0, denseblockI.denselayerJ.{norm1,conv1,
    norm2,conv2}, transitionI.{norm,conv} between blocks, norm5, classifier."""
    keys = ["features.conv0.weight", *(f"features.norm0.{s}" for s in BN)]
    for i, n in enumerate(blocks, 1):
        for j in range(1, n + 1):
            p = f"features.denseblock{i}.denselayer{j}"
            keys += [*(f"{p}.norm1.{s}" for s in BN), f"{p}.conv1.weight",
                     *(f"{p}.norm2.{s}" for s in BN), f"{p}.conv2.weight"]
        if i < len(blocks):
            keys += [*(f"features.transition{i}.norm.{s}" for s in BN), f"features.transition{i}.conv.weight"]
    return keys + [f"features.norm5.{s}" for s in BN] + ["classifier.weight", "classifier.bias"]


TORCHVISION = {  # torchvision's model docs (num_params)
    "densenet121": ((6, 12, 24, 16), 7_978_856),
    "densenet161": ((6, 12, 36, 24), 28_681_000),
    "densenet169": ((6, 12, 32, 32), 14_149_480),
    "densenet201": ((6, 12, 48, 32), 20_013_928),
}


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_keys_and_parameter_count(name):
    blocks, params = TORCHVISION[name]
    with torch.device("meta"):
        model = archlab.create_model(name, num_classes=1000)
    assert count_parameters(model) == params
    expected = torchvision_densenet_keys(blocks)
    assert list(model.backbone.state_dict()) == expected[:-2]
    assert list(torchvision_state_dict(model)) == expected


def test_densenet121_shapes():
    with torch.device("meta"):
        sd = torchvision_state_dict(archlab.create_model("densenet121", num_classes=1000))
    assert sd["features.denseblock1.denselayer6.conv1.weight"].shape == (128, 64 + 5 * 32, 1, 1)
    assert sd["features.transition1.conv.weight"].shape == (128, 256, 1, 1)
    assert sd["classifier.weight"].shape == (1000, 1024)


def test_densenet161_is_the_wide_one():
    """k=48, 96 initial maps, bottleneck 4k = 192 (torchvision's densenet161)."""
    with torch.device("meta"):
        model = archlab.create_model("densenet161", num_classes=1000)
    sd = torchvision_state_dict(model)
    assert sd["features.conv0.weight"].shape == (96, 3, 7, 7)
    assert sd["features.denseblock1.denselayer1.norm1.weight"].shape == (96,)
    assert sd["features.denseblock1.denselayer1.conv1.weight"].shape == (192, 96, 1, 1)
    assert sd["features.denseblock1.denselayer1.conv2.weight"].shape == (48, 192, 3, 3)
    assert sd["features.transition1.conv.weight"].shape == (192, 96 + 6 * 48, 1, 1)
    assert sd["classifier.weight"].shape == (1000, 2208) and model.feature_shape == (2208, 7, 7)


def test_final_relu_is_in_the_backbone():
    model = archlab.create_model("densenet_bc", num_classes=5, depth=16)
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.min() >= 0


def test_densenet_bc_100_12_has_about_0_8m_parameters():
    with torch.device("meta"):
        model = archlab.create_model("densenet_bc", num_classes=10)
    assert model.input_size == (32, 32)
    assert count_parameters(model) == 769_162  # the paper's table rounds to 0.8M
    bb = model.backbone
    assert bb.features.conv0.weight.shape == (24, 3, 3, 3)  # 2k initial maps
    assert [len(b) for _, b, _ in bb.dense_blocks()] == [16, 16, 16]
    assert bb.features.transition1.conv.weight.shape == (108, 216, 1, 1)  # theta = 0.5
    assert model.feature_shape == (342, 8, 8)


def test_densenet_bc_options():
    with torch.device("meta"):
        m = archlab.create_model("densenet_bc", num_classes=10, depth=40, growth_rate=12, bottleneck=False,
                                 compression=1.0)
    bb = m.backbone
    assert [len(b) for _, b, _ in bb.dense_blocks()] == [12, 12, 12]
    assert bb.features.conv0.out_channels == 16 and not hasattr(bb.features.denseblock1.denselayer1, "conv2")
    # plain DenseNet L=40 k=12: 1.0M parameters in the paper's table
    assert 1_000_000 < count_parameters(m) < 1_100_000
    small = archlab.create_model("densenet_bc", num_classes=10, depth=10, growth_rate=4, bottleneck=False)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("kw", [{"depth": 99}, {"depth": 40, "bottleneck": True, "growth_rate": 12, "compression": 0}])
def test_densenet_bc_bad_options(kw):
    with pytest.raises(ConfigError):
        archlab.create_model("densenet_bc", num_classes=10, **kw)


def test_initialisation_is_complete_and_seeded():
    def build():
        torch.manual_seed(0)
        return archlab.create_model("densenet_bc", num_classes=10, depth=16).backbone.state_dict()

    a, b = build(), build()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
    w = a["features.denseblock1.denselayer1.conv1.weight"]  # kaiming normal, fan_in = 24
    assert abs(float(w.std()) - (2 / 24) ** 0.5) < 0.05
    assert torch.all(a["features.norm4.weight"] == 1) and torch.all(a["features.norm4.running_var"] == 1)
