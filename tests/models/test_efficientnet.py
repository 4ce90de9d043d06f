"""EfficientNet: torchvision key list and parameter counts, compound scaling, grid search."""

import functools
import math

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters
from archlab.errors import ConfigError
from archlab.models.efficientnet import grid_search_compound
from archlab.pretrained import torchvision_state_dict

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# B0 stages (paper table 1): expand ratio, output channels, layers
B0 = [(1, 16, 1), (6, 24, 2), (6, 40, 2), (6, 80, 3), (6, 112, 3), (6, 192, 4), (6, 320, 1)]

# torchvision's model docs (num_params) and the (width, depth) table
TORCHVISION = {
    "efficientnet_b0": (1.0, 1.0, 5_288_548), "efficientnet_b1": (1.0, 1.1, 7_794_184),
    "efficientnet_b2": (1.1, 1.2, 9_109_994), "efficientnet_b3": (1.2, 1.4, 12_233_232),
    "efficientnet_b4": (1.4, 1.8, 19_341_616), "efficientnet_b5": (1.6, 2.2, 30_389_784),
    "efficientnet_b6": (1.8, 2.6, 43_040_704), "efficientnet_b7": (2.0, 3.1, 66_347_960),
}


def torchvision_efficientnet_keys(depth_mult):
    """torchvision.models.EfficientNet keys: features.0 = Conv2dNormActivation (0 conv, 1 BN);
    features.1..7 = stages of MBConv whose ``block`` is [expand CNA if ratio != 1], depthwise CNA,
    SqueezeExcitation (fc1, fc2), project CNA; features.8 = final 1x1 CNA; classifier.1 = Linear."""
    def cna(p):
        return [f"{p}.0.weight", *(f"{p}.1.{s}" for s in BN)]

    keys = cna("features.0")
    for s, (expand, _, n) in enumerate(B0, 1):
        for i in range(math.ceil(n * depth_mult)):
            p, j = f"features.{s}.{i}.block", 0
            if expand != 1:
                keys += cna(f"{p}.0")
                j = 1
            keys += cna(f"{p}.{j}")
            keys += [f"{p}.{j + 1}.fc1.weight", f"{p}.{j + 1}.fc1.bias", f"{p}.{j + 1}.fc2.weight",
                     f"{p}.{j + 1}.fc2.bias"]
            keys += cna(f"{p}.{j + 2}")
    return keys + cna("features.8") + ["classifier.1.weight", "classifier.1.bias"]


@functools.lru_cache(maxsize=None)
def meta_model(name, **kw):
    """Built on the meta device: names, shapes and counts without memory or init cost (shared, read-only)."""
    with torch.device("meta"):
        return archlab.create_model(name, num_classes=1000, **kw)


