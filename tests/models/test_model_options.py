"""Issue 25's model knobs, each built from a run-config dict, with hand-computed parameter counts.

Counts are sums of per-layer formulas (conv ``k*k*cin*cout + cout``, BN ``2C``, Linear
``in*out + out``, SE ``2*C*s + s + C``), never the model's own output.
"""

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters
from archlab.errors import ConfigError
from archlab.layers.normalized import NormalizedConv2d
from archlab.train.config import TrainConfig
from archlab.train.engine import build_run_model, prepare_data


def experiment(model: dict, *, image_size: int = 32, channels: int = 3, num_classes: int = 10):
    """The model a run config builds (data: small synthetic images)."""
    cfg = TrainConfig.model_validate({
        "data": {"name": "synthetic", "options": {"num_classes": num_classes, "num_samples": 100,
                                                   "image_size": image_size, "channels": channels}},
        "model": model,
    })
    return build_run_model(cfg, prepare_data(cfg))


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def linear(i, o):
    return i * o + o


def se(c, r=16):
    s = max(1, int(c / r))
    return c * s + s + s * c + c


# ---------------------------------------------------------------- type checks (the silent wrong model)

@pytest.mark.parametrize("bad", ["no", [True, True, True], [1, 1, 1, 0], [True, "false", True, True], 1])
def test_se_of_the_wrong_type_is_refused_naming_model_option_value_and_allowed(bad):
    with pytest.raises(ConfigError) as exc:
        experiment({"name": "resnet18", "kwargs": {"se": bad, "cifar_stem": True}})
    msg = str(exc.value)
    assert "resnet18" in msg and "se" in msg and repr(bad) in msg
    assert "bool" in msg and ("list of" in msg or "4 bools" in msg)


@pytest.mark.parametrize("name, kwargs", [
    ("resnet18", {"cifar_stem": "yes"}),
    ("mini_vgg", {"rot_pool": "avg"}),
    ("mini_vgg", {"norm_conv": 1}),
    ("recurrent_resnet", {"unroll": "7"}),
    ("connected_net", {"gate_activation": "relu"}),
    ("vgg16_bn", {"se": "true"}),
])
def test_every_model_option_is_type_checked(name, kwargs):
    with pytest.raises(ConfigError, match=rf"{name}.*{next(iter(kwargs))}"):
        experiment({"name": name, "kwargs": kwargs})


def test_head_options_are_type_checked_too():
    with pytest.raises(ConfigError, match=r"head 'ncp_original': option bidirectional='yes' is not valid.*allowed: bool"):
        experiment({"name": "mnist_cnn", "head": "ncp_original", "head_kwargs": {"bidirectional": "yes"}},
                   image_size=28, channels=1)


# ---------------------------------------------------------------- 004: per-stage SE

def _resnet18_cifar(num_classes, in_chans=3):
    """ResNet-18 with the CIFAR stem: stem conv + BN, BasicBlocks, projections, fc."""
    total = conv(3, in_chans, 64, bias=False) + 2 * 64
    cin = 64
    for i, c in enumerate((64, 128, 256, 512)):
        for b in range(2):
            total += conv(3, cin, c, False) + 2 * c + conv(3, c, c, False) + 2 * c
            if b == 0 and i > 0:
                total += conv(1, cin, c, False) + 2 * c
            cin = c
    return total + linear(512, num_classes)


@pytest.mark.parametrize("stages", [[True, True, True, False], [False, False, False, False], [True, False, True, False],
                                    True, False])
def test_per_stage_se_builds_se_where_asked_and_counts(stages):
    model = experiment({"name": "resnet18", "kwargs": {"se": stages, "cifar_stem": True}})
    flags = [stages] * 4 if isinstance(stages, bool) else stages
    expected = _resnet18_cifar(10) + sum(2 * se(c) for c, on in zip((64, 128, 256, 512), flags) if on)
    assert count_parameters(model) == expected
    for i, on in enumerate(flags):
        layer = getattr(model.backbone, f"layer{i + 1}")
        assert all((blk.se is not None) == on for blk in layer)


