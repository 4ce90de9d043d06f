"""Transfer learning in a study: `pretrained:` with provenance, freezing, param groups (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import archlab
from archlab.errors import CheckpointError, ConfigError, ConfigMismatch
from archlab.pretrained import torchvision_state_dict
from archlab.study.config import RunKey, Study, load_study
from archlab.study.runner import run_dir, run_study
from archlab.train.config import TrainConfig
from archlab.train.engine import build_run_model, prepare_data
from archlab.train.transfer import file_sha256, param_groups

DATA = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 32, "image_size": 32, "channels": 3},
        "val_fraction": 0.25, "test_fraction": 0.25}


def torchvision_file(path: Path, name: str = "resnet18", fmt: str = "pth") -> Path:
    """A torchvision-layout state dict (1000-class classifier) with distinct values everywhere."""
    src = archlab.create_model(name, num_classes=1000, input_size=32)
    sd = torchvision_state_dict(src)
    g = torch.Generator().manual_seed(11)
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = 0.05 * torch.randn(v.shape, generator=g)
    if fmt == "pth":
        torch.save(out, path)
    else:
        save_file({k: t.contiguous() for k, t in out.items()}, str(path))
    return path


def study(weights: Path | str, **model) -> Study:
    return Study.model_validate({
        "name": "tl", "data": DATA,
        "model": {"name": "resnet18", "pretrained": str(weights), **model},
        "train": {"epochs": 1, "batch_size": 12},
        "seeds": [0], "baseline": "default_head",
        "variants": {"default_head": {}, "spinal": {"model": {"head": "spinal"}}},
    })


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return torchvision_file(tmp_path_factory.mktemp("w") / "resnet18-test.pth")


def test_pretrained_backbone_equals_the_file_and_the_head_is_new(weights):
    s = study(weights)
    cfg = s.resolve(RunKey(dataset="synthetic32", variant="spinal", seed=0))
    assert cfg.model.pretrained_sha256 == file_sha256(weights)
    splits = prepare_data(cfg)
    model = build_run_model(cfg, splits)
    file = torch.load(weights, weights_only=True)
    bb = model.backbone.state_dict()
    for k, v in bb.items():
        assert torch.equal(v, file[k]), k  # every backbone tensor, BN statistics included
    assert not any(k.startswith("fc.") for k in bb)
    # the head is the one the run's init stream gives without pretrained weights
    fresh = build_run_model(cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": None})}), splits)
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, fresh.head.state_dict()[k]), k


def test_safetensors_file_and_hash_in_provenance(tmp_path):
    w = torchvision_file(tmp_path / "r18.safetensors", fmt="safetensors")
    s = study(w, freeze_backbone=True)
    s = s.model_copy(update={"variants": {"default_head": s.variants["spinal"]}})  # one run: a Spinal head
    store = run_study(s, tmp_path / "out", workers=1, report=False)
    rows = store.rows(with_predictions=False)
    assert all(r.status == "done" for r in rows), [r.error for r in rows]
    sha = file_sha256(w)
    for r in rows:
        assert r.config["model"]["pretrained_sha256"] == sha
        assert r.provenance["pretrained"] == {"path": str(w), "sha256": sha, "freeze_backbone": True,
                                                 "backbone_lr_scale": 1.0}
    # freeze_backbone: the tested weights' backbone is the file exactly; the head trained
    file = load_file(str(w))
    for r in rows:
        best = load_file(str(run_dir(tmp_path / "out", RunKey(dataset=r.dataset, variant=r.variant, seed=0))
                             / "best.safetensors"))
        for k, v in best.items():
            if k.startswith("backbone."):
                assert torch.equal(v, file[k[len("backbone."):]]), k
        cfg = TrainConfig.model_validate(r.config)
        init = build_run_model(cfg, prepare_data(cfg)).head.state_dict()
        assert any(not torch.equal(best["head." + k], v) for k, v in init.items() if v.is_floating_point())


def test_a_changed_weights_file_is_a_changed_config(tmp_path):
    w = torchvision_file(tmp_path / "w.pth")
    out = tmp_path / "out"
    s = study(w, freeze_backbone=True)
    s = s.model_copy(update={"variants": {"default_head": s.variants["default_head"]}})
    run_study(s, out, workers=1, report=False)
    old = file_sha256(w)
    sd = torch.load(w, weights_only=True)
    sd["conv1.weight"] = sd["conv1.weight"] + 1.0
    torch.save(sd, w)
    s2 = study(w, freeze_backbone=True)
    s2 = s2.model_copy(update={"variants": {"default_head": s2.variants["default_head"]}})
    cfg = s2.resolve(RunKey(dataset="synthetic32", variant="default_head", seed=0))
    assert cfg.model.pretrained_sha256 != old
    with pytest.raises(ConfigError, match="pretrained_sha256"):
        run_study(s2, out, workers=1, report=False)
    # a config made for the old file refuses the new file when the model is built
    stale = cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained_sha256": old})})
    with pytest.raises(ConfigMismatch, match="changed since this run was configured"):
        build_run_model(stale, prepare_data(stale))


def test_weights_of_another_architecture_is_one_clear_error(tmp_path):
    w = torchvision_file(tmp_path / "resnet34.pth", name="resnet34")
    with pytest.raises(CheckpointError) as exc:
        run_study(study(w), tmp_path / "out", workers=1, report=False)
    msg = str(exc.value)
    assert str(w) in msg and "unexpected keys" in msg and "layer1.2" in msg
    assert exc.value.exit_code == 2
    assert not (tmp_path / "out" / "results.sqlite").exists()  # refused in preflight: nothing recorded


def test_missing_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        run_study(study(tmp_path / "nope.pth"), tmp_path / "out", workers=1, report=False)


def test_backbone_lr_scale_param_groups(weights):
    cfg = study(weights, backbone_lr_scale=0.1).resolve(RunKey(dataset="synthetic32", variant="spinal", seed=0))
    model = build_run_model(cfg, prepare_data(cfg))
    groups = param_groups(model, cfg)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}
    with pytest.raises(ValueError, match="backbone_lr_scale"):  # a ConfigError through load_study
        study(weights, backbone_lr_scale=0)


@pytest.mark.slow
def test_seed001_transfer_study_smoke(tmp_path, monkeypatch):
    """studies/seed001_transfer.yaml in --smoke mode with a generated torchvision-layout file."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    Path("weights").mkdir()
    torchvision_file(Path("weights/smoke_resnet18_torchvision.pth"))
    s = load_study(root / "studies" / "seed001_transfer.yaml", smoke=True)
    assert s.model.pretrained is None  # the smoke section runs without a file (a fresh folder)
    s = s.model_copy(update={"model": s.model.model_copy(update={"pretrained": "weights/smoke_resnet18_torchvision.pth"})})
    store = run_study(s, tmp_path / "out", workers=1)
    rows = store.rows(with_predictions=False)
    assert {r.variant for r in rows} >= {"default_head", "spinal", "ncp"}
    assert all(r.status == "done" for r in rows), [r.error for r in rows]
    assert all(r.provenance["pretrained"]["sha256"] for r in rows)
    assert "efficiency" in json.dumps([r.analysis for r in rows])
