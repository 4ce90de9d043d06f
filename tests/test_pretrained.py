"""load_pretrained: torchvision/timm/archlab files, head replacement, freezing, every bad input."""

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import archlab
from archlab.errors import CheckpointError
from archlab.pretrained import adapt_input_conv, guess_family, load_pretrained, torchvision_state_dict


def _model(name="resnet18", **kw):
    kw.setdefault("num_classes", 10)
    kw.setdefault("input_size", 32)
    return archlab.create_model(name, **kw)


def _randomize(sd):
    """Distinct values everywhere, so a tensor loaded into the wrong place shows."""
    g = torch.Generator().manual_seed(7)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()) for k, v in sd.items()}


def _small():
    """A cheap model for tests that never get as far as loading."""
    return _model("recurrent_resnet", unroll=1, widths=(4, 8))


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """torchvision resnet18 (1000 classes) weights as a .pth, shared by the tests of this module."""
    return _tv_file(tmp_path_factory.mktemp("tv"))


def _tv_file(tmp_path, name="resnet18", num_classes=1000, **kw):
    """A torchvision-layout state dict of ``name`` saved as .pth (what torchvision's URLs hold)."""
    src = _model(name, num_classes=num_classes, **kw)
    sd = _randomize(torchvision_state_dict(src))
    path = tmp_path / f"{name}-tv.pth"
    torch.save(sd, path)
    return path, sd


def test_torchvision_weights_load_into_the_backbone_and_the_head_stays_fresh(resnet18_file):
    path, sd = resnet18_file
    torch.manual_seed(3)
    model = _model(head="mlp", head_kwargs={"hidden": [16]})
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    report = load_pretrained(model, path)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert all(torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())
    assert report.dropped == ["fc.weight", "fc.bias"]
    assert not (report.missing or report.unexpected or report.mismatched)
    assert len(report.loaded) == len(model.backbone.state_dict())


def test_keep_classifier_maps_the_source_classifier_onto_the_default_head(tmp_path):
    for name, head_key, tv_key in [("resnet18", "fc.weight", "fc.weight"),
                                   ("densenet_bc", "fc.weight", "classifier.weight"),
                                   ("efficientnet_scaled", "fc.weight", "classifier.1.weight"),
                                   ("vgg11", "classifier.6.weight", "classifier.6.weight")]:
        kw = {"vgg11": {"head_kwargs": {"hidden": 32}}, "densenet_bc": {"depth": 16},
              "efficientnet_scaled": {"phi": -6}}.get(name, {})
        path, sd = _tv_file(tmp_path, name, num_classes=10, **kw)
        model = _model(name, **kw)
        report = load_pretrained(model, path, keep_classifier=True)
        assert torch.equal(model.head.state_dict()[head_key], sd[tv_key]), name
        assert report.classifier_loaded


def test_keep_classifier_with_another_number_of_classes_fails_clearly(resnet18_file):
    path, _ = resnet18_file
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"fc.weight: file \(1000, 512\) vs head \(10, 512\)"):
        load_pretrained(model, path, keep_classifier=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_round_trip_backbone_into_a_model_with_another_head(tmp_path):
    a = _model("densenet_bc", depth=16, num_classes=10)
    a.train()
    a(torch.randn(8, 3, 32, 32))  # move the BN running statistics away from their init
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in a.backbone.state_dict().items()}, str(path))
    b = _model("densenet_bc", depth=16, num_classes=3, head="mlp", head_kwargs={"hidden": [8]})
    load_pretrained(b, path)
    a.eval(), b.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a.forward_features(x), b.forward_features(x), rtol=0, atol=0)


def test_archlab_classifier_state_dict_loads_and_drops_its_head(tmp_path):
    a = _model("recurrent_resnet", unroll=2)
    path = tmp_path / "full.pt"
    torch.save(a.state_dict(), path)
    b = _model("recurrent_resnet", unroll=2, num_classes=4, head="mlp", head_kwargs={"hidden": [8]})
    report = load_pretrained(b, path)
    assert report.dropped == ["head.fc.weight", "head.fc.bias"]
    b.eval(), a.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a.forward_features(x), b.forward_features(x))


def test_freeze_backbone(resnet18_file):
    path, _ = resnet18_file
    model = _model(head="mlp", head_kwargs={"hidden": [16]})
    report = load_pretrained(model, path, freeze_backbone=True)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert report.frozen == sum(p.numel() for p in model.backbone.parameters())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())


def test_grey_images_adapt_the_first_convolution(resnet18_file):
    path, sd = resnet18_file
    model = _model(in_chans=1)
    report = load_pretrained(model, path)
    assert report.adapted == ["conv1.weight"]
    torch.testing.assert_close(model.backbone.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))