def test_dropping_the_last_stage_se_saves_its_parameters():
    full = count_parameters(experiment({"name": "resnet18", "kwargs": {"se": True, "cifar_stem": True}}))
    part = count_parameters(experiment({"name": "resnet18", "kwargs": {"se": [True, True, True, False], "cifar_stem": True}}))
    assert full - part == 2 * se(512)


# ---------------------------------------------------------------- 002: norm_conv / activation in ResNet

def test_resnet_norm_conv_and_activation_keep_the_count():
    model = experiment({"name": "resnet18", "kwargs": {"cifar_stem": True, "norm_conv": True, "activation": "elu",
                                                       "se": [False, False, False, True]}})
    assert count_parameters(model) == _resnet18_cifar(10) + 2 * se(512)
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    se_convs = {id(m) for blk in model.backbone.layer4 for m in (blk.se.fc1, blk.se.fc2)}
    assert all(isinstance(m, NormalizedConv2d) == (id(m) not in se_convs) for m in convs)
    se_acts = {id(blk.se.activation) for blk in model.backbone.layer4}  # SE's own ReLU stays
    acts = [m for m in model.backbone.modules() if isinstance(m, (torch.nn.ELU, torch.nn.ReLU)) and id(m) not in se_acts]
    assert acts and all(isinstance(m, torch.nn.ELU) for m in acts)
    # weight normalization: scaling a conv's weight does not change the output
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    y = model(x)
    with torch.no_grad():
        model.backbone.layer2[0].conv1.weight.mul_(3.0)
    torch.testing.assert_close(model(x), y, rtol=1e-4, atol=1e-5)


def test_torchvision_resnet18_count_is_unchanged_by_default():
    m = archlab.create_model("resnet18", num_classes=1000)
    assert count_parameters(m) == 11_689_512


# ---------------------------------------------------------------- 002: mini-VGG rot_pool, activation

def _mini_vgg(widths_in, rot_concat_after=(), squeeze=(), R=4, classes=10):
    """mini_vgg at 32 px: convs (same, valid, pool, same, valid, pool) -> Dense 512 -> head."""
    cin, total = 3, 0
    for i, (cout, _) in enumerate(widths_in, 1):
        total += conv(3, cin, cout)
        cin = cout * R if i in rot_concat_after else cout
        if i in squeeze:
            total += cout * R * cout  # 1x1 squeeze conv, no bias
    return total + linear(cin * 6 * 6, 512) + linear(512, classes)


CONVS = [(32, "same"), (32, "valid"), (64, "same"), (64, "valid")]


def test_mini_vgg_default_count():
    assert count_parameters(experiment({"name": "mini_vgg"})) == _mini_vgg(CONVS) == 1_250_858


@pytest.mark.parametrize("rot_convs", [1, 2])
def test_mini_vgg_rot_pool_concat_widens_the_next_layer(rot_convs):
    model = experiment({"name": "mini_vgg", "kwargs": {"rot_convs": rot_convs, "rot_pool": "concat"}})
    rot = tuple(range(5 - rot_convs, 5))
    assert count_parameters(model) == _mini_vgg(CONVS, rot_concat_after=rot)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("rotations", [4, 8])
def test_mini_vgg_rot_pool_squeeze_adds_the_1x1_compression(rotations):
    model = experiment({"name": "mini_vgg", "kwargs": {"rot_convs": 2, "rotations": rotations, "rot_pool": "squeeze"}})
    assert count_parameters(model) == _mini_vgg(CONVS, squeeze=(3, 4), R=rotations)


def test_mini_vgg_rot_pool_max_is_the_blog_and_keeps_the_count():
    model = experiment({"name": "mini_vgg", "kwargs": {"rot_convs": 4, "rot_pool": "max", "activation": "elu",
                                                       "norm_conv": True, "norm_dense": True}})
    assert count_parameters(model) == 1_250_858
    assert any(isinstance(m, torch.nn.ELU) for m in model.backbone.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.backbone.modules())


# ---------------------------------------------------------------- 003: softplus recurrent ResNet

def _recurrent_resnet(in_chans=3, widths=(16, 32, 64), classes=10):
    total = conv(3, in_chans, widths[0], False)
    for i, w in enumerate(widths):
        if i:
            total += 2 * widths[i - 1] + conv(3, widths[i - 1], w, False)
        total += 2 * (2 * w) + 2 * conv(3, w, w, False)  # the shared unit: 2 BN + 2 convs
    return total + 2 * widths[-1] + linear(widths[-1], classes)


