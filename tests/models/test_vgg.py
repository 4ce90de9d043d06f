"""VGG: torchvision key list and parameter counts, the vgg_classifier head, SE."""

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters
from archlab.pretrained import torchvision_state_dict

CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

# torchvision's model docs (num_params)
PARAMS = {
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848, "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg19_bn": 143_678_248,
}


def torchvision_vgg_keys(depth, bn):
    """torchvision.models.VGG keys: ``features`` is a Sequential of Conv2d [BatchNorm2d] ReLU and
    MaxPool2d in cfg order; ``classifier`` is Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear."""
    keys, i = [], 0
    for v in CFGS[depth]:
        if v == "M":
            i += 1
            continue
        keys += [f"features.{i}.weight", f"features.{i}.bias"]
        i += 1
        if bn:
            keys += [f"features.{i}.{s}" for s in ("weight", "bias", "running_mean", "running_var",
                                                   "num_batches_tracked")]
            i += 1
        i += 1  # ReLU
    return keys + [f"classifier.{j}.{s}" for j in (0, 3, 6) for s in ("weight", "bias")]


@pytest.mark.parametrize("name", PARAMS)
def test_torchvision_keys_and_parameter_count(name):
    depth, bn = int(name[3:5]), name.endswith("_bn")
    with torch.device("meta"):
        model = archlab.create_model(name, num_classes=1000)
    assert count_parameters(model) == PARAMS[name]
    expected = torchvision_vgg_keys(depth, bn)
    assert list(model.backbone.state_dict()) == expected[:-6]
    assert list(torchvision_state_dict(model)) == expected
    assert model.head.classifier[0].in_features == 512 * 7 * 7


def test_small_inputs_do_not_replicate_the_map():
    model = archlab.create_model("vgg11", num_classes=10, input_size=32, head_kwargs={"hidden": 64})
    assert model.feature_shape == (512, 1, 1)
    assert model.head.classifier[0].in_features == 512  # torchvision would copy the 1x1 map 49 times
    exact = archlab.create_model("vgg11", num_classes=10, input_size=32, head_kwargs={"always_pool": True, "hidden": 8})
    assert exact.head.classifier[0].in_features == 25088


def test_se_after_every_stage_keeps_conv_names():
    plain = archlab.create_model("vgg11_bn", num_classes=10, input_size=32, head_kwargs={"hidden": 64})
    se = archlab.create_model("vgg11_bn", num_classes=10, input_size=32, se=True, head_kwargs={"hidden": 64})
    plain_keys, se_keys = list(plain.backbone.state_dict()), list(se.backbone.state_dict())
    assert [k for k in se_keys if ".se." not in k] == plain_keys
    se_slots = sorted({int(k.split(".")[1]) for k in se_keys if ".se." in k})
    assert len(se_slots) == 5  # one per stage, at the ReLU before each max-pool
    for i in se_slots:
        assert isinstance(se.backbone.features[i + 1], torch.nn.MaxPool2d)
    assert se(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_drop_rate_option_reaches_the_head():
    with torch.device("meta"):
        model = archlab.create_model("vgg13", num_classes=10, input_size=32, drop_rate=0.25)
    assert model.head.classifier[2].p == 0.25


def test_initialisation_is_complete_and_seeded():
    def build():
        torch.manual_seed(0)
        return archlab.create_model("vgg11_bn", num_classes=10, input_size=32, se=True,
                                    head_kwargs={"hidden": 64}).state_dict()

    a, b = build(), build()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
    assert torch.count_nonzero(a["backbone.features.0.bias"]) == 0  # torchvision: conv bias 0
    assert torch.all(a["backbone.features.1.running_var"] == 1)
