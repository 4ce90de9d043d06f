"""Spinal FC heads: ``spinal``, ``spinal_vgg``, ``spinal_resnet`` (archlab/heads/spinal.py)."""

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab._registry import build_head
from archlab.analysis.profile import count_parameters
from archlab.errors import ConfigError, IncompatibleError
from archlab.heads import SpinalHead


def _bn(z, bn):
    return F.batch_norm(z, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias,
                        training=bn.training, eps=bn.eps)


def official_halves_forward(x, head, H):
    """The official scripts' forward written out (SpinalVGG / SpinalNet_ResNet / MNIST), eval mode.

    Halves: first = x[:, :H], second = x[:, F-H:] (the official x[:, H:2H] for even F).
    """
    Fw = x.shape[1]
    first, second = x[:, :H], x[:, Fw - H:]
    L = head.spinal.layers

    def layer(i, inp):
        z = F.linear(inp, L[i].fc.weight, L[i].fc.bias)
        if hasattr(L[i], "bn"):
            z = _bn(z, L[i].bn)
        return torch.relu(z)

    x1 = layer(0, first)
    x2 = layer(1, torch.cat([second, x1], dim=1))
    x3 = layer(2, torch.cat([first, x2], dim=1))
    x4 = layer(3, torch.cat([second, x3], dim=1))
    out = torch.cat([x1, x2, x3, x4], dim=1)
    return F.linear(out, head.spinal.fc.weight, head.spinal.fc.bias)


def official_resnet_spatial_forward(fmap, head):
    """The official CIFAR SpinalResNet head: MaxPool2d(2, 2) of a 4x4 map, positions feed L1..L4."""
    out1 = F.max_pool2d(fmap, kernel_size=2, stride=2)
    L = head.spinal.layers

    def layer(i, inp):
        return torch.relu(F.linear(inp, L[i].fc.weight, L[i].fc.bias))

    x1 = layer(0, out1[:, :, 0, 0])
    x2 = layer(1, torch.cat([out1[:, :, 0, 1], x1], dim=1))
    x3 = layer(2, torch.cat([out1[:, :, 1, 0], x2], dim=1))
    x4 = layer(3, torch.cat([out1[:, :, 1, 1], x3], dim=1))
    return F.linear(torch.cat([x1, x2, x3, x4], dim=1), head.spinal.fc.weight, head.spinal.fc.bias)


def _randomize_bn(head, seed=2):
    g = torch.Generator().manual_seed(seed)
    for m in head.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


# --------------------------------------------------------------------------- exact counts
def test_vgg5_spinal_vgg_head_exact_count():
    model = archlab.create_model("vgg5", in_chans=1, num_classes=10, head="spinal_vgg")
    assert count_parameters(model.head) == 121_354
    assert model.head.head_name == "spinal_vgg"
    # the official layout: halves of 128, width 128, Dropout .5 -> Linear -> BN -> ReLU
    assert [lay.fc.in_features for lay in model.head.spinal.layers] == [128, 256, 256, 256]
    assert [type(m).__name__ for m in model.head.spinal.layers[0]] == ["Dropout", "Linear", "BatchNorm1d", "ReLU"]
    assert model.head.spinal.fc.in_features == 512 and model.head.spinal.drop.p == 0.5


def test_mnist_cnn_default_spinal_head_exact_count():
    """The official SpinalNet_MNIST.py head: 6 layers of width 8 on halves of 160, ReLU, no dropout."""
    model = archlab.create_model(
        "mnist_cnn", in_chans=1, num_classes=10, head="spinal", head_kwargs=dict(num_layers=6, layer_width=8)
    )
    assert count_parameters(model.head) == 8_538
    assert count_parameters(model) == 13_818
    assert [lay.fc.in_features for lay in model.head.spinal.layers] == [160] + [168] * 5


def test_official_cifar_resnet_spatial_head_count():
    # SpinalResNet (CIFAR-10): 4x4x256 map, first_HL=256: 256->256, 3 x 512->256, 1024->10
    h = build_head("spinal_resnet", (256, 4, 4), 10, split="spatial", layer_width=256)
    assert count_parameters(h) == (256 * 256 + 256) + 3 * (512 * 256 + 256) + (1024 * 10 + 10) == 470_026


# --------------------------------------------------------------------------- wiring vs reference
@pytest.mark.parametrize("preset", ["spinal", "spinal_vgg", "spinal_resnet"])
@pytest.mark.parametrize("F_", [256, 321])
def test_halves_head_equals_official_forward(preset, F_):
    head = archlab.create_head(preset, in_features=F_, num_classes=7, layer_width=9)
    _randomize_bn(head)
    head.eval()
    x = torch.randn(5, F_)
    H = (F_ + 1) // 2
    torch.testing.assert_close(head(x), official_halves_forward(x, head, H))


