"""ResNet: torchvision key list and parameter counts, CIFAR stem, SE-ResNet."""

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters
from archlab.errors import ConfigError
from archlab.pretrained import torchvision_state_dict


def _bn(p):
    return [f"{p}.weight", f"{p}.bias", f"{p}.running_mean", f"{p}.running_var", f"{p}.num_batches_tracked"]


def torchvision_resnet_keys(layers, bottleneck):
    """torchvision.models.ResNet state-dict keys, in order (documented layout: conv1, bn1, layer1..4
    of BasicBlock (conv1/bn1/conv2/bn2) or Bottleneck (+conv3/bn3), downsample.0/1 on the first
    block of a stage that changes shape, fc)."""
    keys = ["conv1.weight", *_bn("bn1")]
    for s, n in enumerate(layers, 1):
        for b in range(n):
            p = f"layer{s}.{b}"
            for c in range(1, 4 if bottleneck else 3):
                keys += [f"{p}.conv{c}.weight", *_bn(f"{p}.bn{c}")]
            if b == 0 and (s > 1 or bottleneck):
                keys += [f"{p}.downsample.0.weight", *_bn(f"{p}.downsample.1")]
    return keys + ["fc.weight", "fc.bias"]


TORCHVISION = {  # name: (layers, bottleneck, parameters with 1000 classes — torchvision's model docs)
    "resnet18": ((2, 2, 2, 2), False, 11_689_512),
    "resnet34": ((3, 4, 6, 3), False, 21_797_672),
    "resnet50": ((3, 4, 6, 3), True, 25_557_032),
    "resnet101": ((3, 4, 23, 3), True, 44_549_160),
    "resnet152": ((3, 8, 36, 3), True, 60_192_808),
    "wide_resnet50_2": ((3, 4, 6, 3), True, 68_883_240),
    "wide_resnet101_2": ((3, 4, 23, 3), True, 126_886_696),
    "resnext50_32x4d": ((3, 4, 6, 3), True, 25_028_904),
    "resnext101_32x8d": ((3, 4, 23, 3), True, 88_791_336),
    "resnext101_64x4d": ((3, 4, 23, 3), True, 83_455_272),
}


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_keys_and_parameter_count(name):
    layers, bottleneck, params = TORCHVISION[name]
    with torch.device("meta"):  # no memory, no init cost: shapes and names only
        model = archlab.create_model(name, num_classes=1000)
    assert count_parameters(model) == params
    expected = torchvision_resnet_keys(layers, bottleneck)
    assert list(model.backbone.state_dict()) == expected[:-2]
    assert list(torchvision_state_dict(model)) == expected
    assert model.feature_shape == ((2048 if bottleneck else 512), 7, 7)


def test_shapes_of_a_few_torchvision_tensors():
    with torch.device("meta"):
        sd = torchvision_state_dict(archlab.create_model("resnet50", num_classes=1000))
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer1.0.conv1.weight"].shape == (64, 64, 1, 1)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert sd["fc.weight"].shape == (1000, 2048)


def test_cifar_stem_keeps_resolution():
    model = archlab.create_model("resnet18", num_classes=10, cifar_stem=True)
    assert model.input_size == (32, 32)
    assert model.backbone.conv1.weight.shape == (64, 3, 3, 3) and model.backbone.conv1.stride == (1, 1)
    assert isinstance(model.backbone.maxpool, torch.nn.Identity)
    assert model.feature_shape == (512, 4, 4)  # 32 -> 32 -> 16 -> 8 -> 4
    # the same keys as torchvision (only conv1's shape differs)
    assert list(model.backbone.state_dict()) == torchvision_resnet_keys((2, 2, 2, 2), False)[:-2]
    assert count_parameters(model) == 11_689_512 - 64 * 3 * (49 - 9) - 513 * 1000 + 513 * 10


