"""Capacity matching (archlab.study.matching): exact to the tolerance for every head with a width knob."""

from __future__ import annotations

import pytest

from archlab.errors import ConfigError
from archlab.study.config import RunKey, Study
from archlab.study.execute import load_splits
from archlab.study.matching import MatchConfig, model_size, search_knob, set_knob
from archlab.study.runner import RunConfigs

DATA = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 30, "image_size": 28, "channels": 1}}

# (head, its options, the width knob): every registered head family that has one
FAMILIES = [
    ("mlp", {"hidden": [16]}, "model.head_kwargs.hidden.0"),
    ("vgg_classifier", {"hidden": 8}, "model.head_kwargs.hidden"),
    ("spinal", {}, "model.head_kwargs.layer_width"),
    ("spinal_vgg", {}, "model.head_kwargs.layer_width"),
    ("rnn", {}, "model.head_kwargs.hidden"),
    ("ncp", {}, "model.head_kwargs.sensory"),
]


def study(variants: dict, **extra) -> Study:
    return Study.model_validate({"name": "m", "data": DATA, "model": {"name": "mnist_cnn"},
                                 "train": {"epochs": 1}, "seeds": 2, "baseline": "ref", "variants": variants, **extra})


@pytest.mark.parametrize(("head", "kwargs", "key"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_width_knob_matches_the_reference_within_tolerance(head, kwargs, key):
    tolerance = 0.02
    s = study({"ref": {"model": {"head": "mlp", "head_kwargs": {"hidden": [40]}}},
               "matched": {"model": {"head": head, "head_kwargs": kwargs},
                           "match": {"params": "ref", "key": key, "tolerance": tolerance}}})
    configs = RunConfigs(s)
    splits = load_splits(s.data.model_dump_json())
    target = model_size(configs.plain(RunKey(dataset="synthetic28", variant="ref", seed=0)), splits, "params")
    for seed in (0, 1):
        cfg = configs.plain(RunKey(dataset="synthetic28", variant="matched", seed=seed))
        got = model_size(cfg, splits, "params")  # measured afresh from the recorded config
        assert abs(got - target) <= tolerance * target, (head, got, target)
    found = configs.matches[("synthetic28", "matched")]
    assert found.count == got and found.target == target and found.key == key
    node = cfg.model_dump(mode="json")
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    assert node == found.value  # the resolved value is in the run config


def test_flops_matching_and_an_impossible_match():
    s = study({"ref": {"model": {"head": "mlp", "head_kwargs": {"hidden": [40]}}},
               "matched": {"model": {"head": "spinal"},
                           "match": {"flops": "ref", "key": "model.head_kwargs.layer_width"}}})
    configs = RunConfigs(s)
    splits = load_splits(s.data.model_dump_json())
    target = model_size(configs.plain(RunKey(dataset="synthetic28", variant="ref", seed=0)), splits, "flops")
    got = model_size(configs.plain(RunKey(dataset="synthetic28", variant="matched", seed=0)), splits, "flops")
    assert abs(got - target) <= 0.02 * target
    tiny = study({"ref": {"model": {"head": "mlp", "head_kwargs": {"hidden": [40]}}},
                  "matched": {"model": {"head": "spinal"},
                              "match": {"params": "ref", "key": "model.head_kwargs.layer_width", "range": [1, 2]}}})
    with pytest.raises(ConfigError, match=r"variant 'matched' on 'synthetic28': no value of the knob in \[1, 2\] "
                                          r"gives params within 2.0% of [\d,]+; the closest reachable is [\d,]+ at 2"):
        RunConfigs(tiny).plain(RunKey(dataset="synthetic28", variant="matched", seed=0))


def test_head_scope_matches_the_heads_alone():
    s = study({"ref": {"model": {"head": "mlp", "head_kwargs": {"hidden": [40]}}},
               "matched": {"model": {"head": "rnn"},
                           "match": {"params": "ref", "key": "model.head_kwargs.hidden", "scope": "head",
                                     "tolerance": 0.01}}})
    configs = RunConfigs(s)
    splits = load_splits(s.data.model_dump_json())
    ref = model_size(configs.plain(RunKey(dataset="synthetic28", variant="ref", seed=0)), splits, "params", "head")
    got = model_size(configs.plain(RunKey(dataset="synthetic28", variant="matched", seed=0)), splits, "params", "head")
    assert abs(got - ref) <= 0.01 * ref
    with pytest.raises(ValueError, match="scope: head counts parameters only"):
        MatchConfig(flops="ref", key="model.x", scope="head")


def test_search_knob_bisection_and_errors():
    calls = []

    def count(v):
        calls.append(v)
        return 1000 + 37 * v

    v, c = search_knob(count, 1000 + 37 * 5000, tolerance=1e-9, low=1, high=1 << 20)
    assert (v, c) == (5000, 1000 + 37 * 5000) and len(calls) < 40
    with pytest.raises(ConfigError, match="fell from"):
        search_knob(lambda v: 100 - v, 10**6, tolerance=0.02, low=1, high=64)
    with pytest.raises(ConfigError, match=r"closest reachable is 1,064 at 64"):
        search_knob(lambda v: 1000 + v, 10**6, tolerance=0.02, low=1, high=64)
    assert set_knob({"model": {"head_kwargs": {}}}, "model.head_kwargs.hidden", 3, "x") == {
        "model": {"head_kwargs": {"hidden": 3}}}
    with pytest.raises(ConfigError, match="not an index of a list of 1"):
        set_knob({"model": {"h": [1]}}, "model.h.3", 3, "x")


@pytest.mark.parametrize(("match", "msg"), [
    ({"params": "nope", "key": "model.head_kwargs.hidden"}, "'nope' is not a variant"),
    ({"params": "matched", "key": "model.head_kwargs.hidden"}, "cannot match its own size"),
    ({"params": "ref", "flops": "ref", "key": "model.x"}, "exactly one of"),
    ({"params": "ref", "key": "train.optim.lr"}, "under model."),
    ({"params": "ref", "key": "model.x", "tolerance": 0}, "greater than 0"),
])
def test_bad_match_configs(match, msg):
    with pytest.raises(ValueError, match=msg):
        study({"ref": {}, "matched": {"match": match}})
    MatchConfig(params="ref", key="model.head_kwargs.hidden")
