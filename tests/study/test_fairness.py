"""Fairness by construction: for one seed, variants share the split, the batches and the backbone init."""

import torch

from archlab.study.config import RunKey, load_study
from archlab.train.run import build_loaders, build_run_model, prepare_data


def _variants(write_study, seed=0):
    study = load_study(write_study(variants={
        "a": {"model": {"head": "linear"}},
        "b": {"model": {"head": "spinal", "head_kwargs": {"layer_width": 8}}},
        "c": {"model": {"head": "ncp", "head_kwargs": {"cell": "cfc"}}},
        "lr": {"train": {"optim": {"lr": 0.01}}},
    }, seeds=[0, 1]))
    return {v: study.resolve(RunKey(dataset="synthetic28", variant=v, seed=seed)) for v in study.variants}


def test_variants_of_a_seed_share_split_batches_and_backbone_init(write_study):
    cfgs = _variants(write_study)
    splits = {v: prepare_data(c) for v, c in cfgs.items()}
    backbones, batches = {}, {}
    for v, cfg in cfgs.items():
        assert torch.equal(splits[v].test.labels, splits["a"].test.labels)
        assert torch.equal(splits[v].train.images, splits["a"].train.images)
        backbones[v] = build_run_model(cfg, splits[v]).backbone.state_dict()
        train_loader = build_loaders(cfg, splits[v], torch.device("cpu"))[0]
        batches[v] = [y for _, y in train_loader.epoch(1)]
    for v in cfgs:
        assert backbones[v].keys() == backbones["a"].keys()
        assert all(torch.equal(backbones[v][k], backbones["a"][k]) for k in backbones["a"]), v
        assert all(torch.equal(y, y0) for y, y0 in zip(batches[v], batches["a"], strict=True)), v


def test_another_seed_gets_another_init_and_order(write_study):
    a0, a1 = _variants(write_study, 0)["a"], _variants(write_study, 1)["a"]
    splits = prepare_data(a0)
    w0 = build_run_model(a0, splits).backbone.state_dict()
    w1 = build_run_model(a1, splits).backbone.state_dict()
    assert not all(torch.equal(w0[k], w1[k]) for k in w0 if w0[k].is_floating_point())
    y0 = next(iter(build_loaders(a0, splits, torch.device("cpu"))[0].epoch(0)))[1]
    y1 = next(iter(build_loaders(a1, splits, torch.device("cpu"))[0].epoch(0)))[1]
    assert not torch.equal(y0, y1)