def test_odd_width_321_works_and_uses_every_feature():
    head = archlab.create_head("spinal", in_features=321, num_classes=7, layer_width=9)
    assert [lay.fc.in_features for lay in head.spinal.layers] == [161, 170, 170, 170]
    x = torch.randn(4, 321, requires_grad=True)
    out = head(x)
    assert out.shape == (4, 7)
    out.square().sum().backward()
    # nothing silently dropped: every one of the 321 features influences the logits
    assert (x.grad.abs().sum(0) > 0).all()


@pytest.mark.parametrize("F_", [1, 2, 3, 5])
def test_tiny_widths(F_):
    head = archlab.create_head("spinal", in_features=F_, num_classes=2, layer_width=3)
    assert head(torch.randn(3, F_)).shape == (3, 2)


def test_flattens_feature_maps_and_global_pool():
    x = torch.randn(3, 6, 3, 3)
    flat = SpinalHead((6, 3, 3), 4, layer_width=5).eval()
    assert flat.spinal.part_features == 27  # ceil(54 / 2)
    torch.testing.assert_close(flat(x), official_halves_forward(x.flatten(1), flat, 27))
    avg = SpinalHead((6, 3, 3), 4, layer_width=5, global_pool="avg").eval()
    assert avg.spinal.part_features == 3
    torch.testing.assert_close(avg(x), official_halves_forward(x.mean((2, 3)), avg, 3))
    mx = SpinalHead((6, 3, 3), 4, layer_width=5, global_pool="max").eval()
    torch.testing.assert_close(mx(x), official_halves_forward(x.amax((2, 3)), mx, 3))


# --------------------------------------------------------------------------- spatial split
def test_spatial_equals_official_resnet_head():
    head = build_head("spinal_resnet", (16, 4, 4), 10, split="spatial", layer_width=6).eval()
    assert head.global_pool == "max"
    fmap = torch.randn(3, 16, 4, 4)
    torch.testing.assert_close(head(fmap), official_resnet_spatial_forward(fmap, head))


def test_spatial_odd_map_covers_every_position():
    head = SpinalHead((8, 5, 3), 3, layer_width=4, split="spatial")
    x = torch.randn(2, 8, 5, 3, requires_grad=True)
    parts = head.split_parts(x)
    assert parts.shape == (2, 4, 8)
    torch.testing.assert_close(parts[:, 0], x[:, :, :3, :2].amax((2, 3)))
    torch.testing.assert_close(parts[:, 3], x[:, :, 2:, 1:].amax((2, 3)))
    head.eval()(x).sum().backward()
    assert x.grad.shape == x.shape  # every position reachable through the adaptive pooling windows


def test_spatial_avg_pool_and_cycling_layers():
    head = SpinalHead((8, 2, 2), 3, layer_width=4, split="spatial", global_pool="avg", num_layers=6)
    x = torch.randn(2, 8, 2, 2)
    torch.testing.assert_close(head.split_parts(x)[:, 2], x[:, :, 1, 0])
    assert [lay.fc.in_features for lay in head.spinal.layers] == [8] + [12] * 5
    assert head(x).shape == (2, 3)


@pytest.mark.parametrize("shape", [(64,), (256, 1, 1), (32, 1, 4), (32, 4, 1)])
def test_spatial_needs_a_2x2_map(shape):
    with pytest.raises(IncompatibleError, match=r"split='spatial'.*H >= 2 and W >= 2") as exc:
        build_head("spinal", shape, 3, split="spatial")
    msg = str(exc.value)
    assert str(tuple(shape)) in msg and "split='halves'" in msg and "at least 2x2" in msg


def test_spatial_on_vgg5_fails_at_construction_naming_shape_and_fix():
    with pytest.raises(IncompatibleError, match=r"vgg5.*\(256, 1, 1\).*split='halves'"):
        archlab.create_model("vgg5", in_chans=1, num_classes=10, head="spinal", head_kwargs={"split": "spatial"})
    with pytest.raises(IncompatibleError, match=r"\(40,\)"):
        archlab.create_head("spinal", in_features=40, num_classes=3, split="spatial")