def test_se_in_every_block():
    plain = archlab.create_model("resnet18", num_classes=10, cifar_stem=True)
    se = archlab.create_model("resnet18", num_classes=10, cifar_stem=True, se=True)
    se_keys = [k for k in se.backbone.state_dict() if ".se." in k]
    assert len(se_keys) == 8 * 4  # 8 blocks x fc1/fc2 weight+bias
    extra = sum(2 * c * (c // 16) + c // 16 + c for c in (64, 64, 128, 128, 256, 256, 512, 512))
    assert count_parameters(se) - count_parameters(plain) == extra
    assert se(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with torch.device("meta"):
        se50 = archlab.create_model("resnet50", num_classes=10, input_size=32, se=True)
    assert se50.backbone.layer4[2].se.channels == 2048 and se50.backbone.layer4[2].se.squeeze_channels == 128


def test_zero_init_residual_makes_blocks_identity_at_init():
    model = archlab.create_model("resnet18", num_classes=10, cifar_stem=True, zero_init_residual=True)
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in model.backbone.layer1)


def test_forward_any_head():
    model = archlab.create_model("resnet18", num_classes=7, input_size=64, head="mlp", head_kwargs={"hidden": [32]})
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    assert model.feature_shape == (512, 2, 2)


def test_unknown_option_is_rejected():
    with pytest.raises(ConfigError, match="cifar_stem"):
        archlab.create_model("resnet18", num_classes=10, cifar_stm=True)


def test_initialisation_is_complete_seeded_and_torchvision_like():
    """Modules are built on the meta device and initialised once: every tensor must be set."""
    def build():
        torch.manual_seed(0)
        return archlab.create_model("resnet18", num_classes=10, cifar_stem=True, se=True).backbone.state_dict()

    a, b = build(), build()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
    w = a["layer3.0.conv2.weight"]  # kaiming normal, fan_out = 256 * 9
    assert abs(float(w.std()) - (2 / (256 * 9)) ** 0.5) < 2e-3
    assert all(torch.all(a[k] == 1) for k in a if k.endswith(("bn1.weight", "running_var")))
    assert all(torch.count_nonzero(a[k]) == 0 for k in a if k.endswith(("bn1.bias", "running_mean", "num_batches_tracked")))
    assert torch.count_nonzero(a["layer1.0.se.fc1.bias"]) > 0  # SE keeps PyTorch's default init


# torchvision: the 3x3 conv of a Bottleneck with p planes has int(p * width_per_group / 64) * groups
# channels in `groups` groups; its weight is (width, width / groups, 3, 3).
WIDTHS = {  # name: (groups, width_per_group)
    "resnet152": (1, 64), "wide_resnet50_2": (1, 128), "wide_resnet101_2": (1, 128),
    "resnext50_32x4d": (32, 4), "resnext101_32x8d": (32, 8), "resnext101_64x4d": (64, 4),
}


@pytest.mark.parametrize("name", WIDTHS)
def test_wide_and_grouped_bottleneck_shapes(name):
    groups, wpg = WIDTHS[name]
    with torch.device("meta"):
        model = archlab.create_model(name, num_classes=1000)
    sd = torchvision_state_dict(model)
    for stage, planes in enumerate((64, 128, 256, 512), 1):
        width = planes * wpg // 64 * groups
        assert sd[f"layer{stage}.0.conv1.weight"].shape == (width, 64 if stage == 1 else planes * 2, 1, 1)
        assert sd[f"layer{stage}.1.conv2.weight"].shape == (width, width // groups, 3, 3)
        assert sd[f"layer{stage}.1.conv3.weight"].shape == (planes * 4, width, 1, 1)
        assert model.backbone.get_submodule(f"layer{stage}.1.conv2").groups == groups
    assert sd["fc.weight"].shape == (1000, 2048)


def test_torchvision_layout_file_loads_strict_and_computes_the_same(tmp_path):
    """A weights file in torchvision's layout (keys and shapes, with ``fc``) loads strictly into a new model."""
    from archlab.pretrained import load_pretrained

    torch.manual_seed(0)
    src = archlab.create_model("resnext50_32x4d", num_classes=1000, input_size=32)
    torch.save(torchvision_state_dict(src), tmp_path / "resnext50_32x4d.pth")
    dst = archlab.create_model("resnext50_32x4d", num_classes=10, input_size=32)
    report = load_pretrained(dst, tmp_path / "resnext50_32x4d.pth", strict=True)
    assert not report.missing and not report.unexpected and not report.mismatched
    assert sorted(report.dropped) == ["fc.bias", "fc.weight"]
    src.eval(), dst.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(x), src.forward_features(x), rtol=0, atol=0)


def test_basic_block_resnets_reject_group_options():
    from archlab.layers.blocks import BasicBlock
    from archlab.models.resnet import ResNet

    with pytest.raises(ConfigError, match="BasicBlock"):
        ResNet(BasicBlock, (2, 2, 2, 2), groups=32, width_per_group=4)
    with pytest.raises(ConfigError, match="groups"):
        from archlab.layers.blocks import Bottleneck

        ResNet(Bottleneck, (1, 1, 1, 1), groups=0)