def test_adapt_input_conv_rules():
    w = torch.randn(4, 3, 3, 3)
    x = torch.randn(1, 1, 5, 5)
    # a grey image seen as RGB gives the same response as the summed filter
    torch.testing.assert_close(torch.conv2d(x.expand(1, 3, 5, 5), w), torch.conv2d(x, adapt_input_conv(w, 1)))
    w5 = adapt_input_conv(w, 5)
    assert w5.shape == (4, 5, 3, 3)
    torch.testing.assert_close(w5[:, 3:5], w[:, :2] * 0.6)
    with pytest.raises(CheckpointError):
        adapt_input_conv(torch.randn(4, 2, 3, 3), 1)


def test_legacy_densenet_names_load(tmp_path):
    model = _model("densenet_bc", depth=16)
    sd = _randomize(model.backbone.state_dict())
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in sd.items()}
    assert legacy != sd
    torch.save(legacy, tmp_path / "old.pth")
    load_pretrained(model, tmp_path / "old.pth")
    assert all(torch.equal(v, sd[k]) for k, v in model.backbone.state_dict().items())


def test_timm_efficientnet_names_load(tmp_path):
    model = _model("efficientnet_b0")
    tv = _randomize(torchvision_state_dict(model))
    # timm's efficientnet_b0 names (timm/models/_efficientnet_blocks.py): stem, blocks, head
    ds = {"0.0": "conv_dw", "0.1": "bn1", "1.fc1": "se.conv_reduce", "1.fc2": "se.conv_expand",
          "2.0": "conv_pw", "2.1": "bn2"}
    ir = {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2.fc1": "se.conv_reduce",
          "2.fc2": "se.conv_expand", "3.0": "conv_pwl", "3.1": "bn3"}
    timm = {}
    for k, v in tv.items():
        parts = k.split(".")
        if k.startswith("features.0."):
            timm[("conv_stem." if parts[2] == "0" else "bn1.") + parts[3]] = v
        elif k.startswith("features.8."):
            timm[("conv_head." if parts[2] == "0" else "bn2.") + parts[3]] = v
        elif k.startswith("classifier.1."):
            timm["classifier." + parts[2]] = v
        else:  # features.S.I.block.A.B.leaf
            s, i, a, b, leaf = int(parts[1]), parts[2], parts[4], parts[5], parts[6]
            table = ds if s == 1 else ir
            timm[f"blocks.{s - 1}.{i}.{table[f'{a}.{b}']}.{leaf}"] = v
    assert guess_family(timm) == "efficientnet" and len(timm) == len(tv)
    save_file(timm, str(tmp_path / "timm.safetensors"))
    report = load_pretrained(model, tmp_path / "timm.safetensors", keep_classifier=True)
    assert all(torch.equal(v, tv[k]) for k, v in model.backbone.state_dict().items())
    assert torch.equal(model.head.fc.weight, tv["classifier.1.weight"])
    assert not report.unexpected


def test_weights_of_another_architecture_are_refused_with_the_keys_listed(resnet18_file):
    path, _ = resnet18_file
    model = _model("vgg11", head_kwargs={"hidden": 8})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(model, path)
    msg = str(exc.value)
    assert "looks like a resnet state dict" in msg and "missing keys: features.0.weight" in msg
    assert "122 unexpected keys: conv1.weight" in msg
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing changed


def test_shape_mismatches_are_listed_and_strict_false_loads_the_rest(resnet18_file):
    path, sd = resnet18_file  # ImageNet stem 7x7
    model = _model(cifar_stem=True, se=True)
    with pytest.raises(CheckpointError, match=r"conv1.weight: file \(64, 3, 7, 7\) vs model \(64, 3, 3, 3\)") as exc:
        load_pretrained(model, path)
    assert "missing keys: layer1.0.se.fc1.weight" in str(exc.value)
    report = load_pretrained(model, path, strict=False)
    assert [m.split(":")[0] for m in report.mismatched] == ["conv1.weight"]
    assert all(".se." in k for k in report.missing)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])


def test_unexpected_extra_keys_are_refused(tmp_path):
    model = _small()
    sd = dict(model.backbone.state_dict())
    sd["stray.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="unexpected keys: stray.weight"):
        load_pretrained(model, tmp_path / "x.pth")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_pretrained(_small(), path)
    assert not os.path.exists(marker)
    raw = tmp_path / "evil_raw.pth"  # a bare pickle, not even a torch file
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError):
        load_pretrained(_small(), raw)
    assert not os.path.exists(marker)


def test_a_pickled_module_is_not_a_state_dict(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_pretrained(_small(), path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_pretrained(_small(), tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_pretrained(_small(), bad)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="state_dict"):
        load_pretrained(_small(), tmp_path / "list.pth")


def test_torchvision_state_dict_needs_the_default_head():
    model = _model(head="mlp", head_kwargs={"hidden": [4]})
    with pytest.raises(CheckpointError, match="no torchvision counterpart"):
        torchvision_state_dict(model)


def test_exported_from_the_package():
    assert archlab.load_pretrained is load_pretrained