# --------------------------------------------------------------------------- bad options
@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(num_layers=0), r"num_layers must be an int >= 2.*got 0"),
        (dict(num_layers=-1), r"num_layers must be an int >= 2.*got -1"),
        (dict(num_layers=1), r"num_layers must be an int >= 2.*halves.*got 1"),
        (dict(num_layers=3, split="spatial"), r"num_layers must be an int >= 4.*2x2 positions.*got 3"),
        (dict(layer_width=0), r"layer_width must be an int >= 1, got 0"),
        (dict(layer_width=-5), r"layer_width must be an int >= 1, got -5"),
        (dict(dropout=1.0), r"dropout must be a float in \[0, 1\), got 1\.0"),
        (dict(dropout=-0.5), r"dropout must be a float in \[0, 1\), got -0\.5"),
        (dict(dropout=2), r"dropout must be a float in \[0, 1\), got 2"),
        (dict(activation="relux"), r"unknown activation 'relux'; allowed: elu, gelu.*relu.*did you mean"),
        (dict(activation="softmaxx"), r"unknown activation 'softmaxx'; allowed: elu"),
        (dict(split="thirds"), r"split must be one of halves, spatial, got 'thirds'"),
        (dict(split=None), r"option split=None is not valid \(type NoneType\); allowed: str"),  # the registry's type check
        (dict(global_pool="mean"), r"global_pool must be one of flatten, avg, max with split='halves', got 'mean'"),
        (dict(split="spatial", global_pool="flatten"), r"global_pool must be one of max, avg with split='spatial'"),
        (dict(batch_norm=1), r"option batch_norm=1 is not valid \(type int\); allowed: bool"),
        (dict(num_classes=0), r"num_classes must be an int >= 1, got 0"),
    ],
)
@pytest.mark.parametrize("preset", ["spinal", "spinal_vgg", "spinal_resnet"])
def test_bad_options_name_value_and_range(preset, kw, match):
    kw = dict(kw)
    num_classes = kw.pop("num_classes", 3)
    with pytest.raises(ValueError, match=match) as exc:
        build_head(preset, (8, 4, 4), num_classes, **kw)
    assert isinstance(exc.value, ConfigError)


def test_unknown_option_is_rejected_with_suggestion():
    with pytest.raises(ValueError, match=r"layer_widht.*did you mean 'layer_width'"):
        archlab.create_head("spinal", in_features=8, num_classes=2, layer_widht=4)


# --------------------------------------------------------------------------- presets, registry
def test_presets_defaults_and_overrides():
    assert {"spinal", "spinal_vgg", "spinal_resnet"} <= set(archlab.list_heads())
    res = archlab.create_head("spinal_resnet", in_features=2048, num_classes=10)
    assert res.spinal.layer_width == 20 and res.global_pool == "flatten"  # flat input: nothing to pool
    assert all(not hasattr(lay, "drop") and not hasattr(lay, "bn") for lay in res.spinal.layers)
    assert isinstance(res.spinal.drop, torch.nn.Identity)
    on_map = build_head("spinal_resnet", (2048, 7, 7), 10)
    assert on_map.global_pool == "avg" and on_map.spinal.part_features == 1024
    vgg = archlab.create_head("spinal_vgg", in_features=1024, num_classes=5, layer_width=512, dropout=0.2)
    assert vgg.spinal.layer_width == 512 and vgg.spinal.drop.p == 0.2
    assert all(hasattr(lay, "bn") for lay in vgg.spinal.layers)


def test_on_a_model_forward_backward_and_reset():
    model = archlab.create_model("mnist_cnn", in_chans=1, num_classes=10, head="spinal_vgg")
    x = torch.randn(4, 1, 28, 28)
    out = model(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.head.parameters())
    model.reset_classifier(7)
    assert model.head.head_name == "spinal_vgg" and model.head.num_classes == 7
    assert model(x).shape == (4, 7)


def test_seeded_init_is_reproducible_and_state_dict_round_trips():
    torch.manual_seed(5)
    a = archlab.create_head("spinal_vgg", in_features=30, num_classes=4, layer_width=6)
    torch.manual_seed(5)
    b = archlab.create_head("spinal_vgg", in_features=30, num_classes=4, layer_width=6)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    torch.manual_seed(6)
    c = archlab.create_head("spinal_vgg", in_features=30, num_classes=4, layer_width=6)
    c.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(3, 30)
    torch.testing.assert_close(a.eval()(x), c.eval()(x))


# --------------------------------------------------------------------------- it learns
@pytest.mark.parametrize("preset,kw", [("spinal", {}), ("spinal_vgg", {"dropout": 0.1}), ("spinal_resnet", {})])
def test_head_trains_on_a_tiny_problem(preset, kw):
    g = torch.Generator().manual_seed(0)
    n, f, c = 96, 13, 3  # odd width on purpose
    centers = torch.randn(c, f, generator=g) * 2.0
    y = torch.arange(n) % c
    x = centers[y] + 0.5 * torch.randn(n, f, generator=g)
    torch.manual_seed(0)
    head = archlab.create_head(preset, in_features=f, num_classes=c, layer_width=16, **kw)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.eval()
    with torch.no_grad():
        first = F.cross_entropy(head(x), y).item()
    head.train()
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y)
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        logits = head(x)
    last = F.cross_entropy(logits, y).item()
    assert last < 0.3 * first
    assert (logits.argmax(1) == y).float().mean() > 0.95