def round8(v):
    """Channels to the nearest multiple of 8 (at least 8), not more than 10 % below v."""
    r = max(8, int(v + 4) // 8 * 8)
    return r + 8 if r < 0.9 * v else r


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_keys_and_parameter_count(name):
    width, depth, params = TORCHVISION[name]
    model = meta_model(name)
    assert count_parameters(model) == params
    expected = torchvision_efficientnet_keys(depth)
    assert list(model.backbone.state_dict()) == expected[:-2]
    assert list(torchvision_state_dict(model)) == expected
    assert model.num_features == 4 * round8(320 * width)


def test_b0_details():
    model = meta_model("efficientnet_b0")
    sd = torchvision_state_dict(model)
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["features.1.0.block.1.fc1.weight"].shape == (8, 32, 1, 1)  # squeeze = in / 4
    assert sd["features.2.0.block.2.fc1.weight"].shape == (4, 96, 1, 1)
    assert sd["features.3.0.block.1.0.weight"].shape == (144, 1, 5, 5)  # 5x5 depthwise
    assert sd["features.8.0.weight"].shape == (1280, 320, 1, 1)
    assert model.input_size == (224, 224) and model.head.drop.p == 0.2
    assert isinstance(model.backbone.features[1][0].block[0][2], torch.nn.SiLU)


def test_b5_to_b7_use_tensorflow_batchnorm_settings():
    b4, b7 = meta_model("efficientnet_b4"), meta_model("efficientnet_b7")
    assert b4.backbone.features[0][1].eps == 1e-5
    assert b7.backbone.features[0][1].eps == 1e-3 and b7.backbone.features[0][1].momentum == 0.01
    assert b7.input_size == (600, 600) and b7.head.drop.p == 0.5


def test_stochastic_depth_increases_linearly():
    model = meta_model("efficientnet_b0")
    probs = [m.stochastic_depth.p for stage in model.backbone.features[1:8] for m in stage]
    assert probs == pytest.approx([0.2 * i / 16 for i in range(16)])


def test_scaled_phi_zero_is_b0():
    b0, s0 = meta_model("efficientnet_b0"), meta_model("efficientnet_scaled", phi=0)
    assert {k: v.shape for k, v in b0.state_dict().items()} == {k: v.shape for k, v in s0.state_dict().items()}
    assert s0.input_size == (224, 224)


@pytest.mark.parametrize("phi", [1, 2, 3.5])
def test_scaled_follows_the_compound_rule(phi):
    alpha, beta, gamma = 1.2, 1.1, 1.15
    with torch.device("meta"):
        m = archlab.create_model("efficientnet_scaled", num_classes=10, phi=phi)
    stages = list(m.backbone.features)[1:8]
    assert [len(s) for s in stages] == [math.ceil(n * alpha**phi) for _, _, n in B0]
    assert [s[-1].out_channels for s in stages] == [round8(c * beta**phi) for _, c, _ in B0]
    assert m.backbone.features[0][0].out_channels == round8(32 * beta**phi)
    assert all(c % 8 == 0 for c in (s[-1].out_channels for s in stages))
    assert m.input_size == (round(224 * gamma**phi),) * 2


def test_scaled_custom_bases_and_cifar_resolution():
    with torch.device("meta"):
        m = archlab.create_model("efficientnet_scaled", num_classes=10, phi=1, alpha=1.0, beta=2.0,
                                 gamma=1.0, base_resolution=32)
    assert [len(s) for s in list(m.backbone.features)[1:8]] == [n for _, _, n in B0]
    assert m.backbone.features[7][0].out_channels == 640 and m.input_size == (32, 32)
    with pytest.raises(ConfigError, match="alpha"):
        archlab.create_model("efficientnet_scaled", num_classes=10, phi=1, alpha=0.9)


def test_grid_search_on_a_fake_objective():
    calls = []

    def evaluate(a, b, g):  # a fake proxy whose optimum is the paper's (1.2, 1.1, 1.15)
        calls.append((a, b, g))
        return -((a - 1.2) ** 2 + (b - 1.1) ** 2 + (g - 1.15) ** 2)

    best, points = grid_search_compound(evaluate)
    assert (best.alpha, best.beta, best.gamma) == (1.2, 1.1, 1.15)
    assert best.flops_factor == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    assert len(calls) == len(points) > 5
    assert all(abs(a * b * b * g * g / 2 - 1) <= 0.1 for a, b, g in calls)  # only admissible points
    assert calls == sorted(calls)  # deterministic order


def test_grid_search_minimize_and_nan_scores():
    best, _ = grid_search_compound(lambda a, b, g: a if a != 2.0 else float("nan"), alphas=(1.0, 2.0),
                                   betas=(1.0,), gammas=(1.0, 1.2), target=1.44, tolerance=0.01, maximize=False)
    assert (best.alpha, best.gamma) == (1.0, 1.2)


def test_grid_search_errors():
    with pytest.raises(ConfigError, match="no \\(alpha"):
        grid_search_compound(lambda a, b, g: 0.0, alphas=(1.0,), betas=(1.0,), gammas=(1.0,))
    with pytest.raises(ConfigError, match=">= 1"):
        grid_search_compound(lambda a, b, g: 0.0, alphas=(0.5,))
    with pytest.raises(ConfigError, match="NaN"):
        grid_search_compound(lambda a, b, g: float("nan"))


def test_initialisation_is_complete_and_seeded():
    def build():
        torch.manual_seed(0)
        return archlab.create_model("efficientnet_scaled", num_classes=10, phi=-4, base_resolution=32).state_dict()

    a, b = build(), build()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
    se_bias = [k for k in a if k.endswith("fc1.bias")]
    assert se_bias and all(torch.count_nonzero(a[k]) == 0 for k in se_bias)  # torchvision: conv bias 0


# EfficientNetV2 (torchvision's efficientnet_v2_*): (fused, expand, out, layers, stride) per stage
V2 = {
    "efficientnet_v2_s": (24, [(1, 1, 24, 2, 1), (1, 4, 48, 4, 2), (1, 4, 64, 4, 2), (0, 4, 128, 6, 2),
                               (0, 6, 160, 9, 1), (0, 6, 256, 15, 2)], 21_458_488, 384, 0.2),
    "efficientnet_v2_m": (24, [(1, 1, 24, 3, 1), (1, 4, 48, 5, 2), (1, 4, 80, 5, 2), (0, 4, 160, 7, 2),
                               (0, 6, 176, 14, 1), (0, 6, 304, 18, 2), (0, 6, 512, 5, 1)], 54_139_356, 480, 0.3),
    "efficientnet_v2_l": (32, [(1, 1, 32, 4, 1), (1, 4, 64, 7, 2), (1, 4, 96, 7, 2), (0, 4, 192, 10, 2),
                               (0, 6, 224, 19, 1), (0, 6, 384, 25, 2), (0, 6, 640, 7, 1)], 118_515_272, 480, 0.4),
}


def torchvision_efficientnet_v2_keys(stages):
    """torchvision EfficientNet (V2) keys: features.0 stem CNA; per stage, FusedMBConv blocks whose
    ``block`` is [fused kxk CNA, project 1x1 CNA] (one kxk CNA when the expand ratio is 1) or MBConv
    blocks [expand CNA, depthwise CNA, SE fc1/fc2, project CNA]; then the 1x1 CNA; classifier.1."""
    def cna(p):
        return [f"{p}.0.weight", *(f"{p}.1.{s}" for s in BN)]

    keys = cna("features.0")
    for s, (fused, expand, _, n, _) in enumerate(stages, 1):
        for i in range(n):
            p = f"features.{s}.{i}.block"
            if fused:
                keys += cna(f"{p}.0") + (cna(f"{p}.1") if expand != 1 else [])
            else:
                keys += cna(f"{p}.0") + cna(f"{p}.1")
                keys += [f"{p}.2.fc1.weight", f"{p}.2.fc1.bias", f"{p}.2.fc2.weight", f"{p}.2.fc2.bias"]
                keys += cna(f"{p}.3")
    return keys + cna(f"features.{len(stages) + 1}") + ["classifier.1.weight", "classifier.1.bias"]


@pytest.mark.parametrize("name", V2)
def test_v2_torchvision_keys_shapes_and_parameter_count(name):
    stem, stages, params, res, drop = V2[name]
    model = meta_model(name)
    assert count_parameters(model) == params
    expected = torchvision_efficientnet_v2_keys(stages)
    assert list(model.backbone.state_dict()) == expected[:-2]
    sd = torchvision_state_dict(model)
    assert list(sd) == expected
    assert sd["features.0.0.weight"].shape == (stem, 3, 3, 3)
    cin = stem
    for s, (fused, expand, out, _, stride) in enumerate(stages, 1):
        p, hidden = f"features.{s}.0.block", cin * expand
        if fused and expand == 1:
            assert sd[f"{p}.0.0.weight"].shape == (out, cin, 3, 3)
        elif fused:  # one full 3x3 conv expands, a 1x1 projects
            assert sd[f"{p}.0.0.weight"].shape == (hidden, cin, 3, 3)
            assert sd[f"{p}.1.0.weight"].shape == (out, hidden, 1, 1)
        else:  # 1x1 expand, 3x3 depthwise, SE squeeze = in / 4, 1x1 project
            assert sd[f"{p}.1.0.weight"].shape == (hidden, 1, 3, 3)
            assert sd[f"{p}.2.fc1.weight"].shape == (cin // 4, hidden, 1, 1)
            assert sd[f"{p}.3.0.weight"].shape == (out, hidden, 1, 1)
        conv = model.backbone.features[s][0].block[0 if fused else 1][0]  # MBConv: stride on the depthwise
        assert conv.stride == (stride, stride)
        cin = out
    assert sd[f"features.{len(stages) + 1}.0.weight"].shape == (1280, cin, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    assert model.input_size == (res, res) and model.head.drop.p == drop
    assert all(m.eps == 1e-3 for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    probs = [m.stochastic_depth.p for stage in model.backbone.features[1:-1] for m in stage]
    total = sum(n for _, _, _, n, _ in stages)
    assert probs == pytest.approx([0.2 * i / total for i in range(total)])


def test_fused_mbconv_residual_and_no_se():
    from archlab.layers.fused_mbconv import FusedMBConv

    block = FusedMBConv(16, 16, 3, 1, expand_ratio=4).eval()
    assert block.use_res_connect and len(block.block) == 2
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in block.modules())  # no SE
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.block(x) + x)
    down = FusedMBConv(16, 32, 3, 2, expand_ratio=1)
    assert not down.use_res_connect and len(down.block) == 1
    assert down(x).shape == (2, 32, 4, 4)
    with pytest.raises(ConfigError, match="stride"):
        FusedMBConv(16, 16, 3, 3)