def test_recurrent_resnet_softplus():
    model = experiment({"name": "recurrent_resnet", "kwargs": {"activation": "softplus"}})
    assert count_parameters(model) == _recurrent_resnet()
    acts = [m for m in model.backbone.modules() if isinstance(m, (torch.nn.Softplus, torch.nn.ReLU))]
    assert acts and all(isinstance(m, torch.nn.Softplus) for m in acts)
    x = torch.randn(1, 16, 4, 4)
    unit = model.backbone.stages[0].recurrent.block
    torch.testing.assert_close(unit.relu(x), torch.log1p(torch.exp(x)))


# ---------------------------------------------------------------- 002: gates

def test_gates_without_sigmoid():
    model = experiment({"name": "connected_net", "kwargs": {"gate_activation": "identity", "gate_init": 0.7}},
                       image_size=16)
    base = experiment({"name": "connected_net", "kwargs": {"gate_init": 0.7}}, image_size=16)
    assert count_parameters(model) == count_parameters(base)
    for gates in model.gates().values():
        assert all(float(g) == pytest.approx(0.7) for g in gates)  # the gate is w itself
    for gates in base.gates().values():
        assert all(float(g) == pytest.approx(torch.sigmoid(torch.tensor(0.7)).item()) for g in gates)


def test_gate_init_feed_forward_one_rest_half():
    model = experiment({"name": "connected_net",
                        "kwargs": {"gate_init": {"scheme": "feedforward", "feedforward": 1.0, "rest": 0.5}}},
                       image_size=16)
    for j, conn in enumerate(model.backbone.connections):
        if not hasattr(conn, "weight"):
            continue
        src = model.backbone.pattern[j]
        expected = [1.0 if s == j + 1 else 0.5 for s in src]
        assert conn.weight.detach().tolist() == expected


def test_gate_init_gaussian_is_seeded_and_centred():
    kw = {"gate_init": {"scheme": "gaussian", "mean": 0.5, "std": 0.1}, "shared": False}
    a = experiment({"name": "connected_net", "kwargs": kw}, image_size=16)
    b = experiment({"name": "connected_net", "kwargs": kw}, image_size=16)
    w = torch.cat([c.weight.detach() for c in a.backbone.connections if hasattr(c, "weight")])
    assert w.numel() > 1000 and abs(float(w.mean()) - 0.5) < 0.02 and abs(float(w.std()) - 0.1) < 0.02
    wb = torch.cat([c.weight.detach() for c in b.backbone.connections if hasattr(c, "weight")])
    assert torch.equal(w, wb)  # the run's init stream: identical across builds


@pytest.mark.parametrize("bad", [{"scheme": "uniform"}, {"scheme": "gaussian", "sigma": 1}, "0.5", [0.5, 1.0]])
def test_gate_init_bad_schemes_are_refused(bad):
    with pytest.raises(ConfigError, match="gate_init"):
        experiment({"name": "connected_net", "kwargs": {"gate_init": bad}}, image_size=16)


# ---------------------------------------------------------------- activation / norm_conv on the other seed backbones

def test_crnet_activation_and_norm_conv_keep_the_count():
    model = experiment({"name": "crnet", "kwargs": {"activation": "elu", "norm_conv": True}}, image_size=224, channels=1,
                       num_classes=2)
    assert count_parameters(model) == 546_882
    blocks = [model.backbone.block1, model.backbone.block2, model.backbone.block3]
    assert all(isinstance(b.act, torch.nn.ELU) and isinstance(b.conv, NormalizedConv2d) for b in blocks)


def test_mnist_cnn_activation_and_norm_conv_keep_the_count():
    model = experiment({"name": "mnist_cnn", "kwargs": {"activation": "tanh", "norm_conv": True}}, image_size=28,
                       channels=1)
    assert count_parameters(model) == conv(5, 1, 10) + conv(5, 10, 20) + linear(320, 50) + linear(50, 10) == 21_840
    assert isinstance(model.backbone.act1, torch.nn.Tanh) and isinstance(model.backbone.conv2, NormalizedConv2d)
